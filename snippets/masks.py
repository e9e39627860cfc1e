"""Attention masks: causal, padding, how they combine, and how they go wrong.

The page ``docs/masks.md`` shows this file one section at a time. Every mask here is
boolean with True meaning "may attend", the polarity of
``torch.nn.functional.scaled_dot_product_attention`` and of
``snippets.attention.scaled_dot_product_attention``. Two functions are wrong on
purpose, so the page can show what the mistakes do and the tests can prove that the
no-peeking check catches them: ``attention_with_inverted_mask`` (the polarity bug)
and ``naive_masked_softmax`` (NaN for a query that may attend to nothing).
"""

# --8<-- [start:imports]
import torch
# --8<-- [end:imports]

from snippets.attention import (
    attention_scores,
    attention_weights,
    scale_scores,
    weighted_sum,
)
from snippets.checks import (
    as_numbers,
    check_attention_inputs,
    check_callable,
    check_device,
    check_mask,
    check_number,
    check_seed,
    check_shapes,
    check_size,
    check_tensor,
    check_values,
)

__all__ = [
    "causal_mask_lower_right",
    "padding_mask",
    "combine_masks",
    "attention_with_inverted_mask",
    "naive_masked_softmax",
    "future_leaks",
]


# --8<-- [start:lower-right-causal-mask]
def causal_mask_lower_right(t_q, t_k, device=None):
    """Boolean (T_q, T_k) mask in which query i may attend to keys 0 .. T_k - T_q + i.

    The last query lines up with the last key, which is what decoding with a KV cache
    needs: the T_q new tokens are the last T_q of the T_k tokens seen so far. When
    T_q == T_k it equals the upper-left mask of ``causal_mask``; when T_q > T_k the
    first T_q - T_k queries may attend to no key at all. t_q, t_k: positive ints.
    """
    check_size("t_q", t_q)
    check_size("t_k", t_k)
    device = check_device("device", device)
    ones = torch.ones(t_q, t_k, dtype=torch.bool, device=device)  # (T_q, T_k)
    return ones.tril(diagonal=t_k - t_q)  # keep j <= i + (T_k - T_q)
# --8<-- [end:lower-right-causal-mask]


# --8<-- [start:padding-mask]
def padding_mask(lengths, max_len):
    """Key padding mask (B, 1, max_len): True at the real tokens of each sequence.

    Sequence b holds ``lengths[b]`` real tokens followed by padding (right padding).
    The middle dimension of size 1 broadcasts over the queries, so the mask works
    against scores of shape (B, T_q, T_k); for scores with a heads dimension,
    (B, H, T_q, T_k), add one more: ``padding_mask(lengths, max_len)[:, None]`` is
    (B, 1, 1, max_len).
    """
    check_size("max_len", max_len)
    lengths = as_numbers("lengths", lengths, None)
    check_tensor("lengths", check_values("lengths", lengths), "(B,)",
                 dtypes=(torch.int8, torch.int16, torch.int32, torch.int64))
    if ((lengths < 0) | (lengths > max_len)).any():
        raise ValueError(
            f"lengths must be between 0 and max_len={max_len}, "
            f"got {lengths.tolist()}"
        )
    positions = torch.arange(max_len, device=lengths.device)  # (T,)
    real = positions < lengths[:, None]  # (1, T) < (B, 1) -> (B, T)
    return real[:, None, :]  # (B, 1, T)
# --8<-- [end:padding-mask]


# --8<-- [start:combine-masks]
def combine_masks(*masks):
    """Logical AND of boolean may-attend masks, broadcast to a common shape.

    A query may attend to a key only if every mask allows it, so a causal (T, T)
    mask and a key padding (B, 1, T) mask combine into one (B, T, T) mask.
    """
    if not masks:
        raise ValueError("masks must be at least one mask, got none")
    check_shapes(dtypes=(torch.bool,), **{f"masks[{i}]": (mask, "(...)")
                                          for i, mask in enumerate(masks)})
    combined = masks[0]
    for mask in masks[1:]:
        combined = combined & mask  # broadcasts, e.g. (T, T) & (B, 1, T) -> (B, T, T)
    return combined
# --8<-- [end:combine-masks]


# --8<-- [start:inverted-mask-bug]
def attention_with_inverted_mask(q, k, v, mask):
    """WRONG ON PURPOSE: masked_fill-style attention handed a may-attend mask.

    ``scores.masked_fill(mask, -inf)`` blocks where the mask is True, the polarity of
    ``nn.MultiheadAttention``'s boolean masks. Given a mask where True means "may
    attend" it blocks exactly the keys the query should see and opens the rest: with
    a causal mask, every query looks only at the future, and the last query, which
    may see everything, sees nothing (a row of NaN).

    Dtypes: float32, float64, q, k and v alike (it shows a bug; nothing else is
    wrong in it: the numbers of the same torch operations).
    """
    check_tensor("mask", mask, "(..., T_q, T_k)", dtypes=(torch.bool,))
    check_attention_inputs(q, k, v, mask)
    check_tensor("q", q, "(..., T_q, d_k)", dtypes=(torch.float32, torch.float64))
    scores = scale_scores(attention_scores(q, k), q.shape[-1])  # (..., T_q, T_k)
    scores = scores.masked_fill(mask, float("-inf"))  # BUG: mask says "may attend"
    weights = attention_weights(scores)  # (..., T_q, T_k)
    return weighted_sum(weights, v), weights  # (..., T_q, d_v), (..., T_q, T_k)
# --8<-- [end:inverted-mask-bug]


# --8<-- [start:naive-masked-softmax]
def naive_masked_softmax(scores, mask, fill=float("-inf")):
    """Softmax over the keys, after writing ``fill`` where ``mask`` is False.

    scores: (..., T_k), one row or (..., T_q, T_k); mask: boolean, broadcast to it.
    The textbook version, with no guard: a row in which every key is blocked is all
    ``fill``, and with ``fill = -inf`` its softmax is 0 / 0 = NaN. A finite ``fill``
    such as -1e9 avoids the NaN but spreads such a row evenly over the blocked keys.

    Dtypes: float16, bfloat16, float32, float64; the numbers of torch.softmax, and
    ``fill`` must fit the dtype (or be -inf or inf).
    """
    check_tensor("scores", scores, "(..., T_k)")
    check_tensor("mask", mask, "(...)", dtypes=None)  # a tensor, not None
    check_mask(mask, scores.shape, device=scores.device)
    inf = float("inf")  # fill must fit the dtype, or be -inf or inf
    if check_number("fill", fill, -inf, inf, False, False) not in (-inf, inf):
        top = torch.finfo(scores.dtype).max
        check_number("fill", fill, -top, top, False, False)
    scores = scores.masked_fill(~mask, fill)  # (..., T_q, T_k)
    return torch.softmax(scores, dim=-1)  # (..., T_q, T_k)
# --8<-- [end:naive-masked-softmax]


# --8<-- [start:no-peeking]
def future_leaks(attend, q, k, v, seed=0):
    """The positions t whose output changes when the tokens after t change.

    ``attend(q, k, v)`` returns the output (..., T, d_v), or a tuple whose first item
    is the output. q, k, v: (..., T, d) for T tokens attending to themselves. For each
    t, the rows of q, k and v after t are replaced by fresh random values (seeded);
    a causal attention must give row t exactly as before. Returns the list of t whose
    output row changed: [] means no peeking. NaN compared with NaN counts as equal.

    Dtypes: float16, bfloat16, float32, float64, q, k and v alike (and attend's
    output); rows count as equal within 1e-6.
    """
    check_callable("attend", attend)
    check_shapes(q=(q, "(..., T, d)"), k=(k, "(..., T, d)"), v=(v, "(..., T, d_v)"))
    check_values("q", q)
    check_seed("seed", seed)

    def output(q, k, v):
        out = attend(q, k, v)
        out = out[0] if isinstance(out, tuple) and out else out  # (..., T, d_v)
        check_shapes(q=(q, "(..., T, d)"),
                     **{"attend's output": (out, "(..., T, d_v)")})
        return out

    generator = torch.Generator().manual_seed(seed)
    before = output(q, k, v)  # (..., T, d_v)
    leaks = []
    for t in range(q.shape[-2] - 1):
        changed = []
        for x in (q, k, v):
            x = x.clone()
            later = x[..., t + 1 :, :]  # the tokens after t
            later.copy_(torch.randn(later.shape, generator=generator, dtype=x.dtype))
            changed.append(x)
        after = output(*changed)  # (..., T, d_v)
        same = torch.allclose(
            after[..., t, :], before[..., t, :], rtol=0, atol=1e-6, equal_nan=True
        )
        if not same:
            leaks.append(t)
    return leaks
# --8<-- [end:no-peeking]
