"""Multi-head self-attention, built from the single-head version.

Shape legend: B = batch size, T = sequence length, D = embed_dim (d_model),
H = num_heads, Dh = head_dim = D / H.

The idea: instead of one attention over all D features, split the features into H
groups of Dh, run scaled dot-product attention in every group ("head") at once, glue
the heads' outputs back together and mix them with one more linear layer. Each head
has its own slice of the query/key/value projections, so each head can learn to
look for something different, at the same cost as one big head.

The page shows this file one section at a time: ``split-heads`` and ``merge-heads``
are the two reshapes that make the heads, ``multihead-init`` and
``multihead-forward`` are the module (``multihead-module`` is the whole class), and
``from-torch`` copies the weights of a ``torch.nn.MultiheadAttention`` so the two can
be compared number for number.
"""

# --8<-- [start:imports]
import torch
import torch.nn.functional as F
from torch import nn
# --8<-- [end:imports]

from snippets.attention import scaled_dot_product_attention
from snippets.checks import (
    check_flag,
    check_mask,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
)

__all__ = ["split_heads", "merge_heads", "MultiHeadAttention"]


# --8<-- [start:split-heads]
def split_heads(x, num_heads):
    """(B, T, D) -> (B, H, T, Dh): give every head its own Dh-wide slice of features.

    Head h gets features ``h * Dh`` to ``(h + 1) * Dh - 1``. Moving H in front of T
    makes the heads look like extra batch dimensions, so one batched matmul runs
    attention in all of them at once. Both steps are views: nothing is copied.
    Dtypes: any (a view does no arithmetic).
    """
    check_tensor("x", x, "(B, T, D)", dtypes=None)
    check_size("num_heads", num_heads)
    batch, seq_len, embed_dim = x.shape  # B, T, D
    if embed_dim % num_heads:
        raise ValueError(
            f"x.shape[-1] must be divisible by num_heads={num_heads}, "
            f"got x of shape {tuple(x.shape)}"
        )
    head_dim = embed_dim // num_heads  # Dh = D / H
    x = x.view(batch, seq_len, num_heads, head_dim)  # (B, T, H, Dh)
    return x.transpose(1, 2)  # (B, H, T, Dh)
# --8<-- [end:split-heads]


# --8<-- [start:merge-heads]
def merge_heads(x):
    """(B, H, T, Dh) -> (B, T, D): undo ``split_heads``, putting the heads side by side.

    Row t of the result is head 0's output for token t, then head 1's, and so on,
    which is the layout the output projection expects.
    Dtypes: any (no arithmetic).
    """
    check_tensor("x", x, "(B, H, T, Dh)", dtypes=None)
    batch, num_heads, seq_len, head_dim = x.shape  # B, H, T, Dh
    x = x.transpose(1, 2)  # (B, T, H, Dh)
    return x.reshape(batch, seq_len, num_heads * head_dim)  # (B, T, D)
# --8<-- [end:merge-heads]


# --8<-- [start:multihead-module]
class MultiHeadAttention(nn.Module):
    """Batch-first multi-head self-attention: (B, T, D) -> (B, T, D).

    ``qkv_proj`` is one ``nn.Linear(D, 3 * D)`` whose output rows are ordered q, k, v
    (so its weight is exactly ``torch.nn.MultiheadAttention.in_proj_weight``): one big
    matmul is faster than three small ones. ``out_proj`` mixes the heads' outputs.
    Attributes ``embed_dim`` (D), ``num_heads`` (H) and ``head_dim`` (Dh = D / H).
    """

    # --8<-- [start:multihead-init]
    def __init__(self, embed_dim, num_heads, bias=True):
        super().__init__()
        check_size("embed_dim", embed_dim)
        check_size("num_heads", num_heads)
        check_flag("bias", bias)
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim must be divisible by num_heads, so that every head gets "
                f"head_dim = embed_dim / num_heads features; got embed_dim={embed_dim} "
                f"and num_heads={num_heads}"
            )
        self.embed_dim = embed_dim  # D
        self.num_heads = num_heads  # H
        self.head_dim = embed_dim // num_heads  # Dh
        self.qkv_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)  # D -> 3D
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # D -> D
    # --8<-- [end:multihead-init]

    # --8<-- [start:multihead-forward]
    def forward(self, x, mask=None, is_causal=False, need_weights=False):
        """Self-attention over x: (B, T, D) -> (output (B, T, D), weights or None).

        ``mask`` is boolean, True meaning "query i may attend to key j", and must
        broadcast to (B, H, T, T): (B, 1, 1, T) masks padded keys, (T, T) is one
        pattern for every sequence and head. ``is_causal=True`` lets token i see
        tokens 0..i only; give it instead of a mask, not with one.

        With ``need_weights=False`` (the default) attention runs in PyTorch's fused
        ``F.scaled_dot_product_attention`` and ``weights`` is None. With
        ``need_weights=True`` it runs in the from-scratch
        ``snippets.attention.scaled_dot_product_attention``, and ``weights`` is the
        per-head (B, H, T, T) tensor. Both give the same output.

        Each head scales its scores by 1 / sqrt(Dh), its own width, not by
        1 / sqrt(D).

        A query whose mask row allows no key at all gets zero attention weights and
        a zero attention output, as ``F.scaled_dot_product_attention`` gives in
        torch 2.13, so its output row is just ``out_proj.bias`` (zeros without
        bias). ``torch.nn.MultiheadAttention`` returns NaN for such rows, except
        when it runs F.scaled_dot_product_attention itself (need_weights=False with
        autograd on).

        Dtypes: the layer's, float16, bfloat16, float32 or float64 (x must match
        it); within 2e-3 of torch.nn.MultiheadAttention in float16, 2e-2 in
        bfloat16, 1e-4 in float32 and 1e-12 in float64.
        """
        weights = self.out_proj.weight  # (D, D): x must match its width, dtype, device
        check_shapes(**{"the layer's weights": (weights, "(D, D)")}, x=(x, "(B, T, D)"))
        check_flag("need_weights", need_weights)
        batch, seq_len, _ = x.shape  # B, T
        check_mask(mask, (batch, self.num_heads, seq_len, seq_len), is_causal, x.device)
        q, k, v = self.qkv_proj(x).chunk(3, dim=-1)  # 3 x (B, T, D), views
        q = split_heads(q, self.num_heads)  # (B, H, T, Dh)
        k = split_heads(k, self.num_heads)  # (B, H, T, Dh)
        v = split_heads(v, self.num_heads)  # (B, H, T, Dh)
        if need_weights:  # from scratch (snippets.attention): weights come back too
            out, weights = scaled_dot_product_attention(
                q, k, v, mask=mask, is_causal=is_causal
            )  # (B, H, T, Dh), (B, H, T, T)
        else:  # PyTorch's fused kernel: faster, but it does not return the weights
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=is_causal
            )  # (B, H, T, Dh)
            weights = None
        return self.out_proj(merge_heads(out)), weights  # (B, T, D), weights
    # --8<-- [end:multihead-forward]

    # --8<-- [start:from-torch]
    @classmethod
    def from_torch(cls, m):
        """Build a MultiHeadAttention with the weights of ``m`` (nn.MultiheadAttention).

        ``m.in_proj_weight`` (3D, D) holds the q, k and v projections stacked in that
        order, exactly the layout of ``qkv_proj.weight``, so the weights copy over
        one to one. Raises ValueError for the options that have no counterpart here.
        """
        check_type("m", m, nn.MultiheadAttention, "a torch.nn.MultiheadAttention")
        if not m.batch_first:
            raise ValueError(
                "m.batch_first must be True (this module takes (B, T, D) inputs), got "
                "False; build m with batch_first=True"
            )
        if not m._qkv_same_embed_dim:
            raise ValueError(
                f"m.kdim and m.vdim must equal m.embed_dim={m.embed_dim} (separate "
                "q/k/v projections cannot be copied into the fused qkv_proj), got "
                f"m.kdim={m.kdim} and m.vdim={m.vdim}"
            )
        if m.bias_k is not None:
            raise ValueError(
                "m.bias_k must be None (the extra key/value bias rows of "
                "add_bias_kv=True have no counterpart here), got a tensor"
            )
        if m.add_zero_attn:
            raise ValueError(
                "m.add_zero_attn must be False (the extra all-zero key/value has no "
                "counterpart here), got True"
            )
        if m.dropout > 0:
            raise ValueError(
                f"m.dropout must be 0.0 (this module has no attention dropout), got "
                f"{m.dropout}; build m with dropout=0.0"
            )
        bias = m.in_proj_bias is not None
        new = cls(m.embed_dim, m.num_heads, bias=bias).to(m.in_proj_weight)
        state = {
            "qkv_proj.weight": m.in_proj_weight,  # (3D, D): rows q, then k, then v
            "out_proj.weight": m.out_proj.weight,  # (D, D)
        }
        if bias:
            state["qkv_proj.bias"] = m.in_proj_bias
            state["out_proj.bias"] = m.out_proj.bias
        new.load_state_dict(state)  # strict: every parameter must be copied
        return new.train(m.training)
    # --8<-- [end:from-torch]
# --8<-- [end:multihead-module]
