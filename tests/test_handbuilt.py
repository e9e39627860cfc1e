"""snippets/handbuilt.py: the hand-built head on docs/index.md does what the page says,
and every number the page states is the number the code computes."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from snippets.attention import attention_scores, project, scale_scores
from snippets.handbuilt import (
    FEATURES,
    GENERATED,
    LEXICON,
    SENTENCE,
    embed,
    handbuilt_attention,
    handbuilt_head,
    handbuilt_heatmap_svg,
    head_matrices,
    tokenize,
)
from tests.pages import prose, read_page, section, tables

TOKENS = ["the", "cat", "sat", "on", "the", "mat"]
PAGE = read_page("index.md")
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
        (lambda: embed(["the", "zebra"]), r"tokens must be .*LEXICON.*got \['the', 'zebra'\]"),
        (lambda: embed([]), r"tokens must be a non-empty list.*got \[\]"),
        (lambda: handbuilt_attention("The zebra sat."), r"got \['the', 'zebra', 'sat'\]"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, pattern):
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


def test_heatmap_is_generated_light_and_stable():
    assert GENERATED == {"figures/handbuilt-heatmap.svg": handbuilt_heatmap_svg}
    svg = handbuilt_heatmap_svg()
    assert svg.startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
    # the first thing drawn is the figure's white background
    first_fill = re.search(r"fill:\s*(#[0-9a-f]{6})", svg).group(1)
    assert first_fill == "#ffffff"
    assert "<text" not in svg  # text drawn as paths: no font is loaded
    assert handbuilt_heatmap_svg() == svg  # no date, stable ids: same bytes each build


def test_the_build_hook_finds_the_heatmap():
    from hooks.generated import generators

    assert generators()["figures/handbuilt-heatmap.svg"] is handbuilt_heatmap_svg


def test_the_page_shows_the_heatmap_with_numbers_that_match():
    (alt,) = ALT.findall(PAGE)
    tokens, weights = handbuilt_attention()
    sat, cat, mat, the = (tokens.index(t) for t in ("sat", "cat", "mat", "the"))
    assert f"sat is darkest at cat ({weights[sat, cat]:.2f}) and mat ({weights[sat, mat]:.2f})" in alt
    assert f"both the columns ({weights[sat, the]:.2f})" in alt
    assert f"uniform at {weights[the, 0]:.2f}" in alt
    assert f"darkest at sat ({weights[cat, sat]:.2f})" in alt
    assert "6 by 6" in alt and len(tokens) == 6
