"""Tests for snippets/multi_head.py: multi-head self-attention from scratch.

The reference is torch.nn.MultiheadAttention with the same weights, copied over with
``MultiHeadAttention.from_torch``. Note the opposite mask polarity: our masks are
True = "may attend", torch's ``attn_mask`` / ``key_padding_mask`` are True = "blocked".
"""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from snippets.multi_head import MultiHeadAttention, merge_heads, split_heads


import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from snippets.attention import (
    attention_scores,
    attention_weights,
    scale_scores,
    scaled_dot_product_attention,
)
from snippets.multi_head import MultiHeadAttention, split_heads
from tests.pages import numbers, prose, read_page, section

ATOL = 1e-6  # float32, rtol 0, no loosening: both sides are float32 throughout

# (B, T, D, H): one head, D == H (head_dim 1), odd sizes, a longer sequence.
SHAPES = [
    (1, 1, 4, 1),
    (2, 5, 8, 2),
    (3, 7, 12, 3),
    (2, 6, 16, 16),
    (2, 3, 6, 1),
    (4, 9, 32, 4),
    (2, 33, 64, 8),
]
SHAPE_IDS = [f"B{b}-T{t}-D{d}-H{h}" for b, t, d, h in SHAPES]


def assert_near(actual, expected, atol=ATOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def make_pair(embed_dim, num_heads, bias=True, seed=0):
    """A seeded torch.nn.MultiheadAttention and our copy of it, both in eval mode.

    torch initialises the biases to zero, so they are redrawn at random: otherwise a
    wrongly copied bias would go unnoticed.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = nn.MultiheadAttention(embed_dim, num_heads, bias=bias, batch_first=True)
        if bias:
            with torch.no_grad():
                ref.in_proj_bias.normal_()
                ref.out_proj.bias.normal_()
    ref.eval()
    return MultiHeadAttention.from_torch(ref), ref


def randn(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def key_padding(batch, seq_len, seed=0):
    """(B, T) lengths-style padding, True = real token; every sequence keeps key 0."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, seq_len + 1, (batch,), generator=g)
    return torch.arange(seq_len) < lengths[:, None]  # (B, T)


def causal(seq_len):
    return torch.ones(seq_len, seq_len, dtype=torch.bool).tril()  # True = may attend


# ---------------------------------------------------------------------------
# Agreement with torch.nn.MultiheadAttention. The test_matches_torch_* tests check
# the fast path (need_weights=False); test_weights_match_torch checks the
# from-scratch path's output and weights; the paths are compared to each other below.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_torch_no_mask(shape, bias):
    batch, seq_len, embed_dim, num_heads = shape
    ours, ref = make_pair(embed_dim, num_heads, bias=bias)
    x = randn(batch, seq_len, embed_dim)
    out, weights = ours(x)
    expected, _ = ref(x, x, x, need_weights=False)
    assert out.shape == (batch, seq_len, embed_dim)
    assert weights is None
    assert_near(out, expected)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_torch_causal(shape, bias):
    batch, seq_len, embed_dim, num_heads = shape
    ours, ref = make_pair(embed_dim, num_heads, bias=bias, seed=1)
    x = randn(batch, seq_len, embed_dim, seed=1)
    blocked = ~causal(seq_len)  # torch: True = NOT allowed, i.e. the future
    expected, _ = ref(x, x, x, attn_mask=blocked, need_weights=False)
    out_flag, _ = ours(x, is_causal=True)
    out_mask, _ = ours(x, mask=causal(seq_len))
    assert_near(out_flag, expected)
    assert_near(out_mask, expected)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_torch_key_padding(shape, bias):
    batch, seq_len, embed_dim, num_heads = shape
    ours, ref = make_pair(embed_dim, num_heads, bias=bias, seed=2)
    x = randn(batch, seq_len, embed_dim, seed=2)
    keep = key_padding(batch, seq_len, seed=2)  # (B, T), True = real token
    expected, _ = ref(x, x, x, key_padding_mask=~keep, need_weights=False)
    out, _ = ours(x, mask=keep[:, None, None, :])
    assert_near(out, expected)


@pytest.mark.parametrize("kind", ["none", "causal", "padding"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_matches_torch_under_inference_mode(shape, kind):
    """The benchmark's setting: eval + inference_mode, where torch takes its own
    fused fast path (torch._native_multi_head_attention) instead of the Python one."""
    batch, seq_len, embed_dim, num_heads = shape
    ours, ref = make_pair(embed_dim, num_heads, seed=9)
    x = randn(batch, seq_len, embed_dim, seed=9)
    mask, torch_kwargs = torch_masks(kind, batch, seq_len)
    with torch.inference_mode():
        out, _ = ours(x, mask=mask)
        expected, _ = ref(x, x, x, need_weights=False, **torch_kwargs)
    assert_near(out, expected)


def torch_masks(kind, batch, seq_len):
    """(our mask, torch kwargs) for the same masking, in the two polarities."""
    if kind == "none":
        return None, {}
    if kind == "causal":
        return causal(seq_len), {"attn_mask": ~causal(seq_len)}
    keep = key_padding(batch, seq_len, seed=3)
    return keep[:, None, None, :], {"key_padding_mask": ~keep}


@pytest.mark.parametrize("kind", ["none", "causal", "padding"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_weights_match_torch(shape, bias, kind):
    batch, seq_len, embed_dim, num_heads = shape
    ours, ref = make_pair(embed_dim, num_heads, bias=bias, seed=3)
    x = randn(batch, seq_len, embed_dim, seed=3)
    mask, torch_kwargs = torch_masks(kind, batch, seq_len)
    out, weights = ours(x, mask=mask, need_weights=True)  # (B, H, T, T)
    ref_out, ref_avg = ref(x, x, x, average_attn_weights=True, **torch_kwargs)
    _, ref_per_head = ref(x, x, x, average_attn_weights=False, **torch_kwargs)
    assert_near(out, ref_out)
    assert_near(weights.mean(dim=1), ref_avg)  # torch averages over the heads
    assert_near(weights, ref_per_head)


# ---------------------------------------------------------------------------
# Fast path (F.scaled_dot_product_attention) == from-scratch path
# ---------------------------------------------------------------------------


def mask_cases(batch, seq_len, num_heads):
    g = torch.Generator().manual_seed(4)
    keep = key_padding(batch, seq_len, seed=4)
    full = torch.rand(batch, num_heads, seq_len, seq_len, generator=g) < 0.6
    return {
        "causal-flag": (None, True),
        "causal-mask": (causal(seq_len), False),
        "key-padding": (keep[:, None, None, :], False),
        "padding-and-causal": (keep[:, None, None, :] & causal(seq_len), False),
        "random-(T,T)": (torch.rand(seq_len, seq_len, generator=g) < 0.5, False),
        "random-(B,H,T,T)": (full, False),
        "random-(B,1,T,T)": (full[:, :1], False),
    }


@pytest.mark.parametrize("case", list(mask_cases(1, 1, 1)))
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_fast_path_equals_from_scratch(shape, case):
    batch, seq_len, embed_dim, num_heads = shape
    ours, _ = make_pair(embed_dim, num_heads, seed=4)
    x = randn(batch, seq_len, embed_dim, seed=4)
    mask, is_causal = mask_cases(batch, seq_len, num_heads)[case]
    fast, none = ours(x, mask=mask, is_causal=is_causal, need_weights=False)
    slow, weights = ours(x, mask=mask, is_causal=is_causal, need_weights=True)
    assert none is None
    assert weights.shape == (batch, num_heads, seq_len, seq_len)
    assert not fast.isnan().any()
    assert_near(fast, slow)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fully_masked_rows_give_zero_attention(need_weights, dtype):
    """A query allowed no key: zero weights, zero attention, output = out_proj.bias.

    This is what F.scaled_dot_product_attention gives in torch 2.13, so both paths
    agree; torch.nn.MultiheadAttention gives NaN for the same row on most paths.
    """
    ours, ref = make_pair(8, 2, seed=5)
    ours, ref = ours.to(dtype), ref.to(dtype)
    x = randn(2, 4, 8, seed=5, dtype=dtype)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[0, :, 1] = False  # query 1 of sequence 0 may attend to nothing
    mask[1] = False  # nothing in sequence 1 may attend to anything
    out, weights = ours(x, mask=mask, need_weights=need_weights)
    assert not out.isnan().any()
    bias = ours.out_proj.bias.detach()
    assert_near(out[0, 1], bias)
    assert_near(out[1], bias.expand(4, 8))
    unmasked, _ = ours(x[:1])  # rows 0, 2, 3 of sequence 0 may see every key
    assert_near(out[0, [0, 2, 3]], unmasked[0, [0, 2, 3]])  # so they are unaffected
    if need_weights:
        assert (weights[0, :, 1] == 0).all() and (weights[1] == 0).all()
        assert_near(weights[0, :, [0, 2, 3]].sum(-1), torch.ones(2, 3, dtype=dtype))
    # torch.nn.MultiheadAttention gives NaN here when it computes the weights
    # (and in its no-grad fast path); only its grad-mode F.sdpa path gives zeros.
    torch_out, _ = ref(x, x, x, attn_mask=~mask[0, 0], need_weights=True)
    assert torch_out[:, 1].isnan().all()


# ---------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------


def test_split_and_merge_heads_are_inverse_views():
    x = randn(2, 5, 12)
    heads = split_heads(x, 3)  # (B, H, T, Dh)
    assert heads.shape == (2, 3, 5, 4)
    assert heads.data_ptr() == x.data_ptr()  # a view, no copy
    # head h holds features h*Dh .. (h+1)*Dh - 1 of every token
    assert_near(heads[:, 1], x[..., 4:8])
    assert torch.equal(merge_heads(heads), x)


def test_split_heads_rejects_indivisible_width():
    message = "divisible by num_heads=3, got x of shape (2, 5, 8)"
    with pytest.raises(ValueError, match=re.escape(message)):
        split_heads(randn(2, 5, 8), 3)


def test_different_heads_attend_differently():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = MultiHeadAttention(16, 4)
    _, weights = model(randn(2, 6, 16, seed=6), need_weights=True)  # (B, H, T, T)
    for h1 in range(4):
        for h2 in range(h1 + 1, 4):
            gap = (weights[:, h1] - weights[:, h2]).abs().max().item()
            assert gap > 1e-2, f"heads {h1} and {h2} have the same weights"


def test_attributes_and_parameters():
    model = MultiHeadAttention(12, 3, bias=False)
    assert (model.embed_dim, model.num_heads, model.head_dim) == (12, 3, 4)
    assert model.qkv_proj.weight.shape == (36, 12) and model.qkv_proj.bias is None
    assert model.out_proj.weight.shape == (12, 12) and model.out_proj.bias is None
    assert MultiHeadAttention(12, 3).qkv_proj.bias.shape == (36,)


# ---------------------------------------------------------------------------
# from_torch
# ---------------------------------------------------------------------------


def test_from_torch_copies_weights_dtype_and_mode():
    with torch.random.fork_rng():
        torch.manual_seed(7)
        ref = nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    ours = MultiHeadAttention.from_torch(ref.train())
    assert ours.training and ours.qkv_proj.weight.dtype == torch.float64
    assert torch.equal(ours.qkv_proj.weight, ref.in_proj_weight)
    assert torch.equal(ours.qkv_proj.bias, ref.in_proj_bias)
    assert torch.equal(ours.out_proj.weight, ref.out_proj.weight)
    assert torch.equal(ours.out_proj.bias, ref.out_proj.bias)
    assert ours.qkv_proj.weight.data_ptr() != ref.in_proj_weight.data_ptr()  # copied
    assert not MultiHeadAttention.from_torch(ref.eval()).training


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_first": False}, "m.batch_first must be True"),
        ({"kdim": 4}, "m.kdim and m.vdim must equal m.embed_dim=8 (separate q/k/v projections cannot be copied into the fused qkv_proj), got m.kdim=4 and m.vdim=8"),
        ({"vdim": 6}, "got m.kdim=8 and m.vdim=6"),
        ({"add_bias_kv": True}, "m.bias_k must be None"),
        ({"add_zero_attn": True}, "m.add_zero_attn must be False"),
        ({"dropout": 0.1}, "m.dropout must be 0.0 (this module has no attention dropout), got 0.1"),
    ],
)
def test_from_torch_rejects_unsupported_modules(kwargs, message):
    options = {"batch_first": True, **kwargs}
    ref = nn.MultiheadAttention(8, 2, **options)
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention.from_torch(ref)


def test_from_torch_rejects_other_modules():
    message = "m must be a torch.nn.MultiheadAttention, got Linear"
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "embed_dim, num_heads, message",
    [
        (10, 3, "embed_dim must be divisible by num_heads"),
        (10, 3, "got embed_dim=10 and num_heads=3"),
        (0, 1, "embed_dim must be a positive int, got 0"),
        (-8, 2, "embed_dim must be a positive int, got -8"),
        (8.0, 2, "embed_dim must be a positive int, got 8.0"),
        (True, 1, "embed_dim must be a positive int, got True"),
        (8, 0, "num_heads must be a positive int, got 0"),
        (8, "2", "num_heads must be a positive int, got '2'"),
    ],
)
def test_init_rejects_bad_sizes(embed_dim, num_heads, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(embed_dim, num_heads)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(5, 8), "x must have shape (B, T, D), got shape (5, 8)"),
        (torch.zeros(1, 2, 5, 8), "got shape (1, 2, 5, 8)"),
        ([[[0.0] * 8]], "x must be a torch.Tensor of shape (B, T, D), got list"),
        (torch.zeros(2, 5, 8, dtype=torch.float64),
         "x must have the dtype of the layer's weights, float32, got float64"),
        (torch.zeros(2, 5, 8, device="meta"),
         "x must be on the device of the layer's weights, cpu, got meta"),
        (torch.zeros(2, 5, 6), "x must have shape (B, T, D) with D = 8 as in the layer's "
                               "weights of shape (8, 8), got shape (2, 5, 6)"),
        (torch.zeros(2, 5, 6), "(2, 5, 6)"),
    ],
)
def test_forward_rejects_bad_x(x, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(8, 2)(x)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize(
    "mask, message",
    [
        (torch.zeros(5, 5), "mask must be a boolean tensor (True = may attend), got "
         "torch.float32"),
        (torch.ones(5, 5, dtype=torch.int64), "got torch.int64; convert a 0/1 mask"),
        ([[True] * 5] * 5, "mask must be a boolean tensor (True = may attend), got "
         "list"),
    ],
)
def test_forward_rejects_non_boolean_mask(mask, message, need_weights):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(8, 2)(
            torch.zeros(2, 5, 8), mask=mask, need_weights=need_weights
        )


@pytest.mark.parametrize(
    "mask_shape",
    [(4, 4), (5, 4), (3, 1, 1, 5), (2, 3, 5, 5), (1, 2, 1, 5, 5), (6,), (5,), ()],
)
def test_forward_rejects_mask_that_does_not_broadcast(mask_shape):
    mask = torch.ones(mask_shape, dtype=torch.bool)
    message = (
        "mask must broadcast to the scores' shape (..., T_q, T_k) = (2, 2, 5, 5) with "
        f"at least 2 dimensions, got shape {mask_shape}"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(8, 2)(torch.zeros(2, 5, 8), mask=mask)


def test_forward_rejects_mask_that_would_grow_the_batch():
    """(2, 1, 1, T) broadcasts with B = 1 but would turn one sequence into two."""
    mask = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match=re.escape("= (1, 2, 5, 5)")):
        MultiHeadAttention(8, 2)(torch.zeros(1, 5, 8), mask=mask)


@pytest.mark.parametrize(
    "mask_shape",
    [(1, 5), (5, 1), (5, 5), (2, 5, 5), (1, 1, 5), (2, 1, 1, 5), (2, 2, 5, 5)],
)
def test_forward_accepts_broadcastable_masks(mask_shape):
    """Any shape that broadcasts to (B, H, T, T) means the same as its expansion."""
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(8)) < 0.7
    model, _ = make_pair(8, 2, seed=8)
    x = randn(2, 5, 8, seed=8)
    expected, _ = model(x, mask=mask.expand(2, 2, 5, 5).clone(), need_weights=True)
    for need_weights in (False, True):
        assert_near(model(x, mask=mask, need_weights=need_weights)[0], expected)


def test_forward_rejects_mask_with_is_causal():
    mask = causal(5)
    message = "mask must be None when is_causal=True"
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(8, 2)(torch.zeros(2, 5, 8), mask=mask, is_causal=True)


# ---------------------------------------------------------------------------
# Properties over random small shapes
# ---------------------------------------------------------------------------


@st.composite
def problems(draw):
    """A small seeded model, an input and one of the mask kinds."""
    batch = draw(st.integers(1, 3))
    seq_len = draw(st.integers(1, 6))
    num_heads = draw(st.integers(1, 3))
    head_dim = draw(st.integers(1, 4))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    kind = draw(st.sampled_from(["none", "causal", "padding", "random"]))
    embed_dim = num_heads * head_dim
    x = randn(batch, seq_len, embed_dim, seed=seed)
    if kind == "none":
        mask, torch_kwargs = None, {}
    elif kind == "causal":
        mask, torch_kwargs = causal(seq_len), {"attn_mask": ~causal(seq_len)}
    elif kind == "padding":
        keep = key_padding(batch, seq_len, seed=seed)
        mask, torch_kwargs = keep[:, None, None, :], {"key_padding_mask": ~keep}
    else:  # random (T, T) pattern; the diagonal keeps every row non-empty
        g = torch.Generator().manual_seed(seed)
        mask = (torch.rand(seq_len, seq_len, generator=g) < 0.5) | torch.eye(
            seq_len, dtype=torch.bool
        )
        torch_kwargs = {"attn_mask": ~mask}
    return (embed_dim, num_heads, bias, seed), x, mask, torch_kwargs


PROPERTY = settings(max_examples=25, deadline=None)


@PROPERTY
@given(problems())
def test_property_weights_are_distributions(problem):
    (embed_dim, num_heads, bias, seed), x, mask, _ = problem
    ours, _ = make_pair(embed_dim, num_heads, bias=bias, seed=seed)
    _, weights = ours(x, mask=mask, need_weights=True)
    assert (weights >= 0).all()
    assert_near(weights.sum(-1), torch.ones(weights.shape[:-1]))
    if mask is not None:
        assert (weights[~mask.expand_as(weights)] == 0).all()  # blocked keys get 0


@PROPERTY
@given(problems(), st.booleans())
def test_property_matches_torch(problem, need_weights):
    (embed_dim, num_heads, bias, seed), x, mask, torch_kwargs = problem
    ours, ref = make_pair(embed_dim, num_heads, bias=bias, seed=seed)
    out, _ = ours(x, mask=mask, need_weights=need_weights)
    expected, _ = ref(x, x, x, need_weights=False, **torch_kwargs)
    assert_near(out, expected)


@PROPERTY
@given(problems(), st.booleans())
def test_property_batch_elements_are_independent(problem, need_weights):
    (embed_dim, num_heads, bias, seed), x, mask, _ = problem
    ours, _ = make_pair(embed_dim, num_heads, bias=bias, seed=seed)
    out, weights = ours(x, mask=mask, need_weights=need_weights)
    for i in range(x.shape[0]):
        mask_i = mask[i : i + 1] if mask is not None and mask.dim() == 4 else mask
        out_i, weights_i = ours(x[i : i + 1], mask=mask_i, need_weights=need_weights)
        assert_near(out_i, out[i : i + 1])
        if need_weights:
            assert_near(weights_i, weights[i : i + 1])


# ---- the page: docs/multi-head.md: every number its prose states is the number the code computes,
PAGE = read_page("multi-head.md")
FLAT = " ".join(prose(PAGE).split())


def flat(text: str) -> str:
    return " ".join(prose(text).split())


def page_example():
    """The page's module example, rebuilt the way its code builds it."""
    m = re.search(r"B, T, D, H = (\d+), (\d+), (\d+), (\d+)\s+# the sizes", PAGE)
    assert m, "the module example's sizes are gone from the page"
    batch, seq_len, embed_dim, num_heads = map(int, m.groups())
    assert "torch.manual_seed(0)\nmha = MultiHeadAttention(D, H)" in PAGE
    assert "x = torch.randn(B, T, D)                 # (2, 5, 8)" in PAGE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MultiHeadAttention(embed_dim, num_heads)
        x = torch.randn(batch, seq_len, embed_dim)
    with torch.no_grad():
        _, weights = model(x, need_weights=True)
    return (batch, seq_len, embed_dim, num_heads), model, x, weights


@pytest.fixture(scope="module")
def example():
    return page_example()


# ---- the from-scratch trace ----------------------------------------------------------


def test_trace_sizes_in_the_prose_are_the_code_sizes(example):
    (batch, seq_len, embed_dim, num_heads), *_ = example
    m = re.search(r"B, T, D, H = (\d+), (\d+), (\d+), (\d+)\s+# batch, tokens", PAGE)
    assert tuple(map(int, m.groups())) == (batch, seq_len, embed_dim, num_heads)
    head_dim = embed_dim // num_heads
    text = flat(section(PAGE, "From scratch, one shape at a time"))
    assert (f"a batch of **{batch}** sequences of **{seq_len}** tokens, model width "
            f"**{embed_dim}**, **{num_heads}** heads of width **{head_dim}**") in text
    # "Head 1 ... from columns 4 to 7"; the code comment says the same
    assert f"from columns {head_dim} to {2 * head_dim - 1} of the three" in text
    assert f"# head 1's columns: {', '.join(map(str, range(head_dim, 2 * head_dim)))}" in PAGE


def test_head_from_its_own_columns_is_the_batched_head():
    """The page's claim, on other sizes: head h of split_heads(x @ W_q) is x @ W_q^(h)."""
    g = torch.Generator().manual_seed(0)
    x, w_q = torch.randn(3, 4, 12, generator=g), torch.randn(12, 12, generator=g)
    heads = split_heads(x @ w_q, 3)  # (B, H, T, Dh)
    for h in range(3):
        cols = slice(4 * h, 4 * (h + 1))
        torch.testing.assert_close(heads[:, h], x @ w_q[:, cols])


# ---- the classic mistake: view without the transpose ---------------------------------


def page_mistake():
    """The page's ``split_heads_view_only``, taken from the block that shows it."""
    from tests import harness

    (block,) = [b for b in harness.collect_page(harness.DOCS / "multi-head.md")
                if not b.standalone and "def split_heads_view_only" in b.source]
    piece = next(p for p in block.pieces if "def split_heads_view_only" in p.code)
    code = piece.code.split("\n\n\nlabels", 1)[0]  # the function alone
    namespace = {}
    exec(compile(code, "docs/multi-head.md", "exec"), namespace)  # noqa: S102
    return namespace["split_heads_view_only"]


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 3), seq_len=st.integers(2, 6), num_heads=st.integers(2, 4),
       head_dim=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_view_without_transpose_scrambles_the_tokens(batch, seq_len, num_heads, head_dim,
                                                     seed):
    """The mistake on the page must fail: the right shape, the wrong rows. Each row of
    the correct split is one token's slice; the view-only split mixes tokens, so the
    layer's output differs."""
    wrong_split = page_mistake()
    embed_dim = num_heads * head_dim
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq_len, embed_dim, generator=g)
    right, wrong = split_heads(x, num_heads), wrong_split(x, num_heads)
    assert right.shape == wrong.shape
    assert not torch.equal(right, wrong)
    labels = torch.arange(seq_len).repeat_interleave(embed_dim).view(1, seq_len, embed_dim)
    rows = wrong_split(labels, num_heads)[0, :, :, 0]  # (H, T): the token in each row
    assert not torch.equal(rows, torch.arange(seq_len).expand(num_heads, seq_len))
    q, k, v = (split_heads(t, num_heads) for t in (x, x.flip(1), 2 * x))
    qw, kw, vw = (wrong_split(t, num_heads) for t in (x, x.flip(1), 2 * x))
    out, _ = scaled_dot_product_attention(q, k, v)
    out_w, _ = scaled_dot_product_attention(qw, kw, vw)
    assert not torch.allclose(merge_heads(out), out_w.reshape(batch, seq_len, embed_dim))


def test_view_without_transpose_is_harmless_only_when_trivial():
    """With one head (or one token) there is nothing to scramble: the same tensor."""
    wrong_split = page_mistake()
    x = torch.randn(2, 5, 8)
    assert torch.equal(wrong_split(x, 1), split_heads(x, 1))
    assert torch.equal(wrong_split(x[:, :1], 4), split_heads(x[:, :1], 4))


# ---- what torch.nn.MultiheadAttention does (torch 2.13, CPU) ---------------------------


def test_a_float_mask_is_added_to_the_scores():
    """The page's "PyTorch adds a float mask to the scores" (torch 2.13, CPU)."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 3, generator=g) for _ in range(3))
    mask = torch.randn(4, 4, generator=g)
    scores = q @ k.transpose(-2, -1) / math.sqrt(3) + mask
    expected = torch.softmax(scores, dim=-1) @ v
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                               expected)
    zeros = F.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(4, 4))
    torch.testing.assert_close(zeros, F.scaled_dot_product_attention(q, k, v))


def test_torch_mha_starts_its_biases_at_zero():
    assert torch.__version__.startswith("2.13")
    layer = nn.MultiheadAttention(8, 2)
    assert torch.count_nonzero(layer.in_proj_bias) == 0
    assert torch.count_nonzero(layer.out_proj.bias) == 0


# ---- what H heads cost ------------------------------------------------------------------


def flops(embed_dim, num_heads, x):
    layer = MultiHeadAttention(embed_dim, num_heads)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _, weights = layer(x, need_weights=True)
    return counter.get_total_flops(), weights[0].numel()


def test_cost_sentence(example):
    (batch, seq_len, embed_dim, _), _, x, _ = example
    counts = {h: flops(embed_dim, h, x) for h in (1, 2, 4, 8)}
    (total,) = {f for f, _ in counts.values()}  # the same for every H
    # 2 FLOPs per multiply-add: projections 4 D^2 per token, scores + sum 2 T D per token
    assert total == 2 * batch * seq_len * (4 * embed_dim**2 + 2 * seq_len * embed_dim)
    sizes = [n for _, n in counts.values()]
    assert sizes == [h * seq_len**2 for h in (1, 2, 4, 8)]
    text = flat(section(PAGE, "What H heads cost"))
    assert f"The count is {total} FLOPs (2 per multiply-add) for every number of heads" in text
    assert "$H \\cdot T^2$ = " + ", ".join(map(str, sizes)) + "." in text
    m = re.search(r"at \$T = (\d+)\$ tokens, one layer's (\d+) heads hold "
                  r"\$(\d+) \\cdot (\d+)\^2\$, about (\d+) million weights", text)
    t, h, h2, t2, millions = map(int, m.groups())
    assert (h, t) == (h2, t2) and round(h * t**2 / 1e6) == millions


# ---- each head scales by its own width ------------------------------------------------


def test_scaling_numbers():
    text = flat(section(PAGE, "Each head scales by its own width"))
    m = re.search(r"\$D = (\d+)\$, \$H = (\d+)\$, \$D_h = (\d+)\$, and (\d+) tokens", text)
    embed_dim, num_heads, head_dim, seq_len = map(int, m.groups())
    assert embed_dim // num_heads == head_dim
    assert f"q = torch.randn({num_heads}, {seq_len}, {head_dim})" in PAGE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        q = torch.randn(num_heads, seq_len, head_dim)
        k = torch.randn(num_heads, seq_len, head_dim)
    scores = attention_scores(q, k)
    stats = {}
    for width in (head_dim, embed_dim):
        scaled = scale_scores(scores, width)
        top = attention_weights(scaled).max(dim=-1).values.mean()
        stats[width] = (f"{scaled.std():.4f}", f"{top:.4f}")
    (std_h, top_h), (std_d, top_d) = stats[head_dim], stats[embed_dim]
    assert f"a standard deviation near 1 ({std_h})" in text
    assert f"a row's largest weight is {top_h} on average" in text
    assert f"the spread drops to {std_d}" in text
    assert f"$1/\\sqrt{{{num_heads}}} \\approx {1 / math.sqrt(num_heads):.4f}$" in text
    assert f"the largest weight to {top_d}, much nearer the uniform $1/T = {1 / seq_len}$" in text
    # the claims behind the sentence: sqrt(Dh) keeps the spread near 1, sqrt(D) shrinks
    # it by about sqrt(H) and flattens the rows
    assert abs(float(std_h) - 1) < 0.05
    assert abs(float(std_d) / float(std_h) - 1 / math.sqrt(num_heads)) < 1e-3
    assert float(top_d) < float(top_h)


def test_module_scales_each_head_by_root_head_dim():
    """What the section says of MultiHeadAttention, checked on its weights."""
    torch.manual_seed(3)
    model = MultiHeadAttention(12, 3)
    x = torch.randn(1, 4, 12)
    _, weights = model(x, need_weights=True)
    q, k, _ = model.qkv_proj(x).chunk(3, dim=-1)
    q, k = split_heads(q, 3), split_heads(k, 3)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    torch.testing.assert_close(weights, expected)


# ---- different heads, different weights ------------------------------------------------


def test_heads_prose(example):
    (_, seq_len, _, num_heads), _, _, weights = example
    w = weights[0]  # (H, T, T), the first sequence
    best = w.argmax(-1)  # (H, T)
    assert num_heads == 2 and bool((best[0] != best[1]).all())  # "a different key"
    text = flat(section(PAGE, "Different heads, different weights"))
    assert (f"for each of the {seq_len} queries, head 0 and head 1 put their largest "
            "weight on a different key") in text
    assert f"lies between {w.min():.4f} and {w.max():.4f}, around $1/T = {1 / seq_len}$" in text
    assert "tokens 0-4" in PAGE and seq_len == 5


ALT = re.compile(r"!\[([^\]]+)\]\(figures/multihead-heads\.svg\)")


def test_figure_alt_text_says_what_it_shows(example):
    (_, seq_len, embed_dim, num_heads), _, _, weights = example
    (alt,) = ALT.findall(PAGE)
    w = weights[0]
    best = w.argmax(-1).tolist()
    assert f"one per head, of the {seq_len} by {seq_len} attention weights" in alt
    assert f"MultiHeadAttention({embed_dim}, {num_heads})" in alt
    assert f"the weights lie between {w.min():.2f} and {w.max():.2f}" in alt
    assert f"close to the uniform {1 / seq_len:.2f}" in alt
    assert (f"Head 0 outlines keys {', '.join(map(str, best[0]))} in rows 0 to "
            f"{seq_len - 1} and head 1 outlines keys {', '.join(map(str, best[1]))}") in alt
    assert "a different key in every row" in alt and all(
        a != b for a, b in zip(*best))


# ---- matching torch.nn.MultiheadAttention ----------------------------------------------


def test_check_yourself_rows():
    start = PAGE.index('??? question "Check yourself')
    text = flat(PAGE[start:PAGE.index('??? example "All the code')])
    m = re.search(r"with D = (\d+) and H = (\d+), which rows", text)
    embed_dim, num_heads = map(int, m.groups())
    head_dim = embed_dim // num_heads
    key_rows = (embed_dim, 2 * embed_dim - 1)
    head1 = (embed_dim + head_dim, embed_dim + 2 * head_dim - 1)
    assert f"rows $D$ to $2D - 1$, {key_rows[0]} to {key_rows[1]}" in text
    assert f"$D_h = {head_dim}$ rows" in text
    assert f"that is **{head1[0]} to {head1[1]}** (with entries {head1[0]} to {head1[1]}" in text
    # and those rows are head 1's keys inside MultiHeadAttention.from_torch
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(2, 5, embed_dim)
    with torch.no_grad():
        rows = slice(head1[0], head1[1] + 1)
        by_rows = x @ ref.in_proj_weight[rows].T + ref.in_proj_bias[rows]
        _, k, _ = ours.qkv_proj(x).chunk(3, dim=-1)
    torch.testing.assert_close(by_rows, split_heads(k, num_heads)[:, 1], atol=1e-6, rtol=0)


def test_padding_example_sentence():
    m = re.search(r"keep = torch\.tensor\(\[\[([^\]]*)\],\s*\[([^\]]*)\]\]\)", PAGE)
    second = [t.strip() == "True" for t in m.group(2).split(",")]
    real, padding = sum(second), len(second) - sum(second)
    assert second == sorted(second, reverse=True)  # the padding is at the end
    text = flat(section(PAGE, "The same outputs, with and without masks"))
    assert (f"the second sequence has {real} real tokens and {padding} padding tokens "
            "at the end") in text


def test_fast_path_and_benchmark_are_named():
    text = flat(section(PAGE, "The module"))
    assert "default `need_weights=False` it is PyTorch's fused kernel" in text
    assert "[Efficient attention](efficient.md) measures" in text


# ---- nothing unchecked -------------------------------------------------------------


def test_every_number_in_the_prose_is_accounted_for(example):
    """A new number in the prose needs a check above; this lists the ones there are."""
    (batch, seq_len, embed_dim, num_heads), _, _, weights = example
    text = prose(PAGE.split('??? example "All the code')[0])
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)  # display formulas
    text = re.sub(r"`[^`]*`", "", text)  # code names
    text = text.replace("GPT-2-small", "GPT-small")  # a model's name
    text = re.sub(r"et al\., \*[^*]*\*, 2019", "", text)  # the two citations
    sizes = {batch, seq_len, embed_dim, num_heads, embed_dim // num_heads}
    w = weights[0]
    figure = {round(w.min().item(), 2), round(w.max().item(), 2), 1 / seq_len,
              *w.argmax(-1).flatten().tolist()}
    checked = {
        *sizes, 7,  # columns 4 to 7
        6720, 25, 50, 100, 200, 4096, 32, 537,  # what H heads cost
        768, 12, 64, 10, 1.0084, 0.3342, 0.2911, 0.2887, 0.154, 0.1,  # scaling
        0.0954, 0.3148,  # the heads' range
        3, 15, 12,  # padding: 3 real tokens; check yourself: rows 8 to 15, 12 to 15
        2.13,  # the torch version the fully masked case was run on
        2022, 2018, 4.1,  # the citations of FlashAttention and GPT's sizes
        *figure,
    }
    by_definition = {0, 1, -1, 3}  # head 0/1, "near 1", (i+1)D_h - 1, 3D
    found = set(numbers(text))
    assert found <= {float(n) for n in checked | by_definition}, sorted(
        found - {float(n) for n in checked | by_definition})


# ---------------------------------------------------------------------------
# A refused call changes nothing: the layer's parameters, its mode, the input
# ---------------------------------------------------------------------------

FORWARD_ERRORS = {  # each error path of forward: (x, keyword arguments)
    "x-list": ([[[0.0] * 8]], {}),
    "x-2d": (torch.zeros(5, 8), {}),
    "x-width": (torch.zeros(2, 5, 6), {}),
    "x-dtype": (torch.zeros(2, 5, 8, dtype=torch.float64), {}),
    "x-device": (torch.zeros(2, 5, 8, device="meta"), {}),
    "need_weights": (torch.zeros(2, 5, 8), {"need_weights": "yes"}),
    "is_causal": (torch.zeros(2, 5, 8), {"is_causal": 1}),
    "mask-float": (torch.zeros(2, 5, 8), {"mask": torch.zeros(5, 5)}),
    "mask-shape": (torch.zeros(2, 5, 8), {"mask": torch.ones(3, 5, 5, dtype=torch.bool)}),
    "mask-device": (torch.zeros(2, 5, 8),
                    {"mask": torch.ones(5, 5, dtype=torch.bool, device="meta")}),
    "mask-and-causal": (torch.zeros(2, 5, 8),
                        {"mask": torch.ones(5, 5, dtype=torch.bool), "is_causal": True}),
}


def layer_state(layer):
    return layer.training, {k: v.clone() for k, v in layer.state_dict().items()}, [
        p.grad for p in layer.parameters()]


@pytest.mark.parametrize("case", sorted(FORWARD_ERRORS))
def test_a_refused_forward_changes_nothing(case):
    x, kwargs = FORWARD_ERRORS[case]
    layer, _ = make_pair(8, 2, seed=3)
    x_before = x.clone() if isinstance(x, torch.Tensor) else list(x)
    training, state, grads = layer_state(layer)
    with pytest.raises(ValueError, match=r" must "):
        layer(x, **kwargs)
    assert layer.training == training and all(g is None for g in grads)
    assert all(torch.equal(v, state[k]) for k, v in layer.state_dict().items())
    if isinstance(x, torch.Tensor) and x.device.type != "meta":
        assert torch.equal(x, x_before)


@pytest.mark.parametrize("options", [{"batch_first": False}, {"kdim": 4},
                                     {"add_bias_kv": True}, {"add_zero_attn": True},
                                     {"dropout": 0.1}])
def test_a_refused_from_torch_leaves_the_torch_module_alone(options):
    ref = nn.MultiheadAttention(8, 2, **{"batch_first": True, **options})
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    with pytest.raises(ValueError, match=r"^m\.\w+ (and m\.\w+ )?must "):
        MultiHeadAttention.from_torch(ref)
    assert all(torch.equal(v, state[k]) for k, v in ref.state_dict().items())


@pytest.mark.parametrize("args", [(8, 3), (0, 1), (8, True), (8.0, 2), (8, 2, "yes")])
def test_bad_sizes_and_bias_are_refused(args):
    with pytest.raises(ValueError, match=r"^(embed_dim|num_heads|bias) must "):
        MultiHeadAttention(*args)


@pytest.mark.parametrize("call, pattern", [
    (lambda: split_heads(torch.zeros(2, 5, 8), 0), r"num_heads must be a positive int, "
     r"got 0"),
    (lambda: split_heads(torch.zeros(2, 5, 8), 2.0), r"num_heads must be a positive int"),
    (lambda: split_heads(torch.zeros(5, 8), 2), r"x must have shape \(B, T, D\), got "
     r"shape \(5, 8\)"),
    (lambda: merge_heads(torch.zeros(2, 5, 8)), r"x must have shape \(B, H, T, Dh\), got "
     r"shape \(2, 5, 8\)"),
])
def test_split_and_merge_refuse_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
