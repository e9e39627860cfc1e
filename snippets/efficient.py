"""Attention that is cheaper to run: tiling, a key/value cache and shared KV heads.

Shape legend: B = batch size, H = number of heads, T = sequence length (T_q queries,
T_k keys), d = head dim of queries and keys, d_v = head dim of values. In
grouped-query attention H_q query heads share H_kv key/value heads, in groups of
G = H_q / H_kv. "..." is any number of leading (batch, head) dimensions.

The page ``docs/efficient.md`` shows this file one section at a time (the argument
checks are ``snippets/checks.py``'s, explained on ``docs/attention.md``):

* ``tiled-attention``: exact attention that never builds the (T_q, T_k) score
  matrix. It walks over blocks of queries and keys and keeps a running softmax
  (the idea behind FlashAttention), so its extra memory grows like T * block_size
  instead of T_q * T_k.
* ``kv-cache`` and ``decode-step``: when a model writes one token at a time, the keys
  and values of the earlier tokens never change, so they are kept, not recomputed.
* ``grouped-query-attention``: several query heads read the same key/value head,
  which shrinks the cache by G; multi-query attention is the case H_kv = 1.
"""

# --8<-- [start:imports]
import math

import torch
# --8<-- [end:imports]

# Outside any section: a page includes snippets/attention.py's sections instead.
from snippets.attention import scaled_dot_product_attention
from snippets.checks import (
    HALF,
    check_attention_inputs,
    check_broadcast,
    check_same,
    check_shapes,
    check_size,
    check_type,
)

__all__ = [
    "tiled_attention",
    "KVCache",
    "decode_step",
    "grouped_query_attention",
]


# --8<-- [start:tiled-attention]
def tiled_attention(q, k, v, block_size=128, is_causal=False):
    """softmax(q k^T / sqrt(d)) v, computed block by block with an online softmax.

    q: (..., T_q, d), k: (..., T_k, d), v: (..., T_k, d_v) -> (..., T_q, d_v);
    leading dimensions broadcast. The output of
    ``snippets.attention.scaled_dot_product_attention`` up to float rounding, but it
    never holds more than one (block_size, block_size) tile of scores per head, and
    its running statistics belong to one block of queries at a time: beyond the
    output, extra memory O(block_size * (block_size + d)) per head, not O(T_q * T_k).

    For each block of query rows it walks over the key blocks, keeping per row the
    running maximum ``m`` of the scores seen so far, the running denominator
    ``l = sum exp(s - m)`` and the running numerator ``acc = sum exp(s - m) v``. When
    a new tile raises the maximum, the old ``l`` and ``acc`` are multiplied by
    ``exp(m_old - m_new)``, which is what they would have been had the new maximum
    been known from the start. At the end ``acc / l`` is the softmax-weighted sum.

    ``is_causal=True`` lets query i see keys j <= i (aligned to the upper left, as in
    ``torch.nn.functional.scaled_dot_product_attention``). Key blocks that lie wholly
    to the right of a query block's last row are skipped, not masked: that halves the
    work for T_q = T_k. Only the tiles that straddle the diagonal need a mask.

    Each tile is one (..., block_size, d) @ (..., d, block_size) matmul over all
    heads at once, so a tile of scores holds H x block_size^2 floats: 512 KiB for
    8 heads at the default block_size=128. On a 2-core CPU (8 heads of 64,
    T = 8192; bench/run.py) block_size=256 (2 MiB tiles, still in cache between the
    six passes over each tile: matmul, max, subtract, exp, sum, matmul) was 10-25%
    faster, because fewer tiles pay Python, dispatch and thread start-up costs;
    1024 (32 MiB tiles) falls out of cache and took twice as long. Pass the block
    that suits your machine; the results are the same to rounding.

    Autograd works, but it keeps every tile for the backward pass, which brings the
    O(T_q * T_k) memory back; FlashAttention recomputes the tiles instead.

    Dtypes: float16, bfloat16, float32, float64, q, k and v alike; float16 and
    bfloat16 are computed in float32 and rounded once. Within 2e-3 of torch's
    function in float16, 2e-2 in bfloat16, 1e-4 in float32 and 1e-12 in float64.
    """
    batch = check_attention_inputs(q, k, v, is_causal=is_causal)  # leading dims
    check_size("block_size", block_size)
    if q.dtype in HALF:  # compute in float32, round once
        return tiled_attention(q.float(), k.float(), v.float(), block_size,
                               is_causal).to(q.dtype)
    t_q, d = q.shape[-2:]  # T_q, d
    t_k, d_v = k.shape[-2], v.shape[-1]
    scale = 1.0 / math.sqrt(d)
    out = q.new_empty(*batch, t_q, d_v)  # (..., T_q, d_v), filled block by block
    for q0 in range(0, t_q, block_size):
        q1 = min(q0 + block_size, t_q)  # this block holds queries q0 .. q1 - 1
        q_blk = q[..., q0:q1, :] * scale  # (..., Bq, d), Bq = q1 - q0
        m = q.new_full((*batch, q1 - q0, 1), -math.inf)  # (..., Bq, 1) running max
        l = q.new_zeros((*batch, q1 - q0, 1))  # (..., Bq, 1) running denominator
        acc = q.new_zeros((*batch, q1 - q0, d_v))  # (..., Bq, d_v) running numerator
        k_end = min(t_k, q1) if is_causal else t_k  # causal: keys >= q1 are unseen
        for k0 in range(0, k_end, block_size):
            k1 = min(k0 + block_size, k_end)  # keys k0 .. k1 - 1
            s = q_blk @ k[..., k0:k1, :].transpose(-2, -1)  # (..., Bq, Bk) scores
            if is_causal and k1 - 1 > q0:  # the tile straddles the diagonal
                rows = torch.arange(q0, q1, device=q.device).unsqueeze(-1)  # (Bq, 1)
                cols = torch.arange(k0, k1, device=q.device)  # (Bk,)
                s.masked_fill_(cols > rows, -math.inf)  # (..., Bq, Bk): key j > i
            m_new = torch.maximum(m, s.amax(dim=-1, keepdim=True))  # (..., Bq, 1)
            shift = m_new.masked_fill(m_new == -math.inf, 0.0)  # no -inf - (-inf)
            p = torch.exp_(s - shift)  # (..., Bq, Bk), every entry in [0, 1]
            rescale = torch.exp(m - shift)  # (..., Bq, 1): 0 on the first tile
            l = l * rescale + p.sum(dim=-1, keepdim=True)  # (..., Bq, 1)
            acc = acc * rescale + p @ v[..., k0:k1, :]  # (..., Bq, d_v)
            m = m_new
        # (..., Bq, d_v); l >= 1 (the top score adds 1) unless every score was -inf:
        out[..., q0:q1, :] = acc / l.masked_fill(l == 0, 1.0)  # then acc = 0 v, l = 1
    return out
# --8<-- [end:tiled-attention]


# --8<-- [start:kv-cache]
class KVCache:
    """The keys and values of every token decoded so far, for one attention layer.

    ``append(k_new, v_new)`` adds T_new tokens, k_new (..., T_new, d) and
    v_new (..., T_new, d_v), and returns all of them so far: k_all (..., T, d) and
    v_all (..., T, d_v) with T = len(cache). The leading (batch, head) dimensions,
    d, d_v and the dtype are fixed by the first append.

    Storage is preallocated and doubled when full, so decoding n tokens copies
    O(n) rows in total; ``torch.cat`` on every step would copy O(n^2). The returned
    tensors are views of that storage. Later appends only write rows past their end
    (or into new storage), so tensors handed out earlier keep their values; do not
    write into them. An append that raises stores nothing.

    Dtypes: float16, bfloat16, float32, float64; the values are stored as given.
    """

    def __init__(self, capacity=16):
        check_size("capacity", capacity)
        self.capacity = capacity  # rows allocated at the first append
        self._k = None  # (..., capacity, d) once the first append arrives
        self._v = None  # (..., capacity, d_v)
        self._len = 0  # rows in use

    def __len__(self):
        return self._len

    def append(self, k_new, v_new):
        """Store k_new (..., T_new, d), v_new (..., T_new, d_v); return k_all, v_all."""
        self.check(k_new, v_new)
        start, end = self._len, self._len + k_new.shape[-2]
        if self._k is None or end > self._k.shape[-2]:
            self._grow(k_new, v_new, end)
        self._k[..., start:end, :] = k_new  # (..., T_new, d) into rows start..end-1
        self._v[..., start:end, :] = v_new  # (..., T_new, d_v)
        self._len = end
        k_all, v_all = self._k[..., :end, :], self._v[..., :end, :]  # views, no copy
        return k_all, v_all  # (..., T, d), (..., T, d_v)

    def _grow(self, k_new, v_new, needed):
        rows = self.capacity if self._k is None else 2 * self.capacity  # doubling
        rows = max(rows, needed)  # a long prompt may need more than double
        batch = torch.broadcast_shapes(k_new.shape[:-2], v_new.shape[:-2])  # (...)
        k = k_new.new_empty(*batch, rows, k_new.shape[-1])  # (..., R, d)
        v = v_new.new_empty(*batch, rows, v_new.shape[-1])  # (..., R, d_v)
        if self._k is not None:
            k[..., : self._len, :] = self._k[..., : self._len, :]  # keep what we had
            v[..., : self._len, :] = self._v[..., : self._len, :]
        self._k, self._v, self.capacity = k, v, rows

    def check(self, k_new, v_new):
        """Raise ValueError for what ``append(k_new, v_new)`` must refuse, before
        anything is stored; return the shape (..., T, d) k_all would have."""
        batch = check_shapes(k_new=(k_new, "(..., T_new, d)"),
                             v_new=(v_new, "(..., T_new, d_v)"))
        if self._k is None:
            return (*batch, k_new.shape[-2], k_new.shape[-1])
        check_same(**{"the cached keys": self._k, "k_new": k_new})
        cached = tuple(self._k.shape[:-2])  # new tokens broadcast to it, not it to them
        d, d_v = self._k.shape[-1], self._v.shape[-1]
        want = f"(..., T_new, {d}) and (..., T_new, {d_v})"
        if (check_broadcast(k_new=batch, cache=cached) != cached
                or (k_new.shape[-1], v_new.shape[-1]) != (d, d_v)):
            raise ValueError(
                f"k_new and v_new must fit the cache: shapes {want} with leading "
                f"dimensions that broadcast to {cached}, got {tuple(k_new.shape)} "
                f"and {tuple(v_new.shape)}"
            )
        return (*cached, self._len + k_new.shape[-2], k_new.shape[-1])
# --8<-- [end:kv-cache]


# --8<-- [start:decode-step]
def decode_step(cache, q_new, k_new, v_new):
    """Attention of T_new new tokens over everything decoded so far, new ones included.

    q_new, k_new: (..., T_new, d), v_new: (..., T_new, d_v) -> (..., T_new, d_v).
    Appends k_new and v_new to ``cache`` (a KVCache), then lets new token i, which
    sits at position P + i after the P cached ones, attend to keys 0 .. P + i: the
    same rows causal attention over the whole sequence would give it, without
    recomputing the keys and values of the old tokens. T_new = 1 is the usual
    decoding step; a longer first call fills the cache with the prompt ("prefill").
    Every argument is checked before anything is stored: a call that raises leaves
    the cache as it was, so it can be retried.

    Dtypes: those of ``scaled_dot_product_attention`` (half types computed in
    float32), with its accuracy.
    """
    check_type("cache", cache, KVCache)
    check_shapes(q_new=(q_new, "(..., T_new, d)"), k_new=(k_new, "(..., T_new, d)"),
                 v_new=(v_new, "(..., T_new, d_v)"))  # the new tokens on their own ...
    check_size("d = q_new.shape[-1]", q_new.shape[-1])  # the scores divide by sqrt(d)
    k_all_shape = cache.check(k_new, v_new)  # ... and with the cached ones
    check_broadcast(q_new=q_new.shape[:-2], cache=k_all_shape[:-2])
    k_all, v_all = cache.append(k_new, v_new)  # (..., T, d), (..., T, d_v)
    t_new, t = q_new.shape[-2], k_all.shape[-2]
    # Causal, aligned to the lower right: new token i may see keys j <= t - t_new + i
    mask = torch.ones(t_new, t, dtype=torch.bool, device=q_new.device)
    mask = mask.tril(diagonal=t - t_new)  # (T_new, T): all True when T_new = 1
    out, _ = scaled_dot_product_attention(q_new, k_all, v_all, mask=mask)
    return out  # (..., T_new, d_v)
# --8<-- [end:decode-step]


# --8<-- [start:grouped-query-attention]
def grouped_query_attention(q, k, v, is_causal=False):
    """Attention in which G = H_q / H_kv query heads share each key/value head.

    q: (B, H_q, T_q, d), k: (B, H_kv, T_k, d), v: (B, H_kv, T_k, d_v)
    -> (B, H_q, T_q, d_v). Query heads h * G .. h * G + G - 1 read key/value head h,
    the same grouping as ``k.repeat_interleave(G, dim=1)``. H_kv = H_q is ordinary
    multi-head attention, H_kv = 1 is multi-query attention. ``is_causal`` as in
    ``torch.nn.functional.scaled_dot_product_attention`` (query i sees keys j <= i).

    The point is a KV cache G times smaller, so the KV heads must not be copied G
    times. Broadcasting q (B, H_kv, G, T_q, d) against k (B, H_kv, 1, T_k, d) in a
    matmul would do just that: torch expands k to G copies and makes them contiguous.
    Instead the G query heads of a group are stacked as G * T_q rows of one matrix,
    so each KV head meets all its queries in one plain batched matmul. B stands for
    any leading (batch) dimensions, which broadcast.

    Dtypes: float16, bfloat16, float32, float64, q, k and v alike; float16 and
    bfloat16 are computed in float32 and rounded once. Within 2e-3 of torch's
    function in float16, 2e-2 in bfloat16, 1e-4 in float32 and 1e-12 in float64.
    """
    check_shapes(q=(q, "(..., H_q, T_q, d)"), k=(k, "(..., H_kv, T_k, d)"),
                 v=(v, "(..., H_kv, T_k, d_v)"))
    h_q, h_kv = q.shape[-3], k.shape[-3]
    if h_kv == 0 or h_q % h_kv:
        raise ValueError(
            f"q must have a multiple of H_kv = k.shape[-3] = {h_kv} >= 1 query heads, "
            f"got q of shape {tuple(q.shape)} and k of shape {tuple(k.shape)}"
        )
    g = h_q // h_kv  # G query heads per KV head
    # the rules of attention, per group: (B, H_kv, G, T_q, d) against (B, H_kv, 1, ...)
    check_attention_inputs(q.unflatten(-3, (h_kv, g)), k.unsqueeze(-3),
                           v.unsqueeze(-3), is_causal=is_causal)
    if q.dtype in HALF:  # compute in float32, round once
        return grouped_query_attention(q.float(), k.float(), v.float(),
                                       is_causal).to(q.dtype)
    t_q, d, t_k = q.shape[-2], q.shape[-1], k.shape[-2]  # T_q, d, T_k
    q = q.unflatten(-3, (h_kv, g))  # (B, H_kv, G, T_q, d): query heads by group
    q = q.flatten(-3, -2)  # (B, H_kv, G*T_q, d): one matrix per KV head
    q = q / math.sqrt(d)  # (B, H_kv, G*T_q, d): scale q, it is smaller than scores
    scores = q @ k.transpose(-2, -1)  # (B, H_kv, G*T_q, T_k), no copy of k
    if is_causal:
        mask = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
        scores = scores.unflatten(-2, (g, t_q))  # (B, H_kv, G, T_q, T_k)
        scores = scores.masked_fill(~mask, -math.inf)  # (T_q, T_k) broadcasts over G
        scores = scores.flatten(-3, -2)  # (B, H_kv, G*T_q, T_k)
    weights = torch.softmax(scores, dim=-1)  # (B, H_kv, G*T_q, T_k)
    no_key = (scores == -math.inf).all(dim=-1, keepdim=True)  # rows all -inf ...
    weights = weights.masked_fill(no_key, 0.0)  # ... are NaN: make them 0, as torch
    out = weights @ v  # (B, H_kv, G*T_q, d_v)
    return out.unflatten(-2, (g, t_q)).flatten(-4, -3)  # (B, H_q, T_q, d_v)
# --8<-- [end:grouped-query-attention]
