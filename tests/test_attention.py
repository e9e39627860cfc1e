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


import math
import re

import pytest
import torch
import torch.nn.functional as F

from snippets.attention import attention_scores, project, scale_scores
from snippets.attention import (
    FEATURES,
    LEXICON,
    SENTENCE,
    embed,
    handbuilt_attention,
    handbuilt_head,
    head_matrices,
    tokenize,
)
from tests.pages import prose, read_page, section, tables

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
        ((randn(2, 3), randn(2, 4), randn(2, 3)), {}, r"k must have shape \(\.\.\., T_k, d_k\) with d_k = 3 as in q of shape \(2, 3\), got shape \(2, 4\)"),
        ((randn(2, 3), randn(5, 3), randn(4, 3)), {}, r"v must have shape \(\.\.\., T_k, d_v\) with T_k = 5 as in k of shape \(5, 3\), got shape \(4, 3\)"),
        ((randn(3), randn(2, 3), randn(2, 3)), {}, r"q must have shape \(\.\.\., T_q, d_k\), got shape \(3,\)"),
        (([[1.0]], randn(2, 3), randn(2, 3)), {}, r"q must be a torch.Tensor of shape \(\.\.\., T_q, d_k\), got list"),
        ((torch.ones(2, 3, dtype=torch.long), randn(2, 3), randn(2, 3)), {}, r"q must have dtype float16, bfloat16, float32 or float64, got int64"),
        ((randn(2, 3), randn(2, 3).double(), randn(2, 3)), {}, r"k must have the dtype of q, float32, got float64"),
        ((randn(2, 3), randn(2, 3), torch.zeros(2, 3, device="meta")), {}, r"v must be on the device of q, cpu, got meta"),
        ((randn(2, 2, 3), randn(3, 2, 3), randn(3, 2, 3)), {}, r"q, k and v must have leading \(batch\) dimensions that broadcast together, got \(2,\), \(3,\) and \(3,\)"),
        ((randn(2, 0), randn(2, 0), randn(2, 3)), {}, r"q must have d_k >= 1 features .*got shape \(2, 0\)"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"is_causal": "no"}, r"is_causal must be True or False, got 'no'"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"is_causal": 1}, r"is_causal must be True or False, got 1"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.zeros(2, 2)}, r"mask must be a boolean tensor.*torch.float32"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": [[True]]}, r"mask must be a boolean tensor.*list"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(3, 2, dtype=torch.bool)}, r"mask must broadcast to the scores' shape \(\.\.\., T_q, T_k\) = \(2, 2\) with at least 2 dimensions, got shape \(3, 2\)"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(4, 2, 2, dtype=torch.bool)}, r"mask must broadcast.* = \(2, 2\) .*got shape \(4, 2, 2\)"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(2, dtype=torch.bool)}, r"mask must broadcast.* with at least 2 dimensions, got shape \(2,\)"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(2, 2, dtype=torch.bool, device="meta")}, r"mask must be on the device of q, cpu, got meta"),
        ((randn(2, 3), randn(2, 3), randn(2, 3)), {"mask": torch.ones(2, 2, dtype=torch.bool), "is_causal": True}, r"mask must be None when is_causal=True"),
        # a mask with a batch the inputs do not have would silently grow the output
        ((randn(1, 2, 3), randn(1, 2, 3), randn(1, 2, 3)), {"mask": torch.ones(2, 2, 2, dtype=torch.bool)}, r"mask must broadcast.* = \(1, 2, 2\) .*got shape \(2, 2, 2\)"),
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

    stated = numbers(prose(section(read_page("attention.md"), "The five steps, in code")))
    assert stated[:3] == [1.0, 4.0, 5.0]  # B, T, d_model; the last 1 is 1/sqrt(d_model)
    printed = "".join(
        p.expected_output or ""
        for b in harness.collect_page(harness.DOCS / "attention.md")
        for p in b.pieces
    )
    weights = re.search(r"^weights \((\d+), (\d+), (\d+)\)$", printed, re.M).groups()
    output = re.search(r"^output \((\d+), (\d+), (\d+)\)$", printed, re.M).groups()
    assert [int(n) for n in weights] == [1, 4, 4]  # (B, T, T)
    assert [int(n) for n in output] == [int(n) for n in stated[:3]]  # (B, T, d_model)


# ---- the page: snippets/attention.py: the hand-built head on docs/attention.md does what the page says,
TOKENS = ["the", "cat", "sat", "on", "the", "mat"]
PAGE = read_page("attention.md")
HANDBUILT = prose(section(PAGE, "A head built by hand"))


@pytest.fixture(scope="module")
def head():
    tokens, output, weights = handbuilt_head()
    q, k, v = project(embed(tokens), *head_matrices())
    scaled = scale_scores(attention_scores(q, k), q.shape[-1])
    return tokens, output, weights, q, k, scaled


def test_tokens_drop_the_full_stop_and_the_capital():
    assert tokenize(SENTENCE) == TOKENS
    assert tokenize("A dog, on the mat!") == ["a", "dog", "on", "the", "mat"]


def test_sat_gives_cat_and_mat_more_weight_than_either_the():
    """The article's claim, for both occurrences of "the"."""
    tokens, weights = handbuilt_attention()
    sat, cat, mat = tokens.index("sat"), tokens.index("cat"), tokens.index("mat")
    the = [i for i, t in enumerate(tokens) if t == "the"]
    assert the == [0, 4]
    for j in the:
        assert weights[sat, cat] > weights[sat, j]
        assert weights[sat, mat] > weights[sat, j]
    # and the reason the page gives: cat is animate, so it beats mat
    assert weights[sat, cat] > weights[sat, mat]


def test_weights_are_a_distribution_per_row_and_match_pytorch(head):
    tokens, output, weights, q, k, _ = head
    assert tokens == TOKENS and weights.shape == (6, 6) and output.shape == (6, 5)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    _, _, v = project(embed(tokens), *head_matrices())
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v))
    assert handbuilt_attention()[1].equal(weights)


def test_a_zero_query_averages_and_the_output_blends_features(head):
    tokens, output, weights, q, _, _ = head
    assert torch.all(q[0] == 0) and torch.allclose(weights[0], torch.full((6,), 1 / 6))
    sat = tokens.index("sat")
    # identity values: the output row of sat is the weighted average of the features
    torch.testing.assert_close(output[sat], weights[sat] @ embed(tokens))
    noun, animate = FEATURES.index("noun"), FEATURES.index("animate")
    torch.testing.assert_close(output[sat, noun], weights[sat, 1] + weights[sat, 5])
    torch.testing.assert_close(output[sat, animate], weights[sat, 1])


def test_weights_follow_the_words_not_their_positions():
    """No position information: reordering the words permutes the weight matrix."""
    tokens, weights = handbuilt_attention()
    swapped, swapped_weights = handbuilt_attention("The mat sat on the cat.")
    perm = [tokens.index(t) if t != "the" else i for i, t in enumerate(swapped)]
    assert perm == [0, 5, 2, 3, 4, 1]
    torch.testing.assert_close(swapped_weights, weights[perm][:, perm])  # up to rounding


def test_head_matrices_have_the_stated_shapes_and_are_fresh():
    w_q, w_k, w_v = head_matrices()
    assert w_q.shape == w_k.shape == (5, 3) and w_v.shape == (5, 5)
    assert len(FEATURES) == 5 and all(len(row) == 5 for row in LEXICON.values())
    w_q[:] = 0  # a caller scribbling on its copy does not change the head
    assert head_matrices()[0].abs().sum() > 0


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: tokenize(3), r"sentence must be a str, got int"),
        (lambda: tokenize(" . "), r"sentence must contain at least one word, got ' \. '"),
        (lambda: embed(["the", "zebra"]), r"tokens must be a non-empty list of words from \(the, a, cat.*got \['the', 'zebra'\]"),
        (lambda: embed([]), r"tokens must be a non-empty list.*got \[\]"),
        (lambda: handbuilt_attention("The zebra sat."), r"got \['the', 'zebra', 'sat'\]"),
    ],
)
def test_handbuilt_bad_input_is_a_clear_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# ---- the page states the numbers the code computes -------------------------------


def test_the_page_table_is_the_computed_matrix(head):
    tokens, _, weights, _, _, _ = head
    (table,) = [t for t in tables(HANDBUILT) if t[0][1:] == tokens]
    rows = table[1:]
    assert [r[0].strip("*") for r in rows] == tokens
    for i, row in enumerate(rows):
        assert row[1:] == [f"{w:.4f}" for w in weights[i].tolist()], row


def test_every_four_decimal_number_in_the_prose_is_computed(head):
    tokens, output, weights, _, _, scaled = head
    computed = {f"{x:.4f}" for t in (weights, output, scaled) for x in t.flatten().tolist()}
    stated = re.findall(r"\d+\.\d{4}", HANDBUILT)
    assert len(stated) > 40  # the table, the prose and the formula
    assert set(stated) <= computed, set(stated) - computed


def test_the_claims_about_sat_quote_the_computed_numbers(head):
    tokens, output, weights, q, k, scaled = head
    sat = tokens.index("sat")
    cat, mat, the = tokens.index("cat"), tokens.index("mat"), tokens.index("the")
    text = " ".join(HANDBUILT.split())
    fmt = lambda v: f"{v:.4f}"  # noqa: E731
    query = "(" + ", ".join(f"{v:g}" for v in q[sat].tolist()) + ")"
    assert f"The query of **sat** is its verb row of $W_q$, ${query}$" in text
    assert f"The key of **cat** (noun, animate) is $({', '.join(f'{v:g}' for v in k[cat])})$" in text
    assert f"the key of **mat** (noun) is $({', '.join(f'{v:g}' for v in k[mat])})$" in text
    dots = attention_scores(q, k)[sat]
    assert f"dot products are {dots[cat]:g}, {dots[mat]:g} and {dots[the]:g}" in text
    assert f"\\frac{{{dots[cat]:g}}}{{\\sqrt 3}} \\approx {fmt(scaled[sat, cat])}" in text
    assert f"\\frac{{{dots[mat]:g}}}{{\\sqrt 3}} \\approx {fmt(scaled[sat, mat])}" in text
    gap = (scaled[sat, cat] - scaled[sat, the]).item()
    ratio = (weights[sat, cat] / weights[sat, the]).item()
    assert math.isclose(ratio, math.exp(gap), rel_tol=1e-5)
    assert f"gap of {gap:.4f} between" in text
    assert f"$e^{{{gap:.4f}}} \\approx {ratio:.1f}$" in text
    assert (
        f"**sat** gives **cat** {fmt(weights[sat, cat])} of its attention, **mat** "
        f"{fmt(weights[sat, mat])}, and each **the** only {fmt(weights[sat, the])}"
    ) in text
    assert f"$1/6 \\approx {1 / 6:.4f}$" in text and torch.allclose(weights[0], weights[0, 0])
    assert f"give **sat** {fmt(weights[cat, sat])}" in text
    on = tokens.index("on")
    assert f"**on** prefers **mat** ({fmt(weights[on, mat])}) to **cat** ({fmt(weights[on, cat])})" in text
    assert weights[on, mat] > weights[on, cat]
    noun, animate = output[sat, FEATURES.index("noun")], output[sat, FEATURES.index("animate")]
    assert (
        f"Its *noun* entry, {fmt(noun)}, is the weight it gave the two nouns "
        f"({fmt(weights[sat, cat])} + {fmt(weights[sat, mat])})"
    ) in text
    assert f"*animate* entry, {fmt(animate)}, is the weight it gave **cat**" in text
    assert f"$d_\\text{{model}} = {len(FEATURES)}$" in text
    assert f"$d_k = {q.shape[-1]}$ slots" in text
    assert f"the ${len(tokens)} \\times {len(tokens)}$ weights" in text


def test_the_check_yourself_answer_holds_for_the_hand_built_head(head):
    """The answer: the two "the" have one embedding, so one key, so one column."""
    tokens, _, weights, _, k, _ = head
    assert torch.equal(embed(["the"]), embed(["the"])) and torch.equal(k[0], k[4])
    torch.testing.assert_close(weights[:, 0], weights[:, 4], atol=0, rtol=0)
    answer = " ".join(PAGE[PAGE.index('??? question "Check yourself'):].split())
    assert "Two equal keys get equal scores from *every* query" in answer


# ---- the figure ---------------------------------------------------------------------

ALT = re.compile(r"!\[([^\]]+)\]\(figures/handbuilt-heatmap\.svg\)")


def test_the_page_shows_the_heatmap_with_numbers_that_match():
    (alt,) = ALT.findall(PAGE)
    tokens, weights = handbuilt_attention()
    sat, cat, mat, the = (tokens.index(t) for t in ("sat", "cat", "mat", "the"))
    assert f"sat is darkest at cat ({weights[sat, cat]:.2f}) and mat ({weights[sat, mat]:.2f})" in alt
    assert f"both the columns ({weights[sat, the]:.2f})" in alt
    assert f"uniform at {weights[the, 0]:.2f}" in alt
    assert f"darkest at sat ({weights[cat, sat]:.2f})" in alt
    assert "6 by 6" in alt and len(tokens) == 6


@pytest.mark.parametrize("args, pattern", [
    ((-1, 3), r"t_q must be a non-negative int, got -1"),
    ((2, True), r"t_k must be a non-negative int, got True"),
    ((2, 3.0), r"t_k must be a non-negative int, got 3.0"),
    ((2, 3, "nope"), r"device must be None or a device torch can use here"),
])
def test_causal_mask_refuses_bad_sizes_and_devices(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        causal_mask(*args)


def test_a_query_whose_every_score_is_minus_inf_gets_zeros_like_pytorch():
    """An infinite input can make every score of a row -inf without any mask; torch
    gives that row zero weights, and so does this function (not a 0/0 NaN)."""
    q = torch.tensor([[[1.0], [-1.0]]])  # (1, 2, 1)
    k = torch.tensor([[[-math.inf], [-math.inf]]])  # every score of query 0 is -inf
    v = torch.tensor([[[1.0], [2.0]]])
    out, weights = scaled_dot_product_attention(q, k, v)
    assert torch.equal(out[0, 0], torch.zeros(1)) and torch.equal(weights[0, 0],
                                                                   torch.zeros(2))
    torch.testing.assert_close(out[0, 0], F.scaled_dot_product_attention(q, k, v)[0, 0])


@pytest.mark.parametrize("call, pattern", [
    (lambda: project(randn(2, 4), randn(3, 2), randn(3, 2), randn(3, 2)),
     r"w_q must have shape \(d_model, d_k\) with d_model = 4 as in x"),
    (lambda: attention_scores(randn(2, 4), randn(3, 5)), r"k must have shape"),
    (lambda: scale_scores(randn(2, 2), 0), r"d_k must be a positive int, got 0"),
    (lambda: scale_scores([1.0], 4), r"scores must be a torch.Tensor"),
    (lambda: attention_weights(torch.tensor(1.0)), r"scores must have shape "
     r"\(\.\.\., T_k\), got shape \(\)"),
    (lambda: weighted_sum(randn(2, 3), randn(2, 4)), r"v must have shape "
     r"\(\.\.\., T_k, d_v\) with T_k = 3 as in weights"),
])
def test_the_steps_refuse_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
