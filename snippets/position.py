"""Order and position: what self-attention does with word order, and two ways to
give it positions.

The page ``docs/position.md`` shows this file one section at a time:
``self-attention`` is one head with no positions and ``permutation-gap`` measures
whether shuffling the tokens just shuffles its output; ``sinusoidal-positions``
(Vaswani et al., 2017) adds a position vector to every embedding; ``rope`` (rotary
position embedding, Su et al.) rotates the queries and keys instead, and
``rope-self-attention`` / ``rope-score`` use it. Both share ``position-angles``.

Shape legend: B = batch, T = tokens, d_model = embedding width, head_dim = width of
a query/key, d_v = width of a value.
"""

# --8<-- [start:imports]
import torch
# --8<-- [end:imports]

from snippets.attention import project, scaled_dot_product_attention
from snippets.checks import (
    HALF,
    as_numbers,
    check_callable,
    check_number,
    check_shapes,
    check_size,
    check_tensor,
    check_values,
)

__all__ = [
    "self_attention",
    "permutation_gap",
    "position_angles",
    "sinusoidal_positions",
    "apply_rope",
    "rope_self_attention",
    "rope_score",
]


# --8<-- [start:self-attention]
def self_attention(x, w_q, w_k, w_v, is_causal=False):
    """One head of self-attention with no position information at all.

    x: (..., T, d_model); w_q, w_k: (d_model, head_dim); w_v: (d_model, d_v).
    Returns (..., T, d_v). Row t of the output depends on token t and on the *set*
    of tokens, not on where they stand (unless ``is_causal``).

    Dtypes: those of ``project`` and ``scaled_dot_product_attention``, with their
    accuracy (half types computed in float32).
    """
    q, k, v = project(x, w_q, w_k, w_v)  # (..., T, head_dim) x2, (..., T, d_v)
    output, _ = scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    return output  # (..., T, d_v)
# --8<-- [end:self-attention]


# --8<-- [start:permutation-gap]
def permutation_gap(layer, x, perm):
    """How far ``layer`` is from permutation-equivariant, for this x and perm.

    x: (..., T, d_model); perm: a permutation of 0..T-1 (list or tensor). Runs the
    layer on the tokens in the order ``perm``, puts the output rows back in the
    original order and returns the largest absolute difference from layer(x), as a
    float. About 0 (rounding) means: shuffling the input only shuffled the output.

    Dtypes: float16, bfloat16, float32, float64 (x; the layer must return a tensor
    of the same dtype); the gap is measured in that dtype.
    """
    check_callable("layer", layer)
    check_values("x", check_tensor("x", x, "(..., T, d_model)"))
    perm = as_numbers("perm", perm, None)
    seq_len = x.shape[-2]  # T
    if perm.dim() != 1 or sorted(perm.tolist()) != list(range(seq_len)):
        raise ValueError(
            f"perm must be a permutation of 0..{seq_len - 1} (x has shape "
            f"{tuple(x.shape)}, so T = {seq_len}), got {perm.tolist()}"
        )
    perm = perm.long()  # its values are the ints 0 .. T-1
    out = layer(x)  # (..., T, d_v)
    check_shapes(x=(x, "(..., T, d_model)"),
                 **{"layer's output": (out, "(..., T, d_v)")})
    shuffled = layer(x[..., perm, :])  # (..., T, d_v), row i is token perm[i]
    restored = shuffled[..., torch.argsort(perm), :]  # row t is token t again
    gaps = (restored - out).abs()  # (..., T, d_v)
    return gaps.max().item() if gaps.numel() else 0.0  # no entries: no gap
# --8<-- [end:permutation-gap]


# --8<-- [start:position-angles]
def position_angles(positions, dim, base=10000.0):
    """The angle pos * theta_i for every position and every pair of dimensions.

    positions: (...) numbers; dim: even width. Returns (..., dim / 2) in float64,
    with theta_i = base ** (-2i / dim) for i = 0 .. dim/2 - 1: pair 0 turns one
    radian per position, the last pair base ** ((dim - 2) / dim) times slower.
    base: a number > 0.
    """
    check_size("dim", dim, even=True)
    check_number("base", base, 0)
    positions = as_numbers("positions", positions, torch.float64)  # (...)
    i = torch.arange(dim // 2, dtype=torch.float64, device=positions.device)
    theta = base ** (-2 * i / dim)  # (dim/2,) frequencies, from 1 down to ~1/base
    return positions[..., None] * theta  # (..., 1) * (dim/2,) -> (..., dim/2)
# --8<-- [end:position-angles]


# --8<-- [start:sinusoidal-positions]
def sinusoidal_positions(T, d_model, base=10000.0):
    """The (T, d_model) table of sinusoidal positions of Vaswani et al. (2017):
    column 2i is sin(pos * theta_i), column 2i + 1 is cos(pos * theta_i).

    It is added to the embeddings, x + sinusoidal_positions(T, d_model), so the
    same word at two positions enters attention as two different vectors.
    """
    check_size("T", T, minimum=0)
    check_size("d_model", d_model, even=True)
    angles = position_angles(torch.arange(T), d_model, base)  # (T, d_model/2)
    table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (T, d_model/2, 2)
    return table.flatten(-2).to(torch.float32)  # (T, d_model): sin, cos, sin, ...
# --8<-- [end:sinusoidal-positions]


# --8<-- [start:rope]
def apply_rope(x, positions=None, base=10000.0):
    """Rotary position embedding: rotate each pair of dimensions (2i, 2i + 1) of x
    by the angle pos * theta_i, theta_i = base ** (-2i / head_dim).

    x: (..., T, head_dim), a query or key per row. positions: numbers broadcastable
    to (..., T), by default 0 .. T-1. Returns the same shape and dtype. Rotations
    keep lengths and compose by adding angles, so the dot product of a query
    rotated to position m and a key rotated to n depends on m - n only.

    Dtypes: float16, bfloat16, float32, float64; the angles are computed in float64
    and the rotation in float32 for the half types, rounded once: within 1e-3 of a
    float64 rotation (relative to the largest |x|) in float16, 1e-2 in bfloat16,
    1e-6 in float32 and 1e-12 in float64.
    """
    check_tensor("x", x, "(..., T, head_dim)")
    check_size("head_dim (x.shape[-1])", x.shape[-1], even=True)
    if x.dtype in HALF:  # rotate in float32, round once
        return apply_rope(x.float(), positions, base).to(x.dtype)
    if positions is None:
        positions = torch.arange(x.shape[-2], device=x.device)  # (T,)
    positions = as_numbers("positions", positions, torch.float64).to(x.device)
    try:
        ok = torch.broadcast_shapes(positions.shape, x.shape[:-1]) == x.shape[:-1]
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"positions must broadcast to x.shape[:-1] = {tuple(x.shape[:-1])}, "
            f"got shape {tuple(positions.shape)}"
        )
    angles = position_angles(positions, x.shape[-1], base)  # (..., T, head_dim/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, head_dim/2) each: the pairs
    rotated = torch.stack(
        (even * cos - odd * sin, even * sin + odd * cos), dim=-1
    )  # (..., T, head_dim/2, 2)
    return rotated.flatten(-2)  # (..., T, head_dim), pairs back in place
# --8<-- [end:rope]


# --8<-- [start:rope-self-attention]
def rope_self_attention(x, w_q, w_k, w_v, base=10000.0):
    """``self_attention`` with RoPE: queries and keys are rotated by the positions
    0..T-1 before their dot products; the values are left alone.

    x: (..., T, d_model) -> (..., T, d_v).
    Dtypes: those of ``apply_rope`` and ``scaled_dot_product_attention``.
    """
    q, k, v = project(x, w_q, w_k, w_v)  # (..., T, head_dim) x2, (..., T, d_v)
    q, k = apply_rope(q, base=base), apply_rope(k, base=base)  # same shapes
    output, _ = scaled_dot_product_attention(q, k, v)
    return output  # (..., T, d_v)
# --8<-- [end:rope-self-attention]


# --8<-- [start:rope-score]
def rope_score(q, k, q_pos, k_pos, base=10000.0):
    """The dot product of query q at position q_pos with key k at position k_pos,
    after RoPE. q, k: (head_dim,). Returns a float.

    Dtypes: float16, bfloat16, float32, float64, q and k alike; the dot product
    in that dtype, within 1e-3 (relative to |q| |k|) in float16, 1e-2 in bfloat16,
    1e-6 in float32 and 1e-12 in float64.
    """
    check_shapes(q=(q, "(head_dim,)"), k=(k, "(head_dim,)"))
    check_size("head_dim = q.shape[0]", q.shape[0], even=True)
    check_values("q", q)
    for name, position in (("q_pos", q_pos), ("k_pos", k_pos)):
        check_number(name, position)
    q_rot = apply_rope(q[None, :], positions=[q_pos], base=base)  # (1, head_dim)
    k_rot = apply_rope(k[None, :], positions=[k_pos], base=base)  # (1, head_dim)
    return (q_rot @ k_rot.T).item()  # (1, head_dim) @ (head_dim, 1) -> (1, 1)
# --8<-- [end:rope-score]
