"""Tests for snippets/multihead.py: multi-head self-attention from scratch.

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

from snippets.multihead import MultiHeadAttention, merge_heads, split_heads

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
        ({"batch_first": False}, "m.batch_first is False"),
        ({"kdim": 4}, "m.kdim=4 and m.vdim=8 must equal m.embed_dim=8"),
        ({"vdim": 6}, "m.kdim=8 and m.vdim=6 must equal m.embed_dim=8"),
        ({"add_bias_kv": True}, "add_bias_kv=True"),
        ({"add_zero_attn": True}, "m.add_zero_attn is True"),
        ({"dropout": 0.1}, "m.dropout is 0.1"),
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
        (torch.zeros(5, 8), "x must be a 3-D tensor of shape (B, T, D), got (5, 8)"),
        (torch.zeros(1, 2, 5, 8), "got (1, 2, 5, 8)"),
        ([[[0.0] * 8]], "x must be a 3-D tensor of shape (B, T, D), got list"),
        (torch.zeros(2, 5, 6), "x must have shape (B, T, embed_dim=8), got x of shape"),
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
        f"mask of shape {mask_shape} cannot broadcast to the attention weights' "
        "shape (B, H, T, T) = (2, 2, 5, 5) with at least 2 dimensions"
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
    message = "mask and is_causal=True were both given; use one"
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
