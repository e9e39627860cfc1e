"""A transformer block: attention wrapped in residual connections, layer norms and a
feed-forward network, built from this site's ``MultiHeadAttention``.

Shape legend: B = batch size, T = tokens of the sequence the block works on,
S = tokens of the other sequence (the "memory") in cross-attention, D = embed_dim
(d_model), H = num_heads, Dh = D / H, F = ff_dim (d_ff in Vaswani et al., 2017;
dim_feedforward in torch).

The page ``docs/block.md`` shows this file one section at a time:

* ``feed-forward``: two linear layers with a ReLU or GELU between them, applied to
  every token on its own.
* ``residual``: a sublayer added back to its input (the residual connection) and
  normalised, either after the addition (post-norm, the 2017 layout) or before the
  sublayer (pre-norm, GPT-2 and later).
* ``transformer-block``: self-attention then feed-forward, each wrapped that way.
* ``cross-attention`` and ``decoder-block``: queries from one sequence, keys and
  values from another, as in the decoder of an encoder-decoder transformer.
* ``from-torch``: copy the weights of ``torch.nn.TransformerEncoderLayer`` or
  ``TransformerDecoderLayer`` so that the blocks can be compared number for number.
* ``rms-norm`` and ``swiglu``: what a Llama-style block uses instead of LayerNorm and
  of the ReLU/GELU feed-forward network.
"""

# --8<-- [start:imports]
import torch
import torch.nn.functional as F
from torch import nn
# --8<-- [end:imports]

from snippets.attention import scaled_dot_product_attention
from snippets.multi_head import (
    MultiHeadAttention,
    _check_forward_args,
    _check_init_args,
    merge_heads,
    split_heads,
)

__all__ = [
    "ACTIVATIONS",
    "FeedForward",
    "residual",
    "TransformerBlock",
    "CrossAttention",
    "DecoderBlock",
    "rms_norm",
    "swiglu",
]


# --8<-- [start:input-checks]
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}  # gelu: the exact (erf) form


def _got(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_ff_args(embed_dim, ff_dim, activation):
    _check_positive_int("embed_dim", embed_dim)
    _check_positive_int("ff_dim", ff_dim)
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
        )


def _check_block_args(embed_dim, num_heads, ff_dim, norm_first, activation, eps):
    _check_init_args(embed_dim, num_heads)  # MultiHeadAttention's own checks
    _check_ff_args(embed_dim, ff_dim, activation)
    if not isinstance(norm_first, bool):
        raise ValueError(
            f"norm_first must be True (pre-norm) or False (post-norm), "
            f"got {norm_first!r}"
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")


def _check_features(name, t, width, dtype):
    """t must be a tensor (..., width) of the module's dtype."""
    if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[-1] != width:
        raise ValueError(
            f"{name} must be a tensor of shape (..., {width}), got {_got(t)}"
        )
    if t.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {dtype}, the dtype of the weights, got "
            f"{t.dtype}; convert one of them with .to()"
        )


def _check_memory(x, memory, memory_mask, embed_dim, num_heads, dtype):
    """memory: (B, S, D) of x's B and D, S >= 1; memory_mask: bool, to (B, H, T, S)."""
    batch, seq_len, _ = x.shape  # B, T
    need = f"(B={batch}, S, embed_dim={embed_dim}) with S >= 1"
    if not isinstance(memory, torch.Tensor) or memory.dim() != 3:
        raise ValueError(f"memory must be a 3-D tensor {need}, got {_got(memory)}")
    if memory.shape[0] != batch or memory.shape[2] != embed_dim or not memory.shape[1]:
        raise ValueError(
            f"memory must have shape {need} (x has shape {tuple(x.shape)}), "
            f"got memory of shape {tuple(memory.shape)}"
        )
    _check_features("memory", memory, embed_dim, dtype)
    if memory_mask is None:
        return
    if not isinstance(memory_mask, torch.Tensor) or memory_mask.dtype != torch.bool:
        got = getattr(memory_mask, "dtype", type(memory_mask).__name__)
        raise ValueError(
            f"memory_mask must be a boolean tensor (True = may attend), got {got}"
        )
    target = (batch, num_heads, seq_len, memory.shape[1])  # (B, H, T, S)
    try:
        fits = (memory_mask.dim() >= 2
                and torch.broadcast_shapes(memory_mask.shape, target) == target)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"memory_mask of shape {tuple(memory_mask.shape)} cannot broadcast to "
            f"the cross-attention weights' shape (B, H, T, S) = {target} with at "
            "least 2 dimensions; e.g. use (B, 1, 1, S) for padded memory tokens"
        )
# --8<-- [end:input-checks]


# --8<-- [start:feed-forward]
class FeedForward(nn.Module):
    """Position-wise feed-forward network: (..., D) -> (..., D).

    ``linear2(activation(linear1(x)))``: each token is widened to F features, passed
    through the nonlinearity and projected back to D. Every token goes through the
    same two layers on its own; tokens exchange information only in attention.
    """

    def __init__(self, embed_dim, ff_dim, activation="relu", bias=True):
        super().__init__()
        _check_ff_args(embed_dim, ff_dim, activation)
        self.activation = activation
        self.linear1 = nn.Linear(embed_dim, ff_dim, bias=bias)  # D -> F
        self.linear2 = nn.Linear(ff_dim, embed_dim, bias=bias)  # F -> D

    def forward(self, x):
        w = self.linear1.weight  # (F, D)
        _check_features("x", x, w.shape[1], w.dtype)
        hidden = ACTIVATIONS[self.activation](self.linear1(x))  # (..., F)
        return self.linear2(hidden)  # (..., D)
# --8<-- [end:feed-forward]


# --8<-- [start:residual]
def residual(x, sublayer, norm, norm_first):
    """One sublayer with its residual connection and layer norm: (B, T, D) -> same.

    Post-norm (``norm_first=False``, Vaswani et al., 2017) normalises the sum,
    pre-norm (``norm_first=True``, GPT-2 and most models since) only the sublayer's
    input, so the running sum, the residual stream, is never normalised.
    """
    if norm_first:
        return x + sublayer(norm(x))  # pre-norm
    return norm(x + sublayer(x))  # post-norm
# --8<-- [end:residual]


# --8<-- [start:transformer-block]
class TransformerBlock(nn.Module):
    """Self-attention and a feed-forward network, each wrapped by ``residual``:
    (B, T, D) -> (B, T, D). ``norm_first=False`` (post-norm) is the default of
    ``torch.nn.TransformerEncoderLayer``, whose weights ``from_torch`` copies.

    ``mask`` and ``is_causal`` are those of ``MultiHeadAttention``: a boolean mask,
    True meaning "may attend", broadcastable to (B, H, T, T).
    """

    torch_layer = nn.TransformerEncoderLayer  # the layer from_torch copies

    def __init__(self, embed_dim, num_heads, ff_dim, norm_first=False,
                 activation="relu", eps=1e-5, bias=True):
        super().__init__()
        _check_block_args(embed_dim, num_heads, ff_dim, norm_first, activation, eps)
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, bias=bias)
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.ff = FeedForward(embed_dim, ff_dim, activation, bias=bias)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)

    def forward(self, x, mask=None, is_causal=False):
        self._check_x(x, mask, is_causal)

        def attend(h):  # (B, T, D) -> (B, T, D)
            return self.self_attn(h, mask, is_causal)[0]

        x = residual(x, attend, self.norm1, self.norm_first)  # (B, T, D)
        return residual(x, self.ff, self.norm2, self.norm_first)  # (B, T, D)

    def _check_x(self, x, mask, is_causal):
        d, h = self.self_attn.embed_dim, self.self_attn.num_heads  # D, H
        _check_forward_args(x, mask, is_causal, d, h)  # MultiHeadAttention's checks
        _check_features("x", x, d, self.norm1.weight.dtype)

    @classmethod
    def from_torch(cls, layer):
        """A block of this class with the weights of ``layer``, a
        ``cls.torch_layer``."""
        return _from_torch(cls, layer, cls.torch_layer)
# --8<-- [end:transformer-block]


# --8<-- [start:cross-attention]
class CrossAttention(MultiHeadAttention):
    """Queries from x, keys and values from memory:
    x (B, T, D), memory (B, S, D) -> (output (B, T, D), weights (B, H, T, S) or None).

    The parameters are MultiHeadAttention's (``qkv_proj`` rows q, then k, then v), so
    ``from_torch`` copies a ``torch.nn.MultiheadAttention`` as before; only forward
    differs: the q rows of ``qkv_proj`` project x, the k and v rows project memory.
    ``memory_mask`` is boolean, True = may attend, broadcastable to (B, H, T, S);
    (B, 1, 1, S) masks padded memory tokens.
    """

    def forward(self, x, memory, memory_mask=None, need_weights=False):
        d, h, dtype = self.embed_dim, self.num_heads, self.qkv_proj.weight.dtype
        _check_forward_args(x, None, False, d, h)  # x: (B, T, D)
        _check_features("x", x, d, dtype)
        _check_memory(x, memory, memory_mask, d, h, dtype)
        w_q, w_kv = self.qkv_proj.weight.split([self.embed_dim, 2 * self.embed_dim])
        b_q = b_kv = None  # (D, D) and (2D, D) above; the biases alike, if any
        if self.qkv_proj.bias is not None:
            b_q, b_kv = self.qkv_proj.bias.split([self.embed_dim, 2 * self.embed_dim])
        q = F.linear(x, w_q, b_q)  # (B, T, D): the queries come from x ...
        k, v = F.linear(memory, w_kv, b_kv).chunk(2, dim=-1)  # ... k, v: (B, S, D)
        q = split_heads(q, self.num_heads)  # (B, H, T, Dh)
        k = split_heads(k, self.num_heads)  # (B, H, S, Dh)
        v = split_heads(v, self.num_heads)  # (B, H, S, Dh)
        if need_weights:  # from scratch: (B, H, T, Dh), weights (B, H, T, S)
            out, weights = scaled_dot_product_attention(q, k, v, mask=memory_mask)
        else:  # PyTorch's fused kernel
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=memory_mask)
            weights = None  # out: (B, H, T, Dh)
        return self.out_proj(merge_heads(out)), weights  # (B, T, D), weights
# --8<-- [end:cross-attention]


# --8<-- [start:decoder-block]
class DecoderBlock(TransformerBlock):
    """A TransformerBlock with cross-attention to ``memory`` between its
    self-attention and its feed-forward network, wrapped by ``residual`` like them:
    x (B, T, D), memory (B, S, D) -> (B, T, D).

    The decoder layer of an encoder-decoder transformer (torch's
    ``TransformerDecoderLayer``): x is the text being written, memory the encoder's
    output for the text being translated. ``mask``/``is_causal`` apply to the
    self-attention (usually ``is_causal=True``), ``memory_mask`` to the
    cross-attention. As in torch, norm2 goes with the cross-attention and norm3 with
    the feed-forward network. With ``norm_first=True`` memory is not normalised
    here: the encoder's last norm did that.
    """

    torch_layer = nn.TransformerDecoderLayer

    def __init__(self, embed_dim, num_heads, ff_dim, norm_first=False,
                 activation="relu", eps=1e-5, bias=True):
        super().__init__(embed_dim, num_heads, ff_dim, norm_first, activation, eps,
                         bias)
        self.cross_attn = CrossAttention(embed_dim, num_heads, bias=bias)
        self.norm3 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)

    def forward(self, x, memory, mask=None, is_causal=False, memory_mask=None):
        self._check_x(x, mask, is_causal)
        attn = self.self_attn
        _check_memory(x, memory, memory_mask, attn.embed_dim, attn.num_heads,
                      self.norm1.weight.dtype)

        def attend(h):  # (B, T, D) -> (B, T, D)
            return attn(h, mask, is_causal)[0]

        def read(h):  # (B, T, D) -> (B, T, D): queries from h, keys/values memory
            return self.cross_attn(h, memory, memory_mask)[0]

        x = residual(x, attend, self.norm1, self.norm_first)  # (B, T, D)
        x = residual(x, read, self.norm2, self.norm_first)  # (B, T, D)
        return residual(x, self.ff, self.norm3, self.norm_first)  # (B, T, D)
# --8<-- [end:decoder-block]


# --8<-- [start:from-torch]
def _torch_name(name):
    """Our parameter name -> torch's: self_attn.qkv_proj.weight ->
    self_attn.in_proj_weight, cross_attn. -> multihead_attn., ff.linear1 -> linear1."""
    name = name.replace("qkv_proj.", "in_proj_")
    name = name.replace("cross_attn.", "multihead_attn.")
    return name.removeprefix("ff.")


def _from_torch(cls, layer, kind):
    """Build ``cls`` with the weights of ``layer`` (a ``kind``), every tensor copied.

    Raises ValueError, leaving layer and torch's random generator as they were, for
    what has no counterpart here:
    sequence-first inputs, dropout, an activation other than ReLU or GELU, norms with
    different eps, or any parameter that would not be copied.
    """
    if not isinstance(layer, kind):
        raise ValueError(f"layer must be a {kind.__name__}, got {type(layer).__name__}")
    attn = layer.self_attn
    if not attn.batch_first:
        raise ValueError(
            "layer.self_attn.batch_first is False: layer takes (T, B, D) inputs, "
            "this block takes (B, T, D); build layer with batch_first=True"
        )
    dropouts = {name: m.p for name, m in layer.named_modules()
                if isinstance(m, nn.Dropout) and m.p > 0}
    dropouts.update({f"{name}.dropout": m.dropout for name, m in layer.named_modules()
                     if isinstance(m, nn.MultiheadAttention) and m.dropout > 0})
    if dropouts:
        raise ValueError(
            f"layer has dropout {dropouts}, but this block has none; build layer "
            "with dropout=0.0"
        )
    names = {fn: name for name, fn in ACTIVATIONS.items()}
    if layer.activation not in names:
        raise ValueError(
            f"layer.activation must be F.relu or F.gelu ('relu' or 'gelu'), "
            f"got {layer.activation!r}"
        )
    eps = {m.eps for m in layer.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise ValueError(f"layer's LayerNorms must share one eps, got {sorted(eps)}")
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten below
        new = cls(attn.embed_dim, attn.num_heads, layer.linear1.out_features,
                  norm_first=layer.norm_first, activation=names[layer.activation],
                  eps=eps.pop(), bias=layer.linear1.bias is not None)
    new = new.to(layer.linear1.weight)  # layer's dtype and device, before the copy
    theirs = layer.state_dict()
    ours = {name: _torch_name(name) for name in new.state_dict()}
    extra = sorted(set(theirs) - set(ours.values()))
    if extra:
        raise ValueError(f"layer has parameters with no counterpart here: {extra}")
    new.load_state_dict({name: theirs[t] for name, t in ours.items()})
    return new.train(layer.training)
# --8<-- [end:from-torch]


# --8<-- [start:rms-norm]
def rms_norm(x, weight, eps=1e-5):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension: (..., D) -> (..., D).

    LayerNorm without two of its steps: no mean is subtracted and no bias is added.
    Each token's features are divided by their root mean square, then scaled by a
    learned weight per feature. (torch.nn.RMSNorm computes the same.)
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        raise ValueError(f"weight must be a 1-D tensor (D,), got {_got(weight)}")
    _check_features("x", x, weight.shape[0], weight.dtype)
    rms = (x.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()  # (..., 1)
    return x / rms * weight  # (..., D) / (..., 1) * (D,) -> (..., D)
# --8<-- [end:rms-norm]


# --8<-- [start:swiglu]
def swiglu(x, w_gate, w_up, w_down):
    """The feed-forward network of Llama-style models: (..., D) -> (..., D).

    ``silu(x W_gate^T) * (x W_up^T)``, then ``W_down``: one projection to F features
    is passed through SiLU (z * sigmoid(z)) and gates, feature by feature, a second
    projection. The weights are in nn.Linear's (out, in) layout, with no biases:
    w_gate and w_up (F, D), w_down (D, F).
    """
    if not isinstance(w_gate, torch.Tensor) or w_gate.dim() != 2:
        raise ValueError(f"w_gate must be a 2-D tensor (F, D), got {_got(w_gate)}")
    ff_dim, embed_dim = w_gate.shape  # F, D
    for name, w, need in (("w_up", w_up, (ff_dim, embed_dim)),
                          ("w_down", w_down, (embed_dim, ff_dim))):
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != need:
            raise ValueError(
                f"{name} must have shape {need} to match w_gate of shape "
                f"{tuple(w_gate.shape)}, got {_got(w)}"
            )
    _check_features("x", x, embed_dim, w_gate.dtype)
    gate = F.silu(x @ w_gate.T)  # (..., D) @ (D, F) -> (..., F)
    up = x @ w_up.T  # (..., D) @ (D, F) -> (..., F)
    return (gate * up) @ w_down.T  # (..., F) @ (F, D) -> (..., D)
# --8<-- [end:swiglu]
