"""snippets/attention.py: the five steps and the checked public function."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from snippets.attention import (
    attention_scores,
    attention_weights,
    causal_mask,
    project,
    scale_scores,
    scaled_dot_product_attention,
    weighted_sum,
)

torch.set_default_dtype(torch.float32)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_five_steps_compose_to_torch_reference():
    x = randn(1, 4, 5)
    w_q, w_k, w_v = randn(5, 3, seed=1), randn(5, 3, seed=2), randn(5, 2, seed=3)
    q, k, v = project(x, w_q, w_k, w_v)
    assert q.shape == k.shape == (1, 4, 3) and v.shape == (1, 4, 2)
    scores = scale_scores(attention_scores(q, k), q.shape[-1])
    assert scores.shape == (1, 4, 4)
    weights = attention_weights(scores)
    out = weighted_sum(weights, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4))


def test_scale_divides_by_root_dk():
    assert scale_scores(torch.tensor([8.0]), 16).item() == 2.0


@pytest.mark.parametrize("is_causal", [False, True])
def test_matches_pytorch_with_leading_dims(is_causal):
    q, k, v = randn(2, 3, 5, 4), randn(2, 3, 5, 4, seed=1), randn(2, 3, 5, 6, seed=2)
    out, weights = scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert weights.shape == (2, 3, 5, 5)
    if is_causal:
        assert torch.all(weights.triu(1) == 0)


def test_boolean_mask_has_pytorch_polarity():
    q, k, v = randn(2, 4, 3), randn(2, 6, 3, seed=1), randn(2, 6, 2, seed=2)
    mask = randn(4, 6, seed=3) > 0
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=0
    )
    assert torch.all(weights[:, ~mask] == 0)  # True = may attend; False gets nothing


def test_key_padding_mask_broadcasts():
    q = randn(2, 3, 4)
    pad = torch.tensor([[True, True, False], [True, False, False]])[:, None, :]  # (B,1,T)
    out, weights = scaled_dot_product_attention(q, q, q, mask=pad)
    assert torch.all(weights[0, :, 2] == 0) and torch.all(weights[1, :, 1:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))


def test_fully_masked_row_gives_zeros_like_pytorch():
    q = randn(1, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    out, weights = scaled_dot_product_attention(q, q, q, mask=mask)
    ref = F.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    assert torch.all(out[0, 1] == 0) and torch.all(weights[0, 1] == 0)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    assert not torch.isnan(out).any()


def test_nan_in_the_input_is_not_hidden():
    """Zeroing fully masked rows must not turn a NaN input into a clean-looking 0."""
    q = randn(1, 2, 3)
    q[0, 0, 0] = float("nan")
    out, _ = scaled_dot_product_attention(q, q, q, mask=torch.ones(2, 2, dtype=torch.bool))
    assert torch.isnan(out).any()


def test_causal_mask_is_upper_left_aligned():
    assert causal_mask(2, 3).tolist() == [[True, False, False], [True, True, False]]


@pytest.mark.parametrize(
    "args, kwargs, pattern",
    [
        ((randn(2, 3), randn(2, 4), randn(2, 3)), {}, r"k must have the same last dimension.*\(2, 4\)"),
        ((randn(2, 3), randn(5, 3), randn(4, 3)), {}, r"v must have one row per key.*\(5, 3\).*\(4, 3\)"),
        ((randn(3), randn(2, 3), randn(2, 3)), {}, r"q must have shape.*\(3,\)"),
        (([[1.0]], randn(2, 3), randn(2, 3)), {}, r"q must be a torch.Tensor, got list"),
        ((torch.ones(2, 3, dtype=torch.long), randn(2, 3), randn(2, 3)), {}, r"q must be a floating-point.*int64"),
        ((randn(2, 2, 3), randn(3, 2, 3), randn(3, 2, 3)), {}, r"broadcastable batch dimensions"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.zeros(2, 2)}, r"mask must be a boolean tensor.*torch.float32"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": [[True]]}, r"mask must be a boolean tensor.*list"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(3, 2, dtype=torch.bool)}, r"mask of shape \(3, 2\) cannot broadcast.*\(2, 2\)"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(4, 2, 2, dtype=torch.bool)}, r"mask of shape \(4, 2, 2\) cannot broadcast.*\(2, 2\)"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(2, 2, dtype=torch.bool), "is_causal": True}, r"mask and is_causal=True were both given"),
        # a mask with a batch the inputs do not have would silently grow the output
        ((randn(1, 2, 3), randn(1, 2, 3), randn(1, 2, 3)), {"mask": torch.ones(2, 2, 2, dtype=torch.bool)}, r"mask of shape \(2, 2, 2\) cannot broadcast.*\(1, 2, 2\)"),
    ],
)
def test_bad_input_is_a_clear_value_error(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        scaled_dot_product_attention(*args, **kwargs)


shapes = st.tuples(
    st.integers(0, 3), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7),
    st.integers(1, 6), st.integers(1, 5),
)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), scale=st.floats(0.1, 10.0),
       causal=st.booleans())
def test_properties(shape, seed, scale, causal):
    """Weights are a probability distribution per row, the output equals PyTorch's,
    and each batch element's result does not depend on the rest of the batch."""
    nbatch, heads, t_q, t_k, d_k, d_v = shape
    batch = (nbatch, heads) if nbatch else (heads,)
    q = randn(*batch, t_q, d_k, seed=seed) * scale
    k = randn(*batch, t_k, d_k, seed=seed + 1) * scale
    v = randn(*batch, t_k, d_v, seed=seed + 2)
    out, weights = scaled_dot_product_attention(q, k, v, is_causal=causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert torch.all(weights >= 0)
    # upper-left causal alignment: query i sees keys 0..i, so every row has a key
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    for i in range(batch[0]):
        alone, _ = scaled_dot_product_attention(q[i], k[i], v[i], is_causal=causal)
        # the same numbers, summed in a different order by another matmul kernel
        torch.testing.assert_close(alone, out[i], atol=1e-5, rtol=1e-5)
    assert math.isfinite(out.sum().item())


def test_home_page_states_the_shapes_its_code_prints():
    """The prose's "batch of 1 sequence of 4 tokens ... width 5" must be the shapes
    that the page's example prints (its printed output is checked by the harness)."""
    import re

    from tests import harness
    from tests.pages import numbers, prose, read_page, section

    stated = numbers(prose(section(read_page("index.md"), "The five steps, in code")))
    assert stated[:3] == [1.0, 4.0, 5.0]  # B, T, d_model; the last 1 is 1/sqrt(d_model)
    printed = "".join(
        p.expected_output or ""
        for b in harness.collect_page(harness.DOCS / "index.md")
        for p in b.pieces
    )
    weights = re.search(r"^weights \((\d+), (\d+), (\d+)\)$", printed, re.M).groups()
    output = re.search(r"^output \((\d+), (\d+), (\d+)\)$", printed, re.M).groups()
    assert [int(n) for n in weights] == [1, 4, 4]  # (B, T, T)
    assert [int(n) for n in output] == [int(n) for n in stated[:3]]  # (B, T, d_model)
