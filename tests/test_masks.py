"""snippets/masks.py and the numbers on docs/masks.md."""

from __future__ import annotations

import json
import math
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.bias import causal_lower_right

from snippets.attention import (
    attention_scores,
    causal_mask,
    scale_scores,
    scaled_dot_product_attention,
    weighted_sum,
)
from snippets.masks import (
    attention_with_inverted_mask,
    causal_mask_lower_right,
    combine_masks,
    future_leaks,
    naive_masked_softmax,
    padding_mask,
)
from tests.harness import ROOT
from tests.pages import numbers, prose, read_page, section

torch.set_default_dtype(torch.float32)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- causal masks


def test_lower_right_mask_lets_query_i_see_keys_up_to_tk_minus_tq_plus_i():
    for t_q, t_k in [(1, 1), (2, 5), (3, 3), (5, 2), (4, 7), (1, 6)]:
        mask = causal_mask_lower_right(t_q, t_k)
        assert mask.shape == (t_q, t_k) and mask.dtype == torch.bool
        for i in range(t_q):
            for j in range(t_k):
                assert mask[i, j].item() == (j <= t_k - t_q + i)


def test_the_two_alignments_agree_when_square_and_differ_otherwise():
    assert torch.equal(causal_mask_lower_right(4, 4), causal_mask(4, 4))
    assert causal_mask(2, 5).tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert causal_mask_lower_right(2, 5).tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


@pytest.mark.parametrize("t_q, t_k", [(0, 3), (3, 0), (-1, 2), (2.0, 3), ("2", 3)])
def test_lower_right_rejects_bad_sizes(t_q, t_k):
    name = "t_q" if not (isinstance(t_q, int) and t_q >= 1) else "t_k"
    with pytest.raises(ValueError, match=rf"{name} must be a positive int, got"):
        causal_mask_lower_right(t_q, t_k)


@settings(max_examples=40, deadline=None)
@given(t_q=st.integers(1, 7), t_k=st.integers(1, 7), d=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_lower_right_matches_torch_causal_lower_right(t_q, t_k, d, seed):
    """Same output as PyTorch's own lower-right bias, including T_q > T_k, where
    the first T_q - T_k rows have no key (zeros from both)."""
    q, k, v = randn(2, t_q, d, seed=seed), randn(2, t_k, d, seed=seed + 1), randn(
        2, t_k, 3, seed=seed + 2)
    ours, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask_lower_right(t_q, t_k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # T_q > T_k warns, see below
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(t_q, t_k))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_torch_lower_right_warns_of_nan_but_gives_zeros():
    """The page's note: PyTorch 2.13 warns about NaN for T_q > T_k; on the CPU the
    rows without a key come out as zeros, like ours."""
    q, k, v = randn(1, 5, 4), randn(1, 2, 4, seed=1), randn(1, 2, 3, seed=2)
    with pytest.warns(UserWarning, match="will produce NaNs"):
        bias = causal_lower_right(5, 2)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.all(ref[0, :3] == 0) and not ref.isnan().any()
    ours, weights = scaled_dot_product_attention(q, k, v, mask=causal_mask_lower_right(5, 2))
    assert torch.all(ours[0, :3] == 0) and torch.all(weights[0, :3] == 0)


def test_torch_is_causal_is_upper_left():
    q, k, v = randn(1, 2, 4), randn(1, 5, 4, seed=1), randn(1, 5, 3, seed=2)
    ours, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(2, 5))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@settings(max_examples=40, deadline=None)
@given(cached=st.integers(1, 5), new=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_kv_cache_step_needs_lower_right(cached, new, seed):
    """The last `new` queries against all keys, with the lower-right mask, give the
    same rows as full causal attention; the upper-left mask does not."""
    seq = randn(1, cached + new, 6, seed=seed)
    full, _ = scaled_dot_product_attention(seq, seq, seq, is_causal=True)
    queries = seq[:, cached:]
    t_k = cached + new
    lower, _ = scaled_dot_product_attention(
        queries, seq, seq, mask=causal_mask_lower_right(new, t_k))
    upper, _ = scaled_dot_product_attention(queries, seq, seq, mask=causal_mask(new, t_k))
    torch.testing.assert_close(lower, full[:, cached:], atol=1e-6, rtol=0)
    assert not torch.allclose(upper, full[:, cached:], atol=1e-3)


# ---------------------------------------------------------------- padding masks


def test_padding_mask_shape_and_values():
    pad = padding_mask([4, 2, 0], max_len=4)
    assert pad.shape == (3, 1, 4) and pad.dtype == torch.bool
    assert pad[:, 0].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert torch.equal(padding_mask(torch.tensor([4, 2, 0]), 4), pad)
    assert torch.equal(padding_mask(torch.tensor([4, 2, 0], dtype=torch.int32), 4), pad)
    assert padding_mask([3], 3)[:, None].shape == (1, 1, 1, 3)  # (B, 1, 1, T)


def test_padding_mask_blocks_filler_keys_with_and_without_heads():
    lengths = [4, 2]
    q, k, v = randn(2, 3, 4, 5), randn(2, 3, 4, 5, seed=1), randn(2, 3, 4, 2, seed=2)
    mask = padding_mask(lengths, 4)[:, None]  # (B, 1, 1, T) against (B, H, T, T)
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.all(weights[1, :, :, 2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    # nn.MultiheadAttention's key_padding_mask has the opposite polarity
    mha = torch.nn.MultiheadAttention(5, 1, batch_first=True)
    with torch.no_grad():
        blocked = ~padding_mask(lengths, 4)[:, 0]  # (B, T), True = blocked
        _, mha_weights = mha(q[:, 0], k[:, 0], k[:, 0], key_padding_mask=blocked)
    assert torch.all(mha_weights[1, :, 2:] == 0) and torch.all(mha_weights[1, :, :2] > 0)


@pytest.mark.parametrize(
    "lengths, max_len, pattern",
    [
        ([4, 5], 4, r"lengths must be between 0 and max_len=4, got \[4, 5\]"),
        ([-1, 2], 4, r"lengths must be between 0 and max_len=4, got \[-1, 2\]"),
        ([[1, 2]], 4, r"lengths must have shape \(B,\), got shape \(1, 2\)"),
        ([1.5, 2.0], 4, r"lengths must have dtype int8, int16, int32 or int64, got float32"),
        ([True], 4, r"lengths must be real numbers .*got \[True\]"),
        (3, 4, r"lengths must have shape \(B,\), got shape \(\)"),
        ("ab", 4, r"lengths must be real numbers .*got 'ab'"),
        (torch.tensor([1, 2], device="meta"), 4, r"lengths must hold values"),
        ([1], 0, r"max_len must be a positive int, got 0"),
        ([1], 2.0, r"max_len must be a positive int, got 2.0"),
    ],
)
def test_padding_mask_rejects_bad_input(lengths, max_len, pattern):
    with pytest.raises(ValueError, match=pattern):
        padding_mask(lengths, max_len)


def test_combine_masks_is_a_broadcast_logical_and():
    causal = causal_mask(4, 4)
    pad = padding_mask([4, 2], 4)
    combined = combine_masks(causal, pad)
    assert combined.shape == (2, 4, 4)
    assert torch.equal(combined, causal[None] & pad.expand(2, 4, 4))
    assert combined[1].tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]
    assert combine_masks(causal) is causal
    three = combine_masks(causal, pad, torch.tensor([True, False, True, True]))
    assert not three[..., 1].any()


@pytest.mark.parametrize(
    "masks, pattern",
    [
        ((), r"masks must be at least one mask, got none"),
        ((torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 2)), r"masks\[1\] must have dtype bool, got float32"),
        (([[True]],), r"masks\[0\] must be a torch.Tensor of shape \(\.\.\.\), got list"),
        ((torch.ones(2, 3, dtype=torch.bool), torch.ones(4, 1, 2, dtype=torch.bool)),
         r"masks\[0\] and masks\[1\] must have leading \(batch\) dimensions that "
         r"broadcast together, got \(2, 3\) and \(4, 1, 2\)"),
        ((torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool, device="meta")),
         r"masks\[1\] must be on the device of masks\[0\], cpu, got meta"),
    ],
)
def test_combine_masks_rejects_bad_input(masks, pattern):
    with pytest.raises(ValueError, match=pattern):
        combine_masks(*masks)


# ---------------------------------------------------------------- polarity


def test_inverted_mask_is_masked_fill_polarity():
    """attention_with_inverted_mask(mask) is correct attention with ~mask (what the
    masked_fill convention means) wherever a row has a key, NaN where it has none."""
    q, k, v = randn(2, 5, 4), randn(2, 5, 4, seed=1), randn(2, 5, 3, seed=2)
    mask = causal_mask(5, 5)
    out, weights = attention_with_inverted_mask(q, k, v, mask)
    ref, ref_weights = scaled_dot_product_attention(q, k, v, mask=~mask)
    torch.testing.assert_close(out[:, :4], ref[:, :4], atol=1e-6, rtol=0)
    torch.testing.assert_close(weights[:, :4], ref_weights[:, :4], atol=1e-6, rtol=0)
    assert torch.all(weights[:, :4].tril() == 0)  # only the future is seen
    assert weights[:, 4].isnan().all() and out[:, 4].isnan().all()


def test_multihead_attention_reads_true_as_blocked():
    """The page's table: nn.MultiheadAttention's boolean attn_mask blocks where True."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(embed_dim=8, num_heads=1, batch_first=True)
    x = randn(1, 4, 8)
    may_attend = causal_mask(4, 4)
    with torch.no_grad():
        _, wrong = mha(x, x, x, attn_mask=may_attend)
        _, right = mha(x, x, x, attn_mask=~may_attend)
    assert torch.all(right[0][~may_attend] == 0) and torch.all(right[0][may_attend] > 0)
    assert torch.all(wrong[0, :3].tril() == 0) and wrong[0, 3].isnan().all()


def test_a_may_attend_mask_in_masked_fill_code_really_differs():
    """The first failing-on-purpose block: the inverted mask's output is not the
    causal output, and every position with a future peeks."""
    x = randn(1, 4, 8)
    wrong, _ = attention_with_inverted_mask(x, x, x, causal_mask(4, 4))
    right, _ = scaled_dot_product_attention(x, x, x, is_causal=True)
    assert not torch.allclose(wrong[:, :3], right[:, :3], atol=1e-3)
    assert wrong[:, 3].isnan().all()


def test_a_blocked_mask_in_torch_sdpa_really_differs():
    """The second failing-on-purpose block: F.scaled_dot_product_attention given a
    True = blocked mask attends to the future only, and its fully masked last row is
    zeros (no NaN to notice), on both CPU backends."""
    x = randn(1, 4, 8)
    blocked = ~causal_mask(4, 4)
    right = F.scaled_dot_product_attention(x, x, x, is_causal=True)
    for backend in (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION):
        q = x[:, None]  # (1, 1, 4, 8): the flash backend takes 4-D inputs only
        with sdpa_kernel(backend):
            wrong = F.scaled_dot_product_attention(q, q, q, attn_mask=blocked)[:, 0]
        assert (wrong - right).abs().max().item() > 1
        assert torch.equal(wrong[0, -1], torch.zeros(8))
        _, ref = attention_with_inverted_mask(x, x, x, ~blocked)  # same pattern
        torch.testing.assert_close(wrong[:, :3], (ref @ x)[:, :3], atol=1e-5, rtol=0)

    def reverse(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=~causal_mask(4, 4))

    assert future_leaks(reverse, x, x, x) == [0, 1, 2]


def test_float_mask_zero_means_may_attend():
    """The page: a float mask is added to the scores, 0 = may attend, -inf = blocked."""
    q, k, v = randn(1, 3, 4), randn(1, 3, 4, seed=1), randn(1, 3, 2, seed=2)
    mask = causal_mask(3, 3)
    additive = torch.zeros(3, 3).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=additive),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
    )
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=torch.zeros(3, 3)),
        F.scaled_dot_product_attention(q, k, v),
    )


# ---------------------------------------------------------------- no peeking


def causal(q, k, v):
    return scaled_dot_product_attention(q, k, v, is_causal=True)


def inverted(q, k, v):
    return attention_with_inverted_mask(q, k, v, causal_mask(q.shape[-2], k.shape[-2]))


def one_ahead(q, k, v):
    """An off-by-one causal mask: each query also sees the next token."""
    mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(1)
    return scaled_dot_product_attention(q, k, v, mask=mask)[0]


no_peeking_problems = st.tuples(
    st.lists(st.integers(1, 3), min_size=0, max_size=2),  # batch dimensions
    st.integers(1, 8),  # T
    st.integers(1, 6),  # d_k
    st.integers(1, 4),  # d_v
    st.integers(0, 2**16),  # seed
)


@settings(max_examples=40, deadline=None)
@given(problem=no_peeking_problems)
def test_no_peeking(problem):
    """With a causal mask, the output at position t does not change when any later
    token changes, for every t; and the same check catches the polarity bug (and an
    off-by-one mask) at every position that has a future."""
    batch, t, d_k, d_v, seed = problem
    q = randn(*batch, t, d_k, seed=seed)
    k = randn(*batch, t, d_k, seed=seed + 1)
    v = randn(*batch, t, d_v, seed=seed + 2)
    assert future_leaks(causal, q, k, v, seed=seed) == []
    torch_causal = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    assert future_leaks(torch_causal, q, k, v, seed=seed) == []
    if batch:  # causal + padding: padding depends on lengths, never on later tokens
        lengths = [1 + (seed + i) % t for i in range(batch[0])]
        pad = padding_mask(lengths, t)
        pad = pad.reshape(batch[0], *[1] * (len(batch) - 1), 1, t)
        mask = combine_masks(causal_mask(t, t), pad)
        padded = lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask)  # noqa: E731
        assert future_leaks(padded, q, k, v, seed=seed) == []
    # the check detects the bugs
    assert future_leaks(inverted, q, k, v, seed=seed) == list(range(t - 1))
    assert future_leaks(one_ahead, q, k, v, seed=seed) == list(range(t - 1))
    no_mask = lambda q, k, v: scaled_dot_product_attention(q, k, v)  # noqa: E731
    assert future_leaks(no_mask, q, k, v, seed=seed) == list(range(t - 1))


def test_future_leaks_does_not_modify_its_inputs():
    q, k, v = randn(2, 5, 3), randn(2, 5, 3, seed=1), randn(2, 5, 2, seed=2)
    copies = [x.clone() for x in (q, k, v)]
    future_leaks(inverted, q, k, v)
    for x, y in zip((q, k, v), copies):
        assert torch.equal(x, y)


def test_future_leaks_needs_self_attention_shapes():
    with pytest.raises(ValueError, match=r"k must have shape \(\.\.\., T, d\) with T = 3 "
                                         r"as in q of shape \(1, 3, 2\)"):
        future_leaks(causal, randn(1, 3, 2), randn(1, 4, 2), randn(1, 4, 2))


# ---------------------------------------------------------------- -inf and fully masked rows


def test_naive_masked_softmax_matches_checked_attention_on_ordinary_rows():
    q, k, v = randn(2, 4, 3), randn(2, 5, 3, seed=1), randn(2, 5, 2, seed=2)
    mask = causal_mask_lower_right(4, 5) & padding_mask([5, 3], 5)
    weights = naive_masked_softmax(scale_scores(attention_scores(q, k), 3), mask)
    _, ref = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(weights, ref, atol=1e-6, rtol=0)


def test_fully_masked_row_nan_naive_zeros_checked_and_torch():
    """The brief's two assertions: the naive masked softmax gives NaN for a query
    with no key, our function and PyTorch's give zeros."""
    q, k, v = randn(1, 3, 4), randn(1, 3, 4, seed=1), randn(1, 3, 2, seed=2)
    mask = torch.tensor([[False, False, False], [True, False, False], [True, True, True]])
    scores = scale_scores(attention_scores(q, k), 4)
    naive = naive_masked_softmax(scores, mask)
    assert naive[0, 0].isnan().all() and not naive[0, 1:].isnan().any()
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.all(out[0, 0] == 0) and torch.all(weights[0, 0] == 0)
    assert torch.all(ref[0, 0] == 0)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    # a finite fill spreads the row evenly over the hidden keys instead
    uniform = naive_masked_softmax(scores, mask, -1e9)
    assert torch.all(uniform[0, 0] == 1 / 3)


def test_nan_from_an_ignored_row_reaches_every_gradient():
    """The page: with the naive softmax, a fully masked query whose output the loss
    ignores still makes every gradient NaN; ours and PyTorch's stay finite."""
    mask = combine_masks(causal_mask(3, 3), padding_mask([2], 3).flip(-1))
    assert mask[0].tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 1]]

    def naive(q):
        scores = scale_scores(attention_scores(q, q), q.shape[-1])
        return weighted_sum(naive_masked_softmax(scores, mask), q)

    for attend, nan in [
        (naive, True),
        (lambda q: scaled_dot_product_attention(q, q, q, mask=mask)[0], False),
        (lambda q: F.scaled_dot_product_attention(q, q, q, attn_mask=mask), False),
    ]:
        q = randn(1, 3, 4, seed=3).requires_grad_()
        out = attend(q)
        out[:, 1:].sum().backward()  # the loss ignores query 0
        assert not out[:, 1:].isnan().any()
        if nan:
            assert out[0, 0].isnan().all() and q.grad.isnan().all()
        else:
            assert torch.all(out[0, 0] == 0) and not q.grad.isnan().any()


def test_float16_fills():
    """The page's float16 facts."""
    assert torch.tensor(-1e9).half().item() == -math.inf
    with pytest.raises(RuntimeError, match="without overflow"):
        torch.zeros(4).half().masked_fill(torch.tensor([0, 0, 0, 1]).bool(), -1e9)
    lowest = torch.tensor(torch.finfo(torch.float16).min).half()
    assert lowest.item() == -65504.0 == -torch.finfo(torch.float16).max
    assert (lowest + torch.tensor(-15.0).half()).item() == -65504.0
    assert (lowest + torch.tensor(-16.0).half()).item() == -math.inf
    assert (lowest + lowest).item() == -math.inf


# ---------------------------------------------------------------- the page's numbers

PAGE = prose(read_page("masks.md"))


def fill_weight(fill):
    """The page's example: four equal scores, the last key blocked."""
    allowed = torch.tensor([True, True, True, False])
    return naive_masked_softmax(torch.zeros(4), allowed, fill)[3].item()


def test_intro_numbers():
    intro = PAGE.split("\n## ", 1)[0]
    weights = naive_masked_softmax(torch.zeros(3), torch.tensor([True, True, False]))
    blocked, total = weights[2].item(), weights.sum().item()
    assert numbers(intro) == [blocked, total, 0]  # e^-inf = 0, sum to 1, M_ij = 0
    assert (blocked, total) == (0.0, 1.0)


def test_causal_section_numbers():
    x = randn(1, 4, 8)
    _, weights = scaled_dot_product_attention(x, x, x, is_causal=True)
    _, encoder = scaled_dot_product_attention(x, x, x)
    assert weights[0, 0, 0].item() == 1.0
    torch.testing.assert_close(weights[0, -1], encoder[0, -1])  # "the last row is the same"
    assert numbers(section(PAGE, "Causal masks for decoders, none for encoders")) == [
        2018, 3.1,  # GPT: Radford et al., 2018, section 3.1
        1,  # "token i + 1"
        2019, 3,  # BERT: Devlin et al., 2019, section 3
        1,  # "with weight 1"
    ]


def test_padding_section_numbers():
    lengths = [4, 2]
    pad = padding_mask(lengths, max_len=4)
    assert pad.shape == (2, 1, 4) and pad[:, None].shape == (2, 1, 1, 4)
    filler = 4 - lengths[1]
    # "size 1", (B, 1, T), (B, 1, 1, T), "4 real tokens", "2 tokens and 2 filler"
    assert numbers(section(PAGE, "Padding masks")) == [1, 1, 1, 1, *lengths, filler]


def test_polarity_section_numbers():
    assert numbers(section(PAGE, "Mask polarity")) == [0]  # a float mask: 0 = may attend


def test_alignment_section_numbers():
    torch.manual_seed(2)
    seq = torch.randn(1, 5, 8)
    cached, new = 3, 2
    full, _ = scaled_dot_product_attention(seq, seq, seq, is_causal=True)
    upper, _ = scaled_dot_product_attention(seq[:, cached:], seq, seq,
                                            mask=causal_mask(new, cached + new))
    gap = round((upper - full[:, cached:]).abs().max().item(), 4)
    version = float(".".join(torch.__version__.split(".")[:2]))
    assert version == 2.13
    t_k = cached + new
    last = t_k - 1
    lower = causal_mask_lower_right(new, t_k)
    assert lower[-1].sum().item() == t_k  # "position 4 must see all 5 keys"
    assert numbers(section(PAGE, "Upper-left or lower-right")) == [
        0, 0,  # keys 0 .. i, keys 0 .. T_k - T_q + i
        cached, new, new, t_k,  # 3 tokens, 2 new, 2 queries and 5 keys
        cached, last, last, t_k, t_k,  # positions 3 and 4, 4 sees all 5; over all 5
        version, gap, version,
    ]
    assert gap == 1.7984


def test_fill_section_numbers():
    assert fill_weight(-1e9) == fill_weight(-1e4) == fill_weight(-math.inf) == 0.0
    # float32 exp underflows to exactly 0 below about -104
    assert torch.exp(torch.tensor(-103.9)).item() > 0
    assert torch.exp(torch.tensor(-104.0)).item() == 0
    leak = float(f"{fill_weight(-10.0):.2e}")
    assert leak == 1.51e-05
    finfo = torch.finfo(torch.float16)
    lowest = torch.tensor(finfo.min).half()
    overflow = next(s for s in range(0, -100, -1)
                    if (lowest + torch.tensor(float(s)).half()).item() == -math.inf)
    even = naive_masked_softmax(torch.zeros(4), torch.zeros(4, dtype=torch.bool), -1e9)
    assert torch.all(even == even[0])
    assert numbers(section(PAGE, "`-inf` or a large negative number")) == [
        -1e9, -1e4, 0, -104,  # fills; "exactly 0 below about -104"
        -1e9, -1e4, -10, leak,  # "-1e9 or -1e4 leaks nothing"; -10 leaves 1.51e-05
        -1e9, finfo.max, -1e9, finfo.min, overflow,  # float16
        0, 0, even[0].item(),  # "0/0", 0.25 each
    ]


def test_fully_masked_section_numbers():
    assert math.isnan(torch.tensor(math.nan).mul(0).item())  # "NaN times 0 is NaN"
    assert numbers(section(PAGE, "Fully masked rows")) == [0, 2.13]


def test_check_yourself_numbers():
    cached, new = 3, 2
    t_k = cached + new
    lower = causal_mask_lower_right(new, t_k)
    upper = causal_mask(new, t_k)
    second_lower = lower[1].nonzero().flatten().tolist()
    second_upper = upper[1].nonzero().flatten().tolist()
    first_upper = upper[0].nonzero().flatten().tolist()
    first_lower = lower[0].nonzero().flatten().tolist()
    assert second_lower == list(range(t_k))
    assert numbers(section(PAGE, "Check yourself")) == [
        cached, new,  # the question
        len(second_lower), second_lower[0], second_lower[-1],  # all 5 keys, 0 to 4
        *second_upper,  # keys 0 and 1
        *first_upper,  # only key 0
        first_lower[0], first_lower[-1],  # keys 0 to 3
    ]


@pytest.mark.parametrize("call, pattern", [
    (lambda: causal_mask_lower_right(True, 2), r"t_q must be a positive int, got True"),
    (lambda: causal_mask_lower_right(2, 0), r"t_k must be a positive int, got 0"),
    (lambda: padding_mask([1], True), r"max_len must be a positive int, got True"),
    (lambda: naive_masked_softmax(torch.zeros(3), torch.ones(3, dtype=torch.bool), 1e39),
     r"fill must be a number in \[-3.40282e\+38, 3.40282e\+38\], got 1e\+39"),
    (lambda: naive_masked_softmax(torch.zeros(3), None), r"mask must be a torch.Tensor"),
    (lambda: attention_with_inverted_mask(*(torch.zeros(2, 3).half(),) * 3,
                                          torch.ones(2, 2, dtype=torch.bool)),
     r"q must have dtype float32 or float64, got float16"),
    (lambda: future_leaks(3, *(torch.zeros(2, 3),) * 3), r"attend must be a function"),
])
def test_masks_refuse_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# ---------------------------------------------------------------- is_causal or a mask

BENCH = json.loads((ROOT / "bench" / "sdpa_mask.json").read_text())
CPU_BACKENDS = (SDPBackend.MATH, SDPBackend.FLASH_ATTENTION)
OTHER_BACKENDS = (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                  SDPBackend.OVERRIDEABLE)


def flat(text):
    return " ".join(prose(text).split())


def qkv4(t=64, seed=4):
    q, k, v = randn(3, 1, 8, t, 16, seed=seed).unbind(0)
    return q, k, v


@pytest.mark.parametrize("kwargs", [{"is_causal": True},
                                    {"attn_mask": causal_mask(64, 64)}],
                         ids=["is_causal", "mask"])
def test_both_ways_run_on_math_and_flash_only_on_this_cpu(kwargs):
    q, k, v = qkv4()
    expected = scaled_dot_product_attention(q, k, v, is_causal=True)[0]
    for backend in CPU_BACKENDS:
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, **kwargs)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    for backend in OTHER_BACKENDS:
        with sdpa_kernel(backend), pytest.raises(RuntimeError):
            F.scaled_dot_product_attention(q, k, v, **kwargs)


def test_both_at_once_raises_on_math_and_is_a_logical_and_on_flash():
    q, k, v = qkv4()
    keep = torch.ones(64, 64, dtype=torch.bool)
    keep[:, 48:] = False
    with sdpa_kernel(SDPBackend.MATH), pytest.raises(
            RuntimeError, match="Explicit attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=True)
    both = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=True)
    torch.testing.assert_close(
        both, F.scaled_dot_product_attention(q, k, v, attn_mask=keep & causal_mask(64, 64)))
    assert not torch.allclose(both, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    with pytest.raises(RuntimeError, match="Explicit attn_mask"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep, is_causal=True,
                                       dropout_p=0.1)
    doc = F.scaled_dot_product_attention.__doc__
    quoted = "An error is thrown if both attn_mask and is_causal are set."
    assert quoted in " ".join(doc.split()) and quoted in flat(PAGE)


def test_fully_masked_rows_are_zeros_on_both_cpu_backends():
    left_pad = padding_mask([2], max_len=3).flip(-1)
    mask = combine_masks(causal_mask(3, 3), left_pad)[:, None]  # (1, 1, 3, 3)
    x = randn(1, 1, 3, 4, seed=3)
    for backend in CPU_BACKENDS:
        q = x.clone().requires_grad_()
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
        out[..., 1:, :].sum().backward()
        assert torch.equal(out[0, 0, 0].detach(), torch.zeros(4))
        assert not q.grad.isnan().any()


def test_the_benchmark_json_is_the_run_the_page_describes():
    cfg, machine = BENCH["config"], BENCH["machine"]
    assert not BENCH["quick"] and machine["command"] == "python -m bench.sdpa_mask"
    assert machine["torch_version"].startswith("2.13.0")
    assert (cfg["B"], cfg["H"], cfg["T"], cfg["head_dim"], cfg["threads"]) == (
        1, 8, 2048, 64, 1)
    assert BENCH["dtype"] == "float32" and all(BENCH["outputs_agree"].values())
    assert BENCH["results"]["default"]["picks"] == {
        "is_causal": "FLASH_ATTENTION", "mask": "FLASH_ATTENTION"}


def test_every_benchmark_number_on_the_page_is_the_json():
    """The section's numbers are the committed run's: T, sizes, medians in ms, the
    ratio, the repeats, then the math backend's medians."""
    cfg, results, machine = BENCH["config"], BENCH["results"], BENCH["machine"]

    def ms(backend, variant):
        return round(results[backend][variant]["median_s"] * 1e3)

    text = section(PAGE, "`is_causal=True` or an explicit mask")
    main = flat(text[:text.index("??? note")])
    ratio = round(results["default"]["ratio_mask_over_is_causal"], 2)
    assert (f"At $T$ = {cfg['T']} (one sequence, {cfg['H']} heads of {cfg['head_dim']}, "
            f"float32, one thread), `is_causal=True` took {ms('default', 'is_causal')} ms "
            f"and the explicit mask {ms('default', 'mask')} ms, {ratio:.2f} times as long "
            f"(medians of {cfg['repeats']} runs).") in main
    assert (f"either way: {ms('math', 'is_causal')} ms with `is_causal=True`, "
            f"{ms('math', 'mask')} ms with the mask.") in main
    assert "picked `FLASH_ATTENTION` for both" in main
    note = flat(text[text.index('??? note "Under the hood: how the times'):])
    load = machine["load_average_at_start"][0]
    assert (f"The committed run: {machine['cpu_model']} CPU, torch "
            f"{machine['torch_version']}, {machine['date_utc'][:10]} (UTC).") in note
    assert f"(load average {load:.1f} at the start)" in note
    assert (f"the median of the per-round ratios, whose two timings ran back to back, was "
            f"{results['default']['median_round_ratio']:.2f} (the ratio of the medians "
            f"above: {ratio:.2f})") in note
    assert numbers(main.split("**Time.**")[1]) == [
        cfg["T"], cfg["H"], cfg["head_dim"],
        ms("default", "is_causal"), ms("default", "mask"), ratio, cfg["repeats"],
        ms("math", "is_causal"), ms("math", "mask"),
    ]
