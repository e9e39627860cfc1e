"""snippets/numerical_example.py and the numbers on docs/numerical-example.md.

Every number written in the page's prose, math and tables is compared, in page order,
with the value the snippets code computes, formatted the way the page writes it
(``fmt``: whole numbers bare, everything else to 4 decimals). A changed number on the
page or in the code, a number added, dropped or moved, fails one of these tests.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from snippets.attention import (
    attention_scores,
    attention_weights,
    scale_scores,
    weighted_sum,
)
from snippets.numerical_example import (
    fmt,
    scaling_example,
    softmax_by_hand,
    worked_example,
)
from tests import pages

PAGE = "numerical-example.md"
W = worked_example()


def flat(t) -> list[str]:
    """A tensor's entries, row by row, as the page writes them."""
    return [fmt(v) for v in torch.as_tensor(t).flatten().tolist()]


def tokens(text: str) -> list[str]:
    """The numbers a reader sees in ``text``: prose, math and tables, not code
    blocks, and not the digits of a link target such as ``#...-d_k-4``."""
    text = re.sub(r"\]\([^)\s]*\)", "]", pages.prose(text))
    return pages.NUMBER.findall(text)


def own_text(heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    body = pages.section(pages.read_page(PAGE), heading)
    return re.split(r"^#", body, maxsplit=1, flags=re.M)[0]


def assert_numbers(heading: str, expected: list[str]) -> None:
    got = tokens(own_text(heading))
    assert got == expected, f"numbers under {heading!r}:\n page {got}\n code {expected}"


# The snippets code itself.


def test_worked_example_matches_pytorch_and_the_site_functions():
    q, k, v = W["q"], W["k"], W["v"]
    assert torch.equal(q, W["x"]) and torch.equal(k, W["x"]) and torch.equal(v, W["x"])
    assert W["x"].shape == (3, 1) and W["d_k"] == 1 and W["scale"] == 1.0
    assert W["scores"].tolist() == [[1, 2, 3], [2, 4, 6], [3, 6, 9]]
    assert torch.equal(W["scaled"], W["scores"])  # dividing by sqrt(1) changes nothing
    torch.testing.assert_close(W["weights"], attention_weights(W["scaled"]))
    torch.testing.assert_close(W["exps"] / W["sums"], W["weights"])
    torch.testing.assert_close(W["output"], F.scaled_dot_product_attention(q, k, v))
    assert W["output"].dtype == torch.float64 and W["sums"].shape == (3, 1)


def test_worked_example_exponentials_need_float64():
    """The page says float32 would print e^9 as 8103.0840 and e^4 as 54.5981;
    float64 gives the correctly rounded 8103.0839 and 54.5982."""
    assert f"{math.exp(9):.4f}" == flat(W["exps"])[8] == "8103.0839"
    assert f"{math.exp(4):.4f}" == flat(W["exps"])[4] == "54.5982"
    exps32 = torch.exp(W["scores"].float())
    assert f"{exps32[2, 2].item():.4f}" == "8103.0840"
    assert f"{exps32[1, 1].item():.4f}" == "54.5981"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-6, 6, allow_nan=False), min_size=1, max_size=6))
def test_worked_example_for_any_scalar_embeddings(embeddings):
    stages = worked_example(embeddings)
    x = torch.tensor(embeddings, dtype=torch.float64)[:, None]
    torch.testing.assert_close(stages["scores"], x @ x.T)
    ref = F.scaled_dot_product_attention(x, x, x)
    torch.testing.assert_close(stages["output"], ref)
    torch.testing.assert_close(stages["weights"].sum(-1), torch.ones(len(embeddings),
                                                                    dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**16))
def test_softmax_by_hand_is_softmax(t_q, t_k, seed):
    scores = torch.randn(2, t_q, t_k, generator=torch.Generator().manual_seed(seed)) * 3
    exps, sums, weights = softmax_by_hand(scores)
    assert exps.shape == weights.shape == (2, t_q, t_k) and sums.shape == (2, t_q, 1)
    torch.testing.assert_close(weights, torch.softmax(scores, dim=-1))
    torch.testing.assert_close(sums[..., 0], torch.exp(scores).sum(-1))


@pytest.mark.parametrize("bad", [(), [[1.0, 2.0]], 3.0])
def test_worked_example_rejects_non_flat_input(bad):
    with pytest.raises(ValueError, match=r"embeddings must be a non-empty flat sequence"):
        worked_example(bad)


def test_scaling_example():
    ex = scaling_example()
    assert ex["d_k"] == 4 and ex["x"].shape == (3, 4)
    assert ex["scores"].tolist() == [[2, 0, 2], [0, 2, 2], [2, 2, 4]]
    torch.testing.assert_close(ex["scaled"], ex["scores"] / 2)
    torch.testing.assert_close(ex["weights_unscaled"], torch.softmax(ex["scores"], -1))
    torch.testing.assert_close(ex["weights_scaled"], torch.softmax(ex["scores"] / 2, -1))
    x = ex["x"]
    ref = F.scaled_dot_product_attention(x, x, x)  # PyTorch divides by sqrt(4) too
    torch.testing.assert_close(ex["weights_scaled"] @ x, ref)


def test_fmt():
    assert fmt(3.0) == "3" and fmt(torch.tensor(0.0)) == "0" and fmt(0.09003) == "0.0900"
    assert fmt(-2.5) == "-2.5000"


# The page, section by section.


def test_intro_numbers():
    intro = pages.read_page(PAGE).split("\n## ", 1)[0]
    assert tokens(intro) == flat(W["x"])


def test_which_reading_numbers():
    t, one, x = str(W["x"].shape[0]), fmt(W["d_k"]), flat(W["x"])
    width = str(len(x))  # the other reading: one token whose width is the list's length
    assert_numbers("Which reading of the example", [
        t, *x,  # "A 3-word sequence with scalar embeddings [1, 2, 3]"
        one, *x, t, one,  # width 1; x as a column; T = 3, d_model = 1
        one, one, fmt(W["q"][0, 0] / W["x"][0, 0]), one,  # 1 x 1 identity [1]; d_k = d_v
        width, t, t, width, one, one,  # one token of width 3; 3 x 3; 1 x 1
    ])


def test_other_reading_numbers_and_claims():
    x = W["x"].T  # (1, 3): one token of width 3
    scores = attention_scores(x, x)  # (1, 1)
    scaled = scale_scores(scores, x.shape[-1])
    weights = attention_weights(scaled)
    output = weighted_sum(weights, x)
    assert torch.equal(output, x) and weights.item() == 1.0
    products = [p for v in flat(x) for p in (v, v)]  # 1 . 1 + 2 . 2 + 3 . 3
    assert_numbers("The other reading: one token of width 3", [
        *products, fmt(scores.item()), str(x.shape[-1]), fmt(scaled.item()),
        fmt(weights.item()),
    ])


def test_step_1_scores_numbers():
    x = flat(W["x"])
    assert_numbers("Step 1: the scores", [*x, *x, *flat(W["scores"])])


def test_step_2_scale_numbers():
    d_k, scale = fmt(W["d_k"]), fmt(W["scale"])
    assert_numbers("Step 2: the scale", [d_k, d_k, scale])


def test_step_3_softmax_numbers():
    exps, sums, weights = W["exps"], W["sums"], W["weights"]
    table_rows = []
    for i in range(3):
        table_rows += [fmt(W["x"][i, 0]), *flat(W["scaled"][i]), *flat(exps[i]),
                       fmt(sums[i, 0]), *flat(weights[i])]
    rounded = [[round(float(w), 4) for w in row] for row in weights.tolist()]
    rounded_exps = [[round(float(e), 4) for e in row] for row in exps.tolist()]
    shifted = W["scaled"][2] - W["scaled"][2].max()  # last row minus its max score
    s_exps, s_sum, s_weights = softmax_by_hand(shifted)
    torch.testing.assert_close(s_weights, weights[2])  # the shift changes nothing
    overflow = 89
    assert torch.isinf(torch.exp(torch.tensor(float(overflow))))  # float32
    assert torch.isfinite(torch.exp(torch.tensor(float(overflow - 1))))
    assert int(weights.argmax(-1).unique().item()) == 2  # every row: token 3
    assert_numbers("Step 3: softmax, row by row", [
        *flat(W["scaled"][0]), *flat(W["scaled"][0]),  # e^1, e^2, e^3 twice
        *flat(exps[0]), fmt(sums[0, 0]), *flat(weights[0]),
        *table_rows,
        fmt(weights[0, 2]), "3", fmt(weights[0, 0]), fmt(weights[2, 2]),
        # rounding warning
        f"{sum(rounded[0]):.4f}", fmt(weights[0].sum()),
        f"{sum(rounded_exps[1]):.4f}", fmt(sums[1, 0]),
        # big exponentials tip
        fmt(W["scaled"][2, 2]), fmt(exps[2, 2]), fmt(W["scaled"].max()), str(overflow),
        *flat(shifted), *flat(s_exps), fmt(s_sum), *flat(weights[2]),
    ])
    assert f"{sum(rounded[0]):.4f}" == "0.9999"  # the warning's point
    assert f"{sum(rounded_exps[1]):.4f}" != fmt(sums[1, 0])


def test_step_3_table_cells():
    table = pages.tables(own_text("Step 3: softmax, row by row"))[0]
    header, *rows = table
    assert header == ["query", "scores", "$e^{s}$ for each score", "row sum", "weights"]
    assert rows == [
        [f"$x_{i + 1} = {fmt(W['x'][i, 0])}$", ", ".join(flat(W["scaled"][i])),
         ", ".join(flat(W["exps"][i])), fmt(W["sums"][i, 0]),
         ", ".join(flat(W["weights"][i]))]
        for i in range(3)
    ]


def test_step_4_weighted_sum_numbers():
    weights, v, out = W["weights"], flat(W["v"]), W["output"]
    math_rows = []
    for i in range(3):
        for w, value in zip(flat(weights[i]), v):
            math_rows += [w, value]
        math_rows.append(fmt(out[i, 0]))
    table = []
    for i in range(3):
        table += [str(i + 1), fmt(W["x"][i, 0]), fmt(out[i, 0])]
    by_hand = [
        f"{sum(round(float(w), 4) * float(x) for w, x in zip(row, W['v'][:, 0])):.4f}"
        for row in weights
    ]
    assert by_hand[0] == "2.5750" != fmt(out[0, 0])  # the note's point
    six = [f"{w:.6f}" for w in weights[0].tolist()]
    assert f"{sum(float(w) * x for w, x in zip(six, (1, 2, 3))):.4f}" == fmt(out[0, 0])
    lo, hi = fmt(W["v"].min()), fmt(W["v"].max())
    assert W["v"].min() <= out.min() and out.max() <= W["v"].max()
    assert_numbers("Step 4: the weighted sum of the values", [
        *v, *math_rows, *table,
        *v, lo, hi, "3", hi,  # between 1 and 3; leans on token 3; close to 3
        fmt(W["x"][0, 0]), fmt(out[0, 0]), "3",  # moved from 1 to 2.5752; token 3
        by_hand[0], by_hand[0], *six, fmt(out[0, 0]), *by_hand,  # the note
        "3", "3", *flat(W["x"]),  # figure alt text: 3 by 3, x₁=1, x₂=2, x₃=3
        *[fmt(weights[i].max()) for i in range(3)],
    ])


def test_step_4_table_cells():
    table = pages.tables(own_text("Step 4: the weighted sum of the values"))[0]
    assert table[0] == ["token", "input $x_i$", "output $o_i$"]
    assert table[1:] == [
        [str(i + 1), fmt(W["x"][i, 0]), fmt(W["output"][i, 0])] for i in range(3)
    ]


def test_from_code_section_numbers():
    exps32 = torch.exp(W["scores"].float())
    assert_numbers("The same numbers from code", [
        fmt(W["scores"][2, 2]), f"{exps32[2, 2].item():.4f}",
        fmt(W["scores"][1, 1]), f"{exps32[1, 1].item():.4f}",
    ])


def test_scaling_section_numbers():
    ex = scaling_example()
    d_k, root = fmt(ex["d_k"]), fmt(math.sqrt(ex["d_k"]))
    shared = (ex["x"][0] * ex["x"][1]).sum().item()
    assert shared == 0 and ex["x"][2].tolist() == [1, 1, 1, 1]  # "share no feature"
    assert_numbers("When the scale matters: d_k = 4", [
        fmt(W["d_k"]), fmt(W["scale"]),
        *flat(ex["x"]), d_k, root,
        "1", "2", "3", root,
        *flat(ex["scores"]), *flat(ex["scaled"]),
    ])


def test_scaling_weights_by_hand_numbers():
    ex = scaling_example()
    un = softmax_by_hand(ex["scores"])
    sc = softmax_by_hand(ex["scaled"])
    torch.testing.assert_close(un[2], ex["weights_unscaled"])
    torch.testing.assert_close(sc[2], ex["weights_scaled"])
    for weights in (ex["weights_unscaled"], ex["weights_scaled"]):  # row 2 = row 1 swapped
        torch.testing.assert_close(weights[1], weights[0][[1, 0, 2]])

    def row(stage, i):
        exps, sums, weights = stage
        return [*flat(exps[i]), fmt(sums[i, 0]), *flat(weights[i])]

    table = []
    for i in range(3):
        table += [str(i + 1), *flat(ex["weights_unscaled"][i]),
                  *flat(ex["weights_scaled"][i])]
    wu, ws = ex["weights_unscaled"], ex["weights_scaled"]
    # the order stays: a key preferred to another without the scale is with it
    assert torch.equal(wu[:, :, None] > wu[:, None, :], ws[:, :, None] > ws[:, None, :])
    # each ratio of two weights in a row becomes its square root
    ratio_un = wu[:, :, None] / wu[:, None, :]
    torch.testing.assert_close(ws[:, :, None] / ws[:, None, :], ratio_un.sqrt())
    diff = ex["scores"][0, 0] - ex["scores"][0, 1]
    assert_numbers("The weights by hand", [
        "1", *flat(ex["scores"][0]), *row(un, 0),
        *flat(ex["scaled"][0]), *row(sc, 0),
        "2", "1", "3", *row(un, 2)[:7], *row(sc, 2)[:7],
        *table,
        fmt(wu[2].max()), fmt(ws[2].max()), "3", fmt(wu[0].max()), fmt(ws[0].max()),
        "1", "2", fmt(wu.min()), fmt(ws.min()),
        "1", "1", "2", fmt(diff), fmt(wu[0, 0] / wu[0, 1]),
        fmt(diff / 2), fmt(ws[0, 0] / ws[0, 1]), fmt(math.sqrt(ex["d_k"])),
    ])
    assert fmt(wu[0, 1]) == fmt(wu.min()) and fmt(ws[0, 1]) == fmt(ws.min())
    header, *cells = pages.tables(own_text("The weights by hand"))[0]
    assert header == ["query", "weights without the scale", "weights with the scale"]
    assert cells == [[f"token {i + 1}", ", ".join(flat(wu[i])), ", ".join(flat(ws[i]))]
                     for i in range(3)]


def test_check_yourself_numbers():
    double = worked_example((2.0, 4.0, 6.0))
    factor = double["scores"] / W["scores"]
    assert torch.all(factor == 4)
    twice = 2 * W["output"][0, 0]
    assert fmt(double["output"][0, 0]) != fmt(twice)  # it does not double
    assert_numbers("The weights from code", [
        fmt(factor[0, 0]), *flat(double["scores"][0]), *flat(W["scores"][0]),
        *flat(W["weights"][0]), *flat(double["weights"][0]),
        fmt(double["output"][0, 0]), fmt(W["output"][0, 0]), fmt(twice),
    ])


@pytest.mark.parametrize("value, pattern", [
    (torch.tensor([1.0, 2.0]), r"value must be one number, got a tensor of shape \(2,\)"),
    ([1.0], r"value must be a number or a tensor, got list"),
    ("1.5", r"value must be a number or a tensor, got str"),
    (True, r"value must be real numbers .*got True"),
    (torch.tensor(1.0, device="meta"), r"value must hold values"),
])
def test_fmt_refuses_what_is_not_one_number(value, pattern):
    with pytest.raises(ValueError, match=pattern):
        fmt(value)


def test_fmt_takes_numbers_and_one_element_tensors():
    assert [fmt(3), fmt(2.5), fmt(torch.tensor([0.25])), fmt(float("nan"))] == [
        "3", "2.5000", "0.2500", "nan"]


@pytest.mark.parametrize("embeddings, pattern", [
    ([[1.0, 2.0]], r"embeddings must be a non-empty flat sequence"),
    ([], r"embeddings must be a non-empty flat sequence"),
    (["a"], r"embeddings must be real numbers"),
])
def test_worked_example_refuses_what_is_not_one_number_per_token(embeddings, pattern):
    with pytest.raises(ValueError, match=pattern):
        worked_example(embeddings)
