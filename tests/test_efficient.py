"""Tests for snippets/efficient.py: tiled attention, the KV cache and grouped-query
attention.

References: the from-scratch ``snippets.attention.scaled_dot_product_attention``
("naive", it builds the whole score matrix) and
``torch.nn.functional.scaled_dot_product_attention``.

Memory is checked by instrumentation, not by reading the process's memory: a
TorchDispatchMode (``Allocations``) sees every tensor an aten op returns and, with
weak references, when the last tensor on each storage dies, so it knows the peak
number of bytes of tensor storage alive at once. That is exact for tensors and blind
to scratch memory inside kernels (BLAS packing buffers), which does not depend on T.
The benchmark (bench/memory.py) measures the process's real peak memory instead.
"""

import inspect
import re
import weakref
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import snippets.checks as checks
import snippets.efficient as efficient
from snippets.attention import scaled_dot_product_attention as naive_attention
from snippets.efficient import (
    KVCache,
    decode_step,
    grouped_query_attention,
    tiled_attention,
)


import inspect
import json
import re

import pytest

from bench.config import ROOT
from hooks.markers import fences
from snippets.efficient import KVCache, tiled_attention
from tests.pages import numbers, prose, read_page, section, tables

ATOL = 1e-5  # float32, rtol 0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is fastest, and two threads that wait for
    each other slow everything down badly when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_near(actual, expected, atol=ATOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def randn(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def qkv(lead, t_q, t_k, d, d_v, seed=0, dtype=torch.float32):
    return (
        randn(*lead, t_q, d, seed=seed, dtype=dtype),
        randn(*lead, t_k, d, seed=seed + 1, dtype=dtype),
        randn(*lead, t_k, d_v, seed=seed + 2, dtype=dtype),
    )


def naive(q, k, v, is_causal=False):
    return naive_attention(q, k, v, is_causal=is_causal)[0]


class Allocations(TorchDispatchMode):
    """Inside ``with Allocations(*inputs) as a:``, follow every tensor storage made.

    ``a.peak``: most bytes of new storage alive at one time; ``a.largest``: bytes of
    the largest single new storage; ``a.calls``: how often each aten op ran. Storages
    of ``inputs`` (and views of them, such as slices) are not new and do not count.
    """

    def __init__(self, *inputs):
        super().__init__()
        self.inputs = {t.untyped_storage().data_ptr() for t in inputs}
        self.views = {}  # storage address -> live tensors on it that we handed out
        self.sizes = {}  # storage address -> bytes
        self.live = self.peak = self.largest = 0
        self.calls = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        self.calls[name] = self.calls.get(name, 0) + 1
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._follow(t)
        return out

    def _follow(self, t):
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if ptr in self.inputs or nbytes == 0:
            return
        if ptr not in self.views:
            self.views[ptr], self.sizes[ptr] = 0, nbytes
            self.live += nbytes
            self.peak = max(self.peak, self.live)
            self.largest = max(self.largest, nbytes)
        self.views[ptr] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr):
        self.views[ptr] -= 1
        if self.views[ptr] == 0:
            del self.views[ptr]
            self.live -= self.sizes.pop(ptr)


# ---------------------------------------------------------------------------
# Tiled attention: the same numbers as the naive version
# ---------------------------------------------------------------------------

# (leading dims, T_q, T_k, d, d_v)
SHAPES = [
    ((), 1, 1, 4, 4),  # no batch or head dims, one token
    ((2, 3), 5, 5, 8, 8),  # T smaller than every block but 1 and 4
    ((1, 2), 37, 37, 8, 5),  # T not a multiple of the block
    ((2,), 32, 32, 16, 16),  # T a multiple of every block but 256 (and 128)
    ((2, 2), 20, 45, 8, 6),  # fewer queries than keys
    ((2, 2), 45, 20, 8, 6),  # more queries than keys
    ((1, 1, 2), 33, 70, 3, 7),  # three leading dims
]
SHAPE_IDS = [f"{lead}-Tq{tq}-Tk{tk}-d{d}-dv{dv}" for lead, tq, tk, d, dv in SHAPES]


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("block_size", [1, 4, 16, 32, 256])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_tiled_matches_naive(shape, block_size, is_causal):
    lead, t_q, t_k, d, d_v = shape
    q, k, v = qkv(lead, t_q, t_k, d, d_v)
    out = tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal)
    assert out.shape == (*lead, t_q, d_v)
    assert out.dtype == q.dtype
    assert_near(out, naive(q, k, v, is_causal))


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_tiled_matches_torch_sdpa(shape, is_causal):
    """Including torch's causal convention when T_q != T_k (aligned upper left)."""
    lead, t_q, t_k, d, d_v = shape
    q, k, v = qkv(lead, t_q, t_k, d, d_v, seed=7)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert_near(tiled_attention(q, k, v, block_size=16, is_causal=is_causal), expected)


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_tiled_default_block_size_with_several_blocks(is_causal):
    """600 tokens: four full default blocks of 128 and a partial one."""
    assert inspect.signature(tiled_attention).parameters["block_size"].default == 128
    q, k, v = qkv((2,), 600, 600, 8, 8, seed=3)
    assert_near(tiled_attention(q, k, v, is_causal=is_causal), naive(q, k, v, is_causal))


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_tiled_float64_agrees_to_rounding(is_causal):
    q, k, v = qkv((2, 2), 50, 50, 8, 8, seed=5, dtype=torch.float64)
    out = tiled_attention(q, k, v, block_size=16, is_causal=is_causal)
    assert out.dtype == torch.float64
    assert_near(out, naive(q, k, v, is_causal), atol=1e-12)


def test_tiled_survives_scores_that_overflow_exp():
    """Scores near 1e4: exp overflows unless the running maximum is subtracted,
    and the maximum grows from block to block, so old sums must be rescaled."""
    q, k, v = qkv((2,), 40, 40, 4, 4, seed=11)
    k = k * torch.linspace(1, 100, 40).unsqueeze(-1)  # later keys have larger scores
    q = q * 100
    out = tiled_attention(q, k, v, block_size=8)
    assert torch.isfinite(out).all()
    assert_near(out, naive(q, k, v))


def test_tiled_query_rows_are_independent_of_other_queries():
    """Row i depends on query i only: attention on a subset of rows gives those rows."""
    q, k, v = qkv((2,), 30, 30, 8, 8, seed=2)
    full = tiled_attention(q, k, v, block_size=7)
    assert_near(tiled_attention(q[:, 10:17], k, v, block_size=7), full[:, 10:17])


def test_tiled_supports_autograd():
    q, k, v = (t.requires_grad_() for t in qkv((2,), 9, 9, 4, 4, seed=4))
    tiled_attention(q, k, v, block_size=4, is_causal=True).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    naive(q, k, v, True).sum().backward()
    for got, t in zip(grads, (q, k, v)):
        assert_near(got, t.grad)


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    t_q=st.integers(1, 40),
    t_k=st.integers(1, 40),
    d=st.integers(1, 8),
    d_v=st.integers(1, 8),
    block_size=st.integers(1, 48),
    is_causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_tiled_matches_naive(lead, t_q, t_k, d, d_v, block_size, is_causal,
                                      seed):
    q, k, v = qkv(tuple(lead), t_q, t_k, d, d_v, seed=seed)
    out = tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal)
    assert_near(out, naive(q, k, v, is_causal))


# ---------------------------------------------------------------------------
# Tiled attention: memory and work
# ---------------------------------------------------------------------------


def test_allocations_instrument_measures_a_known_pattern():
    """The instrument itself: 4 KB and 8 KB alive together, then 2 KB -> peak 12 KB;
    views of a new tensor or of an input add nothing."""
    x = torch.zeros(1024)

    def pattern():
        a = torch.ones(1024)  # 4 KB
        b = torch.ones(2048)  # 8 KB
        a_view = a[10:20]  # a view: no new storage
        del a, b
        c = torch.ones(512)  # 2 KB
        x_view = x[:100]  # a view of the input
        return a_view, c, x_view

    with torch.no_grad(), Allocations(x) as allocations:
        result = pattern()
    assert allocations.peak == 4 * (1024 + 2048)
    assert allocations.largest == 4 * 2048
    assert allocations.live == 4 * (1024 + 512)  # a lives on through a_view
    del result
    assert allocations.live == 0


def peak_and_largest(fn, *inputs):
    with torch.no_grad(), Allocations(*inputs) as allocations:
        out = fn(*inputs)
    return allocations.peak - out.untyped_storage().nbytes(), allocations.largest


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_tiled_memory_beyond_the_output_does_not_grow_with_t(is_causal):
    """Peak tensor memory besides the output stays within a few (block, block) tiles
    per head, and does not grow with T; the naive version holds (T, T) per head."""
    heads, d, block = 2, 16, 32
    tile = heads * block * max(block, d) * 4  # bytes of one (H, block, block) tile
    peaks = {}
    for t in (256, 512):
        q, k, v = qkv((1, heads), t, t, d, d, seed=t)
        tiled_peak, tiled_largest = peak_and_largest(
            lambda q, k, v: tiled_attention(q, k, v, block, is_causal), q, k, v
        )
        naive_peak, _ = peak_and_largest(
            lambda q, k, v: naive(q, k, v, is_causal), q, k, v
        )
        assert tiled_largest <= max(tile, heads * t * d * 4)  # a tile, or the output
        assert tiled_peak <= 6 * tile  # s, p and small per-row statistics
        assert naive_peak >= heads * t * t * 4  # the (H, T, T) weights at least
        peaks[t] = tiled_peak, naive_peak
    assert peaks[512][0] <= peaks[256][0] * 1.1  # tiled: flat in T (beyond output)
    assert peaks[512][1] >= peaks[256][1] * 3.5  # naive: x4 for twice the tokens


@pytest.mark.parametrize("t_q, t_k", [(64, 64), (64, 32), (32, 64)])
def test_causal_skips_tiles_above_the_diagonal(t_q, t_k):
    """Two batched matmuls per (query block, key block) tile. Causal attention only
    computes the tiles with a key j <= some query i in them: with n = T / block
    blocks each way, n (n + 1) / 2 tiles instead of n^2 when T_q = T_k."""
    block = 8
    q, k, v = qkv((1, 2), t_q, t_k, 4, 4)
    counts = {}
    for is_causal in (False, True):
        with torch.no_grad(), Allocations(q, k, v) as allocations:
            tiled_attention(q, k, v, block, is_causal)
        counts[is_causal] = allocations.calls["aten.bmm"] // 2
    n_q, n_k = t_q // block, t_k // block
    assert counts[False] == n_q * n_k
    expected = sum(min(n_k, i + 1) for i in range(n_q))  # query block i: keys <= i
    assert counts[True] == expected
    if t_q == t_k:
        assert expected == n_q * (n_q + 1) // 2


# ---------------------------------------------------------------------------
# Tiled attention: bad arguments
# ---------------------------------------------------------------------------

GOOD = qkv((2, 3), 6, 6, 4, 5)


@pytest.mark.parametrize("block_size", [0, -1, 1.5, True, "128", None])
def test_tiled_rejects_bad_block_size(block_size):
    with pytest.raises(ValueError, match=r"block_size must be a positive int, got"):
        tiled_attention(*GOOD, block_size=block_size)


@pytest.mark.parametrize(
    "args, message",
    [
        (([1.0, 2.0], GOOD[1], GOOD[2]), r"q must be a torch.Tensor of shape "
         r"\(\.\.\., T_q, d_k\), got list"),
        ((GOOD[0], torch.zeros(4), GOOD[2]), r"k must have shape .*got shape \(4,\)"),
        ((GOOD[0], GOOD[1], torch.zeros(2, 3, 6, 5, dtype=torch.int64)),
         r"v must have dtype float16, bfloat16, float32 or float64, got int64"),
        ((GOOD[0].double(), GOOD[1], GOOD[2]),
         r"k must have the dtype of q, float64, got float32"),
        ((GOOD[0], GOOD[1][:, :2], GOOD[2]),
         r"q, k and v must have leading \(batch\) dimensions that broadcast together, "
         r"got \(2, 3\), \(2, 2\) and \(2, 3\)"),
        ((GOOD[0], torch.zeros(2, 3, 6, 3), GOOD[2]),
         r"k must have shape \(\.\.\., T_k, d_k\) with d_k = 4 as in q of shape "
         r"\(2, 3, 6, 4\), got shape \(2, 3, 6, 3\)"),
        ((GOOD[0], GOOD[1], torch.zeros(2, 3, 7, 5)),
         r"v must have shape \(\.\.\., T_k, d_v\) with T_k = 6 as in k"),
        ((torch.zeros(2, 6, 0), torch.zeros(2, 6, 0), torch.zeros(2, 6, 5)),
         r"q must have d_k >= 1 features"),
    ],
    ids=["q-not-tensor", "k-1d", "v-int", "dtype-mix", "leading-dims", "d", "v-rows",
         "no-features"],
)
def test_tiled_rejects_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        tiled_attention(*args)


def test_tiled_broadcasts_leading_dimensions_and_takes_no_keys_like_torch():
    q, k, v = qkv((2, 3), 5, 6, 4, 5, seed=4)
    k1, v1 = k[:1], v[:1]  # one batch element of keys, broadcast over two of queries
    assert_near(tiled_attention(q, k1, v1, block_size=2),
                F.scaled_dot_product_attention(q, k1, v1))
    empty = tiled_attention(q, k[..., :0, :], v[..., :0, :])  # T_k = 0: zero output
    assert torch.equal(empty, F.scaled_dot_product_attention(q, k[..., :0, :],
                                                             v[..., :0, :]))
    assert torch.equal(empty, torch.zeros(2, 3, 5, 5))


# ---------------------------------------------------------------------------
# KV cache: decoding token by token
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 3, 64])
def test_decode_step_by_step_equals_full_causal_recompute(capacity):
    """Feed the tokens one at a time: step t's output must be row t of causal
    attention recomputed over tokens 0..t from scratch."""
    lead, t, d, d_v = (2, 3), 12, 8, 5
    q, k, v = qkv(lead, t, t, d, d_v, seed=9)
    cache = KVCache(capacity=capacity)
    steps = []
    for i in range(t):
        step = slice(i, i + 1)
        out = decode_step(cache, q[..., step, :], k[..., step, :], v[..., step, :])
        assert out.shape == (*lead, 1, d_v)
        assert len(cache) == i + 1
        prefix = slice(0, i + 1)
        full = naive(q[..., prefix, :], k[..., prefix, :], v[..., prefix, :], True)
        assert_near(out, full[..., -1:, :])
        steps.append(out)
    assert_near(torch.cat(steps, dim=-2), F.scaled_dot_product_attention(q, k, v,
                                                                   is_causal=True))


def test_decode_prefill_then_steps_equals_full_causal():
    """A 7-token prompt in one call (causal among themselves), then 3 single steps."""
    q, k, v = qkv((2, 2), 10, 10, 4, 4, seed=12)
    cache = KVCache(capacity=4)  # the prompt alone overflows the first allocation
    outs = [decode_step(cache, q[..., :7, :], k[..., :7, :], v[..., :7, :])]
    for i in range(7, 10):
        outs.append(decode_step(cache, q[..., i:i + 1, :], k[..., i:i + 1, :],
                                v[..., i:i + 1, :]))
    assert_near(torch.cat(outs, dim=-2), naive(q, k, v, True))
    assert len(cache) == 10


def test_kv_cache_append_returns_everything_so_far_and_grows_by_doubling():
    k, v = randn(2, 10, 4, seed=1), randn(2, 10, 3, seed=2)
    cache = KVCache(capacity=1)
    assert len(cache) == 0
    handed_out, capacities = [], []
    for i in range(10):
        k_all, v_all = cache.append(k[:, i:i + 1], v[:, i:i + 1])
        assert torch.equal(k_all, k[:, :i + 1]) and torch.equal(v_all, v[:, :i + 1])
        handed_out.append((i, k_all, v_all))
        capacities.append(cache.capacity)
    assert capacities == [1, 2, 4, 4, 8, 8, 8, 8, 16, 16]
    for i, k_all, v_all in handed_out:  # earlier results keep their values
        assert torch.equal(k_all, k[:, :i + 1]) and torch.equal(v_all, v[:, :i + 1])


def test_kv_cache_takes_chunks_bigger_than_double():
    cache = KVCache(capacity=2)
    cache.append(randn(1, 1, 2), randn(1, 1, 2))
    k_all, _ = cache.append(randn(1, 9, 2, seed=3), randn(1, 9, 2, seed=4))
    assert len(cache) == 10 and cache.capacity == 10
    assert torch.equal(k_all[:, 1:], randn(1, 9, 2, seed=3))


@pytest.mark.parametrize("capacity", [0, -2, 2.0, True])
def test_kv_cache_rejects_bad_capacity(capacity):
    with pytest.raises(ValueError, match=r"capacity must be a positive int, got"):
        KVCache(capacity=capacity)


@pytest.mark.parametrize(
    "k_new, v_new, message",
    [
        (torch.zeros(4), torch.zeros(1, 4), r"k_new must have shape \(\.\.\., T_new, d\), "
         r"got shape \(4,\)"),
        (torch.zeros(2, 1, 4), torch.zeros(2, 2, 4),
         r"v_new must have shape \(\.\.\., T_new, d_v\) with T_new = 1 as in k_new of "
         r"shape \(2, 1, 4\), got shape \(2, 2, 4\)"),
        (torch.zeros(2, 1, 5), torch.zeros(2, 1, 3),
         r"k_new and v_new must fit the cache: shapes \(\.\.\., T_new, 4\) and "
         r"\(\.\.\., T_new, 3\) with leading dimensions that broadcast to \(2,\), got "
         r"\(2, 1, 5\) and \(2, 1, 3\)"),
        (torch.zeros(3, 1, 4), torch.zeros(3, 1, 3), r"k_new and cache must have leading "
         r"\(batch\) dimensions that broadcast together, got \(3,\) and \(2,\)"),
        (torch.zeros(2, 2, 1, 4), torch.zeros(2, 2, 1, 3), r"must fit the cache"),
        (torch.zeros(2, 1, 4), torch.zeros(2, 1, 2), r"must fit the cache"),
        (torch.zeros(2, 1, 4, dtype=torch.float64),
         torch.zeros(2, 1, 3, dtype=torch.float64),
         r"k_new must have the dtype of the cached keys, float32, got float64"),
        (torch.zeros(2, 1, 4, device="meta"), torch.zeros(2, 1, 3, device="meta"),
         r"k_new must be on the device of the cached keys, cpu, got meta"),
        (torch.zeros(2, 1, 4), torch.zeros(2, 1, 3).double(),
         r"v_new must have the dtype of k_new, float32, got float64"),
    ],
    ids=["k-1d", "t-differs", "d-changes", "batch-changes", "batch-grows", "d_v-changes",
         "dtype", "device", "dtype-mix"],
)
def test_kv_cache_rejects_bad_appends(k_new, v_new, message):
    cache = KVCache()
    cache.append(torch.zeros(2, 3, 4), torch.zeros(2, 3, 3))
    before = cache_state(cache)
    with pytest.raises(ValueError, match=message):
        cache.append(k_new, v_new)
    assert_same_state(cache, before)  # a rejected append leaves the cache as it was


def test_kv_cache_broadcasts_new_tokens_to_its_leading_dimensions():
    cache = KVCache()
    k, v = randn(2, 3, 1, 4, seed=1), randn(1, 3, 1, 5, seed=2)
    k_all, v_all = cache.append(k, v)  # the cache holds (2, 3): k and v broadcast
    assert k_all.shape == (2, 3, 1, 4) and v_all.shape == (2, 3, 1, 5)
    assert torch.equal(v_all, v.expand(2, 3, 1, 5))
    k_all, v_all = cache.append(k[0], v[0])  # (3, 1, 4) stretches to (2, 3, 1, 4)
    assert torch.equal(k_all[:, :, 1], k[0].expand(2, 3, 1, 4)[:, :, 0])


def cache_state(cache):
    """Everything a KVCache holds that a caller can see, copied."""
    k_all = None if cache._k is None else cache._k[..., :len(cache), :].clone()
    v_all = None if cache._v is None else cache._v[..., :len(cache), :].clone()
    storage = (None if cache._k is None else (cache._k.data_ptr(), cache._v.data_ptr()))
    return len(cache), cache.capacity, storage, k_all, v_all


def assert_same_state(cache, before):
    after = cache_state(cache)
    assert after[:3] == before[:3]
    for now, then in zip(after[3:], before[3:]):
        assert (now is None and then is None) or torch.equal(now, then)


BAD_DECODES = {  # what decode_step must refuse, before anything is stored
    "q-wrong-d": (lambda: torch.zeros(2, 1, 3), r"k_new must have shape "
                  r"\(\.\.\., T_new, d\) with d = 3 as in q_new of shape \(2, 1, 3\), "
                  r"got shape \(2, 1, 4\)"),
    "q-more-tokens": (lambda: torch.zeros(2, 2, 4), r"k_new must have shape "
                      r"\(\.\.\., T_new, d\) with T_new = 2 as in q_new"),
    "q-int": (lambda: torch.zeros(2, 1, 4, dtype=torch.int32),
              r"q_new must have dtype float16, bfloat16, float32 or float64, got int32"),
    "q-float64": (lambda: torch.zeros(2, 1, 4, dtype=torch.float64),
                  r"k_new must have the dtype of q_new, float64, got float32"),
    "q-meta": (lambda: torch.zeros(2, 1, 4, device="meta"),
               r"k_new must be on the device of q_new, meta, got cpu"),
    "q-batch": (lambda: torch.zeros(3, 1, 4), r"q_new, k_new and v_new must have leading "
                r"\(batch\) dimensions that broadcast together, got \(3,\), \(2,\) and "
                r"\(2,\)"),
    "q-list": (lambda: [[0.0] * 4], r"q_new must be a torch.Tensor"),
    "q-no-features": (lambda: torch.zeros(2, 1, 0), r"k_new must have shape"),
}


@pytest.mark.parametrize("fresh", [True, False], ids=["empty-cache", "filled-cache"])
@pytest.mark.parametrize("case", sorted(BAD_DECODES))
def test_decode_step_refuses_a_bad_query_and_changes_nothing(case, fresh):
    """A failed call must leave the cache (and its inputs) exactly as they were, so a
    retry with a good query caches the token once."""
    make_q, message = BAD_DECODES[case]
    cache = KVCache(capacity=1)
    if not fresh:
        cache.append(randn(2, 1, 4, seed=5), randn(2, 1, 4, seed=6))
    k_new, v_new = randn(2, 1, 4, seed=1), randn(2, 1, 4, seed=2)
    q_bad = make_q()
    inputs = [t.clone() for t in (k_new, v_new)]
    before = cache_state(cache)
    with pytest.raises(ValueError, match=message):
        decode_step(cache, q_bad, k_new, v_new)
    assert_same_state(cache, before)
    assert all(torch.equal(a, b) for a, b in zip(inputs, (k_new, v_new)))
    q_new = randn(2, 1, 4, seed=3)
    out = decode_step(cache, q_new, k_new, v_new)  # the retry
    assert len(cache) == before[0] + 1
    k_all = torch.cat([t for t in (before[3], k_new) if t is not None], dim=-2)
    v_all = torch.cat([t for t in (before[4], v_new) if t is not None], dim=-2)
    assert_near(out, F.scaled_dot_product_attention(q_new, k_all, v_all))


@pytest.mark.parametrize(
    "q_new, k_new, v_new, message",
    [
        (torch.zeros(2, 1, 5), torch.zeros(2, 1, 5), torch.zeros(2, 1, 4),
         r"k_new and v_new must fit the cache"),
        (torch.zeros(2, 1, 4), torch.zeros(2, 1, 4), torch.zeros(2, 2, 4),
         r"v_new must have shape \(\.\.\., T_new, d_v\) with T_new = 1"),
        (torch.zeros(2, 1, 4).double(), torch.zeros(2, 1, 4).double(),
         torch.zeros(2, 1, 4).double(),
         r"k_new must have the dtype of the cached keys, float32, got float64"),
        (torch.zeros(3, 1, 4), torch.zeros(1, 1, 4), torch.zeros(1, 1, 4),
         r"q_new and cache must have leading \(batch\) dimensions that broadcast "
         r"together, got \(3,\) and \(2,\)"),
        (torch.zeros(2, 1, 0), torch.zeros(2, 1, 0), torch.zeros(2, 1, 4),
         r"d = q_new.shape\[-1\] must be a positive int, got 0"),
    ],
    ids=["cache-width", "v-rows", "dtype", "q-against-cache", "no-features"],
)
def test_decode_step_refuses_bad_keys_and_changes_nothing(q_new, k_new, v_new, message):
    cache = KVCache()
    cache.append(randn(2, 3, 4), randn(2, 3, 4, seed=1))
    before = cache_state(cache)
    with pytest.raises(ValueError, match=message):
        decode_step(cache, q_new, k_new, v_new)
    assert_same_state(cache, before)


def test_decode_step_needs_a_kv_cache():
    with pytest.raises(ValueError, match=r"cache must be a snippets.efficient.KVCache, "
                                         r"got dict"):
        decode_step({}, *qkv((1,), 1, 1, 4, 4))


# ---------------------------------------------------------------------------
# Grouped-query and multi-query attention
# ---------------------------------------------------------------------------


def repeat_kv_reference(q, k, v, is_causal=False):
    """Copy every KV head G times, then ordinary multi-head attention (torch's)."""
    g = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(g, dim=1)  # (B, H_q, T_k, d): head h -> heads h*G..
    v = v.repeat_interleave(g, dim=1)  # (B, H_q, T_k, d_v)
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)


# (B, H_q, H_kv, T_q, T_k, d, d_v)
GQA_SHAPES = [
    (2, 8, 2, 6, 6, 4, 4),  # groups of 4
    (1, 8, 1, 5, 5, 4, 3),  # multi-query: one KV head
    (2, 4, 4, 7, 7, 8, 8),  # H_kv = H_q: plain multi-head attention
    (3, 6, 3, 9, 4, 5, 5),  # more queries than keys
    (1, 4, 2, 3, 11, 5, 7),  # fewer queries than keys
]
GQA_IDS = [f"B{b}-Hq{hq}-Hkv{hkv}-Tq{tq}-Tk{tk}"
           for b, hq, hkv, tq, tk, *_ in GQA_SHAPES]


def gqa_inputs(shape, seed=0):
    b, h_q, h_kv, t_q, t_k, d, d_v = shape
    return (
        randn(b, h_q, t_q, d, seed=seed),
        randn(b, h_kv, t_k, d, seed=seed + 1),
        randn(b, h_kv, t_k, d_v, seed=seed + 2),
    )


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", GQA_SHAPES, ids=GQA_IDS)
def test_gqa_matches_repeated_kv_reference(shape, is_causal):
    q, k, v = gqa_inputs(shape)
    out = grouped_query_attention(q, k, v, is_causal=is_causal)
    expected = repeat_kv_reference(q, k, v, is_causal)
    assert out.shape == expected.shape
    assert_near(out, expected)
    # torch's own GQA switch uses the same grouping
    torch_gqa = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal,
                                               enable_gqa=True)
    assert_near(out, torch_gqa)


def test_mqa_every_head_reads_the_one_kv_head():
    """With one KV head, each query head is single-head attention over the same k, v."""
    q, k, v = gqa_inputs((2, 4, 1, 5, 5, 4, 4), seed=3)
    out = grouped_query_attention(q, k, v, is_causal=True)
    for h in range(4):
        assert_near(out[:, h], naive(q[:, h], k[:, 0], v[:, 0], True))


def test_gqa_accepts_non_contiguous_queries():
    q, k, v = gqa_inputs((2, 4, 2, 5, 5, 4, 4), seed=4)
    q_t = q.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    assert not q_t.is_contiguous()
    assert_near(grouped_query_attention(q_t, k, v), repeat_kv_reference(q, k, v))


def test_gqa_never_copies_the_kv_heads():
    """No tensor as big as the KV heads repeated G times is ever made; the reference,
    which repeats them, does make one (so the check can fail)."""
    shape = (1, 8, 2, 3, 11, 5, 7)  # sizes chosen so that no two products coincide
    q, k, v = gqa_inputs(shape)
    b, h_q, _, t_q, t_k, d, _ = shape
    repeated_k = b * h_q * t_k * d * 4  # bytes
    for is_causal in (False, True):
        with torch.no_grad(), Allocations(q, k, v) as ours:
            grouped_query_attention(q, k, v, is_causal=is_causal)
        assert ours.largest < repeated_k
        assert ours.largest <= b * h_q * t_q * t_k * 4  # the scores, at most
    with torch.no_grad(), Allocations(q, k, v) as reference:
        repeat_kv_reference(q, k, v)
    assert reference.largest >= repeated_k


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.zeros(3, 4), torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4)),
         r"q must have shape \(\.\.\., H_q, T_q, d\), got shape \(3, 4\)"),
        ((torch.zeros(1, 8, 3, 4), torch.zeros(1, 2, 3, 4), torch.zeros(1, 1, 3, 4)),
         r"v must have shape \(\.\.\., H_kv, T_k, d_v\) with H_kv = 2 as in k of shape "
         r"\(1, 2, 3, 4\), got shape \(1, 1, 3, 4\)"),
        ((torch.zeros(1, 8, 3, 4), torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 5, 4)),
         r"v must have shape \(\.\.\., H_kv, T_k, d_v\) with T_k = 3"),
        ((torch.zeros(2, 8, 3, 4), torch.zeros(3, 2, 3, 4), torch.zeros(3, 2, 3, 4)),
         r"q, k and v must have leading \(batch\) dimensions that broadcast together, "
         r"got \(2,\), \(3,\) and \(3,\)"),
        ((torch.zeros(1, 8, 3, 4), torch.zeros(1, 2, 3, 5), torch.zeros(1, 2, 3, 4)),
         r"k must have shape \(\.\.\., H_kv, T_k, d\) with d = 4 as in q"),
        ((torch.zeros(1, 8, 3, 4), torch.zeros(1, 3, 3, 4), torch.zeros(1, 3, 3, 4)),
         r"q must have a multiple of H_kv = k.shape\[-3\] = 3 >= 1 query heads, got q of "
         r"shape \(1, 8, 3, 4\) and k of shape \(1, 3, 3, 4\)"),
        ((torch.zeros(1, 8, 3, 4), torch.zeros(1, 0, 3, 4), torch.zeros(1, 0, 3, 4)),
         r"q must have a multiple of H_kv = k.shape\[-3\] = 0 >= 1 query heads"),
        ((torch.zeros(1, 8, 3, 4), torch.zeros(1, 2, 3, 4).half(),
          torch.zeros(1, 2, 3, 4).half()), r"k must have the dtype of q, float32, got "
         r"float16"),
        ((torch.zeros(1, 8, 3, 0), torch.zeros(1, 2, 3, 0), torch.zeros(1, 2, 3, 4)),
         r"q must have d_k >= 1 features"),
    ],
    ids=["q-2d", "heads-kv", "tokens-kv", "batch", "d", "indivisible", "no-kv-heads",
         "dtype", "no-features"],
)
def test_gqa_rejects_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        grouped_query_attention(*args)


def test_gqa_broadcasts_leading_dimensions():
    q, k, v = randn(2, 4, 3, 5, seed=1), randn(1, 2, 6, 5, seed=2), randn(1, 2, 6, 3)
    expected = F.scaled_dot_product_attention(q, k.expand(2, -1, -1, -1),
                                              v.expand(2, -1, -1, -1), enable_gqa=True)
    assert_near(grouped_query_attention(q, k, v), expected)
    assert_near(grouped_query_attention(q[0], k[0], v[0]), expected[0])  # no batch


# ---------------------------------------------------------------------------
# The file itself, as the docs page includes it
# ---------------------------------------------------------------------------


def test_sections_run_on_their_own():
    """The page shows sections, not the file: the input checks of snippets/checks.py,
    then imports + each section must define a working function without anything else
    from the module."""
    def section(module, name):
        source = Path(module.__file__).read_text()
        match = re.search(rf"# --8<-- \[start:{name}\]\n(.*?)# --8<-- \[end:{name}\]",
                          source, re.S)
        return match.group(1)

    # decode_step calls the from-scratch attention, which a page includes from
    # snippets/attention.py before these sections.
    namespace = {"scaled_dot_product_attention": naive_attention}
    parts = [(checks, "imports"), (checks, "input-checks")] + [
        (efficient, name) for name in ("imports", "tiled-attention", "kv-cache",
                                       "decode-step", "grouped-query-attention")]
    for module, name in parts:
        code = compile(section(module, name), f"{module.__name__}:{name}", "exec")
        exec(code, namespace)  # noqa: S102
    q, k, v = qkv((1, 2), 9, 9, 4, 4)
    assert_near(namespace["tiled_attention"](q, k, v, 4, True), naive(q, k, v, True))
    cache = namespace["KVCache"]()
    assert_near(namespace["decode_step"](cache, q, k, v), naive(q, k, v, True))
    assert_near(namespace["grouped_query_attention"](q, k[:, :1], v[:, :1]),
          repeat_kv_reference(q, k[:, :1], v[:, :1]))
    assert len(cache) == 9


# ---- the page: docs/efficient.md: every number its prose and tables state is the number that
PAGE = read_page("efficient.md")
DATA = json.loads((ROOT / "bench" / "results.json").read_text())
SWEEP = DATA["sweep"]["results"]
CONFIG = DATA["sweep"]["config"]
T_MAX = str(CONFIG["T"][-1])
MIB = 2**20
OPS = {"<": "<", "<=": "≤", ">=": "≥"}


def flat(text: str) -> str:
    return " ".join(prose(text).split())


FLAT = flat(PAGE)


def ms(method, mode="full", t=T_MAX):
    return SWEEP[method][mode][t]["median_s"] * 1e3


def mib(method, mode="full", t=T_MAX):
    return SWEEP[method][mode][t]["peak_extra_bytes"] / MIB


def target(name):
    (found,) = [t for t in DATA["targets"] if t["name"] == name]
    return found


def find_table(header_start):
    found = [t for t in tables(PAGE) if t[0][0] == header_start]
    assert len(found) == 1, f"one table whose first header is {header_start!r}"
    return found[0]


def prose_numbers(text):
    """Numbers a reader sees in running text: no tables, inline code or math."""
    text = "\n".join(line for line in prose(text).splitlines()
                     if not line.strip().startswith("|"))
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return numbers(text)


# ---- the cost of the score matrix ---------------------------------------------------


def test_naive_table_is_the_sweep():
    rows = find_table("T")[1:]
    ts = CONFIG["T"]
    assert [int(r[0]) for r in rows] == ts
    prev = None
    for row, t in zip(rows, map(str, ts)):
        time_ms, memory = ms("naive", t=t), mib("naive", t=t)
        assert row[1] == f"{time_ms:.1f}"
        assert row[3] == f"{memory:.1f}"
        if prev is None:
            assert row[2] == row[4] == "—"
        else:
            assert row[2] == f"{time_ms / prev[0]:.2f}×"
            assert row[4] == f"{memory / prev[1]:.2f}×"
        prev = time_ms, memory


def test_naive_growth_in_the_prose():
    ts = list(map(str, CONFIG["T"]))
    time_growth = [ms("naive", t=b) / ms("naive", t=a) for a, b in zip(ts, ts[1:])]
    memory_growth = [mib("naive", t=b) / mib("naive", t=a) for a, b in zip(ts, ts[1:])]
    # "almost exactly four times per doubling" once the fixed costs are small
    assert all(3.75 < g < 4.25 for g in memory_growth[1:])
    assert (f"Time grows by {min(time_growth):.2f}× to {max(time_growth):.2f}× per "
            "doubling") in FLAT
    assert (f"at T = {T_MAX} the naive version needed {mib('naive'):.1f} MiB, about "
            f"{mib('naive') / 1024:.1f} GiB") in FLAT
    # two (1, 8, T, T) float32 tensors: the scores and the weights it returns
    two = 2 * CONFIG["H"] * int(T_MAX) ** 2 * 4 / MIB
    assert 1 < mib("naive") / two < 1.01


# ---- tiled attention ------------------------------------------------------------------


def test_tiled_demo_sizes_in_the_prose():
    m = re.search(r"B, H, T, d = 1, 2, (\d+), 16 .*\n.*\n(?:.*\n)+?.*block_size=(\d+)",
                  PAGE)
    t, block = int(m.group(1)), int(m.group(2))
    assert t % block  # the point of the example: a partial last block
    words = {4: "four"}
    assert (f"(T = {t} with blocks of {block}: {words[t // block]} full blocks and "
            f"one of {t % block})") in FLAT


def test_tile_size_and_memory_in_the_prose():
    block = inspect.signature(tiled_attention).parameters["block_size"].default
    assert block == 128 and "tiled" in DATA["sweep"]["methods"]
    assert f"block_size={block}" in DATA["sweep"]["methods"]["tiled"]
    tile_kib = CONFIG["H"] * block * block * 4 / 2**10
    assert (f"{tile_kib:.0f} KiB for {CONFIG['H']} heads at the default block of "
            f"{block}") in FLAT
    output_mib = CONFIG["B"] * CONFIG["H"] * int(T_MAX) * CONFIG["head_dim"] * 4 / MIB
    text = flat(section(PAGE, "Memory: the output and one tile, not T squared"))
    # the running statistics are per query block: only the output grows with T
    assert ("belong to one block of queries at a time, so they do not grow with $T$ "
            "either; only the output") in text
    assert (f"at T = {T_MAX} the tiled version's peak extra memory was "
            f"{mib('tiled'):.1f} MiB against the naive version's {mib('naive'):.1f} MiB, "
            f"{mib('naive') / mib('tiled'):.0f} times less; {output_mib:.1f} MiB of "
            f"those {mib('tiled'):.1f} MiB are the output itself. torch's fused SDPA "
            f"needed {mib('sdpa'):.1f} MiB.") in text


def test_kv_cache_capacity_in_the_prose():
    m = re.search(r"B, H, T, d = 1, 2, (\d+), 8\n.*\ncache = KVCache\(capacity=(\d+)\)",
                  PAGE)
    steps, capacity = int(m.group(1)), int(m.group(2))
    cache = KVCache(capacity=capacity)
    import torch

    seen = []
    for _ in range(steps):
        cache.append(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8))
        seen.append(cache.capacity)
    grows_at = seen.index(2 * capacity) + 1  # the token count when it doubled
    ordinal = {5: "fifth"}[grows_at]
    assert (f"Decoding {['zero', 'one', 'two', 'three', 'four', 'five', 'six'][steps]} "
            f"tokens one by one") in FLAT
    assert (f"the capacity starts at {capacity} and doubles to {2 * capacity} when the "
            f"{ordinal} token arrives") in FLAT


def test_check_yourself_numbers():
    text = flat(section(PAGE, "Check yourself"))
    t, heads, block = 16384, 8, 128
    assert f"at T = {t} with {heads} heads" in text
    assert f"**{heads * t * t * 4 // 2**30} GiB**" in text
    assert f"**{heads * block * block * 4 // 2**10} KiB**" in text
    assert f"**{t * t // (block * block)}** times bigger" in text


# ---- the benchmark ---------------------------------------------------------------------


def test_provenance_is_the_recorded_run():
    mc = DATA["machine"]
    assert not DATA["quick"]
    assert mc["command"] == "python -m bench.run"
    benchmark = section(PAGE, "The benchmark")
    start = benchmark.index('??? note "Under the hood: where the numbers come from"')
    text = flat(benchmark[start:benchmark.index("### The targets")])
    others = max(v["others_cpu_share_during"]
                 for by_t in DATA["sweep"]["noise"].values() for v in by_t.values())
    assert (f"the command `{mc['command']}`, a {mc['cpu_model']} CPU with "
            f"{mc['logical_cores']} logical cores ({mc['torch_threads']} torch threads), "
            f"torch {mc['torch_version']}, Python {mc['python_version']}, on "
            f"{mc['date_utc'][:10]} (UTC), {mc['seconds']} s in all") in text
    assert f"took at most {others:.1%} of its CPU time" in text
    assert "$ make bench" in PAGE
    main = flat(benchmark[:start])
    assert (f"from T = {CONFIG['T'][0]} to T = {T_MAX}" in main
            and f"one sequence of {CONFIG['H']} heads of {CONFIG['head_dim']}" in main)


def test_t_max_table_is_the_sweep():
    rows = find_table("method")[1:]
    assert [r[0].strip("`") for r in rows] == list(SWEEP)
    for row in rows:
        method = row[0].strip("`")
        assert row[1:] == [f"{ms(method):.1f}", f"{mib(method):.1f}",
                           f"{ms(method, 'causal'):.1f}", f"{mib(method, 'causal'):.1f}"]


def test_targets_table_is_every_target_of_the_run():
    rows = find_table("target")[1:]
    assert [r[0].strip("`") for r in rows] == [t["name"] for t in DATA["targets"]]
    for row, t in zip(rows, DATA["targets"]):
        assert row[1] == t["description"]
        assert row[2] == f"{t['ratio']:.3f}"
        assert row[3] == f"{OPS[t['op']]} {t['threshold']:g}"
        assert row[4] == ("pass" if t["passed"] else "**FAIL**")


def test_the_failed_target_is_said_plainly():
    failed = [t for t in DATA["targets"] if not t["passed"]]
    assert [t["name"] for t in failed] == ["multihead_vs_torch_no_mask"]
    (t,) = failed
    m = re.search(r'^\?\?\? warning "One target failed in this run.*?(?=^\S)', PAGE,
                  re.M | re.S)
    text = " ".join(m.group(0).split())
    # the details are collapsed; the failure itself is said in the main path
    targets = section(PAGE, "The targets")
    main = flat(targets[:targets.index("??? ")])
    assert (f"One failed in this run: this site's `MultiHeadAttention` took "
            f"{t['ratio']:.3f} of the time of `torch.nn.MultiheadAttention`, where the "
            f"target asks for at most {t['threshold']:g}.") in main
    cfg = DATA["mha"]["config"]
    eff = target("multihead_matmul_efficiency")
    assert (f"at most {t['threshold']:g} of the time of `torch.nn.MultiheadAttention` "
            f"(B = {cfg['B']}, T = {cfg['T']}, d_model = {cfg['d_model']}, {cfg['H']} "
            "heads, no mask)") in text
    assert f"In the committed run it took {t['ratio']:.3f}: **FAIL**" in text
    assert (f"ran at {eff['ratio']:.3f} of the machine's matmul throughput "
            f"({DATA['mha']['achieved_gflops']:.1f} against "
            f"{DATA['matmul']['gflops']:.1f} GFLOP/s)") in text
    assert "about a sixth" in text and 1 / 7 < 1 - eff["ratio"] < 1 / 5
    assert "not recorded in `results.json`" in text
    assert "`MALLOC_MMAP_THRESHOLD_=1000000000`" in text


def test_causal_note():
    times = {k: v["median_s"] * 1e3 for k, v in DATA["mha"]["times"].items()}
    text = flat(section(PAGE, "The targets"))
    assert (f"our layer took {target('multihead_vs_torch_causal')['ratio']:.3f} of "
            "torch's time (pass)") in text
    assert target("multihead_vs_torch_causal")["passed"]
    slow = times["torch_mha_causal"] / times["torch_mha_no_mask"]
    assert slow > 1
    assert (f"took {times['torch_mha_causal']:.1f} ms, {slow:.2f} times its "
            f"{times['torch_mha_no_mask']:.1f} ms without a mask") in text
    assert (f"Ours took {times['multihead_causal']:.1f} ms causal against "
            f"{times['multihead_no_mask']:.1f} ms without a mask") in text


def test_tiled_against_naive_and_sdpa():
    text = flat(section(PAGE, "Why tiled attention is slower than torch's"))
    r = {n: target(f"tiled_vs_{n}")["ratio"]
         for n in ("naive_time_full", "naive_time_causal", "sdpa_time_full",
                   "sdpa_time_causal")}
    assert (f"At T = {T_MAX} `tiled_attention` took {r['naive_time_full']:.3f} of the "
            f"naive version's time without a mask and {r['naive_time_causal']:.3f} with "
            f"the causal mask") in text
    assert (f"but {r['sdpa_time_full']:.3f} and {r['sdpa_time_causal']:.3f} of torch's "
            "fused SDPA") in text
    block = 128
    tiles = (int(T_MAX) // block) ** 2
    assert f"{tiles} tiles of {block} × {block} at T = {T_MAX}" in text
    assert all(target(f"tiled_vs_sdpa_time_{m}")["passed"] for m in ("full", "causal"))
    assert "within 2×" in text and target("tiled_vs_sdpa_time_full")["threshold"] == 2


def test_block_256_against_128():
    text = flat(section(PAGE, "Why tiled attention is slower than torch's"))
    full = [ms("tiled_block_256", t=str(t)) / ms("tiled", t=str(t)) for t in CONFIG["T"]]
    causal = ms("tiled_block_256", "causal") / ms("tiled", "causal")
    assert (f"With blocks of 256 the tiled version took {full[-1]:.3f} of the time of "
            f"blocks of 128 at T = {T_MAX} without a mask and {causal:.3f} with the "
            f"causal mask, and between {min(full):.3f} and {max(full):.3f} at every T of "
            f"the sweep without a mask, for {mib('tiled_block_256'):.1f} MiB of peak "
            f"memory instead of {mib('tiled'):.1f} MiB") in text


def test_every_number_in_the_benchmark_prose_is_checked():
    """Catch-all: a number added to the benchmark's prose must be one the tests above
    derive from results.json (or a size from the run's configuration)."""
    cfg = DATA["mha"]["config"]
    known = {float(x) for x in [*CONFIG["T"], CONFIG["H"], CONFIG["head_dim"], 128, 256,
                                cfg["B"], cfg["T"], cfg["d_model"], cfg["H"], 2]}
    date = DATA["machine"]["date_utc"][:10]
    known |= {float(x) for x in re.findall(r"\d+", date)}
    times = {k: v["median_s"] * 1e3 for k, v in DATA["mha"]["times"].items()}
    known |= {round(v, 1) for v in times.values()}
    known.add(round(times["torch_mha_causal"] / times["torch_mha_no_mask"], 2))
    known |= {round(t["ratio"], 3) for t in DATA["targets"]}
    known |= {t["threshold"] for t in DATA["targets"]}
    known |= {round(DATA["mha"]["achieved_gflops"], 1), round(DATA["matmul"]["gflops"], 1)}
    known |= {DATA["machine"]["seconds"], DATA["machine"]["logical_cores"],
              DATA["machine"]["torch_threads"]}
    others = max(v["others_cpu_share_during"]
                 for by_t in DATA["sweep"]["noise"].values() for v in by_t.values())
    known.add(round(others * 100, 1))
    full = [ms("tiled_block_256", t=str(t)) / ms("tiled", t=str(t)) for t in CONFIG["T"]]
    known |= {round(min(full), 3), round(max(full), 3),
              round(ms("tiled_block_256", "causal") / ms("tiled", "causal"), 3)}
    known |= {round(mib(m), 1) for m in SWEEP}
    known.add((int(T_MAX) // 128) ** 2)
    # the memory figure's alt text: the linear-memory methods "stay below 100 MiB"
    assert max(mib(m) for m in ("sdpa", "tiled", "tiled_block_256", "multihead")) < 100
    assert "stay below 100 MiB" in PAGE and min(mib("naive"), mib("torch_mha")) > 1024
    known.add(100.0)
    unknown = [n for n in prose_numbers(section(PAGE, "The benchmark"))
               if n not in known and round(n, 3) not in known]
    assert not unknown, f"numbers in the benchmark prose no test checks: {unknown}"


def test_page_code_does_not_read_the_benchmark():
    for fence in fences(PAGE):
        code = fence.code if fence.python else ""
        assert "results.json" not in code and "json" not in code


@pytest.mark.parametrize("needle", ["snippets/efficient.py:imports",
                                    "snippets/checks.py:input-checks",
                                    "snippets/efficient.py:tiled-attention",
                                    "snippets/efficient.py:kv-cache",
                                    "snippets/efficient.py:decode-step",
                                    "snippets/efficient.py:grouped-query-attention"])
def test_every_section_is_included(needle):
    assert f'--8<-- "{needle}"' in PAGE
