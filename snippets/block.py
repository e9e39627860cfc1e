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

# Outside any section: the page includes the sections of these modules instead.
from snippets.attention import scaled_dot_product_attention
from snippets.checks import (
    HALF,
    check_callable,
    check_choice,
    check_flag,
    check_mask,
    check_number,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
)
from snippets.multi_head import MultiHeadAttention, merge_heads, split_heads

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


# --8<-- [start:feed-forward]
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}  # gelu: the exact (erf) form


class FeedForward(nn.Module):
    """Position-wise feed-forward network: (..., D) -> (..., D).

    ``linear2(activation(linear1(x)))``: each token is widened to F features, passed
    through the nonlinearity and projected back to D. Every token goes through the
    same two layers on its own; tokens exchange information only in attention.
    """

    def __init__(self, embed_dim, ff_dim, activation="relu", bias=True):
        super().__init__()
        check_size("embed_dim", embed_dim)
        check_size("ff_dim", ff_dim)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_flag("bias", bias)
        self.activation = activation
        self.linear1 = nn.Linear(embed_dim, ff_dim, bias=bias)  # D -> F
        self.linear2 = nn.Linear(ff_dim, embed_dim, bias=bias)  # F -> D

    def forward(self, x):
        """(..., D) -> (..., D), every token on its own.

        Dtypes: the layer's, float16, bfloat16, float32 or float64 (x must match
        it); the numbers of its nn.Linear layers and activation, run in that dtype.
        """
        w = self.linear1.weight  # (F, D): x must match its width, dtype and device
        check_shapes(**{"the layer's weights": (w, "(F, D)")}, x=(x, "(..., D)"))
        hidden = ACTIVATIONS[self.activation](self.linear1(x))  # (..., F)
        return self.linear2(hidden)  # (..., D)
# --8<-- [end:feed-forward]


# --8<-- [start:residual]
def residual(x, sublayer, norm, norm_first):
    """One sublayer with its residual connection and layer norm: (..., D) -> same.

    Post-norm (``norm_first=False``, Vaswani et al., 2017) normalises the sum,
    pre-norm (``norm_first=True``, GPT-2, Llama and other later models) only the
    sublayer's input, so the running sum, the residual stream, is never normalised.
    sublayer and norm are functions from (..., D) to (..., D).

    Dtypes: any (residual only adds; sublayer and norm do the arithmetic).
    """
    check_tensor("x", x, "(..., D)", dtypes=None)
    check_callable("sublayer", sublayer)
    check_callable("norm", norm)
    check_flag("norm_first", norm_first)  # "no" would be true: pre-norm by mistake
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
        check_size("ff_dim", ff_dim)  # all checked before any weight is drawn
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_flag("norm_first", norm_first)
        check_number("eps", eps, 0)
        self.norm_first = norm_first  # MultiHeadAttention checks D, H and bias:
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, bias=bias)
        self.norm1 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)
        self.ff = FeedForward(embed_dim, ff_dim, activation, bias=bias)
        self.norm2 = nn.LayerNorm(embed_dim, eps=eps, bias=bias)

    def forward(self, x, mask=None, is_causal=False):
        """(B, T, D) -> (B, T, D). The attention checks mask and is_causal.

        Dtypes: the block's, float16, bfloat16, float32 or float64 (x must match
        it). With torch's initial weights and inputs of standard deviation up to
        10: within 2e-2 of torch.nn.TransformerEncoderLayer in float16, 1e-1 in
        bfloat16, 1e-5 in float32 and 1e-12 in float64. Larger scores make the
        softmax of the half types less accurate, in torch's layer too.
        """
        w = self.norm1.weight  # (D,): x must match its width, dtype and device
        check_shapes(**{"the block's weights": (w, "(D,)")}, x=(x, "(B, T, D)"))

        def attend(h):  # (B, T, D) -> (B, T, D)
            return self.self_attn(h, mask, is_causal)[0]

        x = residual(x, attend, self.norm1, self.norm_first)  # (B, T, D)
        return residual(x, self.ff, self.norm2, self.norm_first)  # (B, T, D)

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
        """x (B, T, D), memory (B, S, D) -> (output (B, T, D), weights or None).

        Dtypes: the layer's, float16, bfloat16, float32 or float64 (x and memory
        must match it). With torch's initial weights and inputs of standard
        deviation up to 10, against torch.nn.MultiheadAttention given x as query and
        memory as key and value: within 5e-3 in float16, 5e-2 in bfloat16, 1e-4 in
        float32 and 1e-12 in float64.
        """
        w = self.out_proj.weight  # (D, D): x and memory must match it, and B
        check_shapes(**{"the layer's weights": (w, "(D, D)")}, x=(x, "(B, T, D)"),
                     memory=(memory, "(B, S, D)"))
        check_flag("need_weights", need_weights)
        batch, seq_len, _ = x.shape  # B, T
        weights_shape = (batch, self.num_heads, seq_len, memory.shape[1])  # B, H, T, S
        check_mask(memory_mask, weights_shape, device=x.device, name="memory_mask")
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
        """x (B, T, D), memory (B, S, D) -> (B, T, D). The attentions check the masks.

        Dtypes: the block's, float16, bfloat16, float32 or float64 (x and memory
        must match it). With torch's initial weights and inputs of standard
        deviation up to 10: within 5e-2 of torch.nn.TransformerDecoderLayer in
        float16, 2e-1 in bfloat16, 1e-5 in float32 and 1e-12 in float64.
        """
        w = self.norm1.weight  # (D,): x and memory must match it, and B
        check_shapes(**{"the block's weights": (w, "(D,)")}, x=(x, "(B, T, D)"),
                     memory=(memory, "(B, S, D)"))

        def attend(h):  # (B, T, D) -> (B, T, D)
            return self.self_attn(h, mask, is_causal)[0]

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
    check_type("layer", layer, kind, f"a torch.nn.{kind.__name__}")
    attn = layer.self_attn
    if not attn.batch_first:
        raise ValueError(
            "layer.self_attn.batch_first must be True (this block takes (B, T, D) "
            "inputs), got False; build layer with batch_first=True"
        )
    dropouts = {name: m.p for name, m in layer.named_modules()
                if isinstance(m, nn.Dropout) and m.p > 0}
    dropouts.update({f"{name}.dropout": m.dropout for name, m in layer.named_modules()
                     if isinstance(m, nn.MultiheadAttention) and m.dropout > 0})
    if dropouts:
        raise ValueError(
            f"layer's dropout must be 0.0 (this block has none), got {dropouts}; "
            "build layer with dropout=0.0"
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
        raise ValueError(f"layer's parameters must all have a counterpart here, got "
                         f"{extra} too")
    new.load_state_dict({name: theirs[t] for name, t in ours.items()})
    return new.train(layer.training)
# --8<-- [end:from-torch]


# --8<-- [start:rms-norm]
def rms_norm(x, weight, eps=1e-5):
    """x / sqrt(mean(x^2) + eps) * weight over the last dimension: (..., D) -> (..., D).

    LayerNorm without two of its steps: no mean is subtracted and no bias is added.
    Each token's features are divided by their root mean square, then scaled by a
    learned weight per feature. (torch.nn.RMSNorm computes the same.) eps > 0.

    Dtypes: float16, bfloat16, float32, float64, x and weight alike; float16 and
    bfloat16 are computed in float32 and rounded once. Within 2e-3 of
    torch.nn.functional.rms_norm in float16, 2e-2 in bfloat16, 1e-5 in float32 and
    1e-12 in float64.
    """
    check_shapes(weight=(weight, "(D,)"), x=(x, "(..., D)"))
    check_number("eps", eps, 0)
    if x.dtype in HALF:  # x^2 overflows float16 above 256: compute in float32
        return rms_norm(x.float(), weight.float(), eps).to(x.dtype)
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

    Dtypes: float16, bfloat16, float32, float64, x and the weights alike; float16
    and bfloat16 are computed in float32 and rounded once. Within 2e-3 of a float64
    computation (relative to the largest |output|) in float16, 2e-2 in bfloat16,
    1e-5 in float32 and 1e-12 in float64.
    """
    check_shapes(w_gate=(w_gate, "(F, D)"), w_up=(w_up, "(F, D)"),
                 w_down=(w_down, "(D, F)"), x=(x, "(..., D)"))
    if x.dtype in HALF:  # gate * up may overflow float16: compute in float32
        return swiglu(*(t.float() for t in (x, w_gate, w_up, w_down))).to(x.dtype)
    gate = F.silu(x @ w_gate.T)  # (..., D) @ (D, F) -> (..., F)
    up = x @ w_up.T  # (..., D) @ (D, F) -> (..., F)
    return (gate * up) @ w_down.T  # (..., F) @ (F, D) -> (..., D)
# --8<-- [end:swiglu]
