"""snippets/diagram.py: the SVG diagram, its shape labels, and docs/diagram.md.

The SVG is parsed as XML and its text compared with ``worked_example()``: every number
of every stage must be drawn, formatted as the pages write it, and no other number may
be. The arrows' shape labels are checked by running the steps with four different
sizes. The page's text alternative (a table) and the numbers in its prose are compared
with the same code.
"""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snippets.diagram import (
    SHAPES,
    arrow,
    box,
    diagram_svg,
    plain,
    shape_label,
    stage_shapes,
    svg_text,
)
from snippets.numerical_example import fmt, worked_example
from tests import pages

PAGE = "diagram.md"
NS = {"svg": "http://www.w3.org/2000/svg"}
W = worked_example()
SIZES = {"T": 3, "d_model": 1, "d_k": 1, "d_v": 1}  # the numerical example's sizes
NUMBER_ONLY = re.compile(r"-?\d+(\.\d+)?")


@pytest.fixture(scope="module")
def svg() -> str:
    return diagram_svg()


@pytest.fixture(scope="module")
def texts(svg) -> list[tuple[float, float, str]]:
    """(x, y, the characters shown) for every <text> element, in document order."""
    root = ET.fromstring(svg)
    return [(float(t.get("x")), float(t.get("y")), "".join(t.itertext()))
            for t in root.iterfind(".//svg:text", NS)]


def rows(t) -> list[list[str]]:
    return [[fmt(v) for v in row] for row in t.tolist()]


def column(t) -> str:
    return "[" + ", ".join(r[0] for r in rows(t)) + "]"


# The SVG document.


def test_deterministic_and_fast(svg):
    start = time.perf_counter()
    assert diagram_svg() == svg
    assert time.perf_counter() - start < 1


def test_well_formed_accessible_and_self_contained(svg):
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("role") == "img" and root.get("font-family") == "sans-serif"
    assert root.get("aria-labelledby") == "title desc"
    width, height = float(root.get("width")), float(root.get("height"))
    assert root.get("viewBox") == f"0 0 {width:g} {height:g}" and 600 <= width <= 1000
    title, desc = root.find("svg:title", NS), root.find("svg:desc", NS)
    assert title.get("id") == "title" and "self-attention" in title.text.lower()
    assert desc.get("id") == "desc" and len(desc.text) > 200
    # Its own light background: the first thing drawn is a white rect over everything.
    background = root.find("svg:rect", NS)
    assert background.get("fill") == "#ffffff"
    assert (background.get("width"), background.get("height")) == (
        root.get("width"), root.get("height"))
    # Loads nothing: the only URL is the SVG namespace name, which is never fetched.
    assert re.findall(r"(?i)https?://[^\s\"'<>)]*", svg) == [NS["svg"]]
    assert "href" not in svg and "<image" not in svg and "@import" not in svg
    assert re.findall(r"url\(([^)]*)\)", svg) == ["#head"] * svg.count("marker-end")
    assert "font-family" not in svg.split(">", 1)[1]  # system sans-serif only


def test_dark_text_on_light_boxes(svg):
    fills = set(re.findall(r'<text[^>]* fill="(#[0-9a-f]{6})"', svg))
    boxes = set(re.findall(r'<rect[^>]* fill="(#[0-9a-f]{6})"', svg))

    def luminance(color):
        r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    assert fills and max(luminance(c) for c in fills) < 0.35
    assert boxes and min(luminance(c) for c in boxes) > 0.9


STAGES = [  # every box title, as the reader sees it (subscripts flattened)
    "input x", "Q = x Wq", "K = x Wk", "V = x Wv", "scores = QKT",
    "scaled = scores ÷ √dk = scores ÷ 1", "softmax, part 1: es and the row sums",
    "softmax, part 2: weights = es ÷ row sum", "output = weights · V", "output",
]
ARROWS = [  # every arrow label
    "x: (T, dmodel) = (3, 1)", "× Wq = [1]", "Wq: (dmodel, dk) = (1, 1)",
    "× Wk = [1]", "Wk: (dmodel, dk) = (1, 1)", "× Wv = [1]", "Wv: (dmodel, dv) = (1, 1)",
    "Q: (T, dk) = (3, 1)", "K: (T, dk) = (3, 1)", "V: (T, dv) = (3, 1)",
    "scores: (T, T) = (3, 3)", "scaled: (T, T) = (3, 3)", "es: (T, T) = (3, 3)",
    "row sums: (T, 1) = (3, 1)", "weights: (T, T) = (3, 3)", "output: (T, dv) = (3, 1)",
]


def test_every_stage_and_arrow_is_labelled(texts):
    shown = [text for _, _, text in texts]
    for label in STAGES + ARROWS:
        assert label in shown, label
    assert shown.count("scores = QKT") == 1


def test_every_number_of_the_worked_example_is_drawn(texts):
    shown = [text for _, _, text in texts]
    cells = Counter(text for text in shown if NUMBER_ONLY.fullmatch(text))
    expected = Counter()
    for name in ("scores", "scaled", "exps", "sums", "weights"):
        expected.update(v for row in rows(W[name]) for v in row)
    assert cells == expected  # every matrix entry, and no other bare number
    x, out = column(W["x"]), column(W["output"])
    assert shown.count(f"{x}T") == 3 and f"x = {x}T" in shown  # Q, K, V; x
    assert f"{out}T" in shown
    v = [r[0] for r in rows(W["v"])]
    for row, (o,) in zip(rows(W["weights"]), rows(W["output"])):
        assert f"{row[0]}·{v[0]} + {row[1]}·{v[1]} + {row[2]}·{v[2]} = {o}" in shown
    assert "T = 3 tokens" in shown and "dmodel = dk = dv = 1" in shown


@pytest.mark.parametrize("name", ["weights", "exps"])
def test_matrices_are_drawn_row_by_row(texts, name):
    """Read top to bottom and left to right, the cells of the matrix are its rows:
    the picture is not transposed or shuffled."""
    grid = rows(W[name])
    values = {v for row in grid for v in row}
    cells = sorted((y, x, text) for x, y, text in texts if text in values)
    assert len(cells) == 9
    drawn = [[text for _, _, text in sorted(cells[i:i + 3], key=lambda c: c[1])]
             for i in range(0, 9, 3)]
    assert drawn == grid
    assert len({y for y, _, _ in cells}) == 3  # three lines, one per row


def test_desc_says_the_numbers(svg):
    desc = ET.fromstring(svg).find("svg:desc", NS).text
    for name in ("x", "output", "sums"):
        assert column(W[name]) in desc
    for name in ("scores", "exps", "weights"):
        assert "[" + ", ".join("[" + ", ".join(r) + "]" for r in rows(W[name])) + "]" in desc
    assert "√d_k = 1" in desc and "W_q = W_k = W_v = [1]" in desc


# The helpers.


def test_svg_text_escapes_and_sets_sub_and_superscripts():
    element = svg_text(10, 20, "a<b & d_{model}^T", size=10, anchor="start", bold=True)
    node = ET.fromstring(element)
    assert "".join(node.itertext()) == "a<b & dmodelT"
    assert "a&lt;b &amp; d" in element
    spans = node.findall("tspan")
    assert [s.get("dy") for s in spans] == ["0", "3", "-7.5"]  # down 3, up 4.5 above
    assert spans[1].get("font-size") == "7.2" and node.get("font-weight") == "bold"
    assert plain("QK^T") == "QKT" and plain("√d_k") == "√dk" and plain("") == ""


def test_shape_label_uses_letters_then_numbers():
    assert shape_label("x", SIZES) == "(T, d_{model}) = (3, 1)"
    assert shape_label("sums", {"T": 5}) == "(T, 1) = (5, 1)"


def test_box_and_arrow_parts_are_well_formed():
    svg, bottom = box(100, 10, 200, "t", ["one", "two"])
    assert bottom == 10 + 30 + 22 * 2 + 10
    svg2, bottom2 = box(100, 10, 200, "t", matrices=[("cap", [["1", "22"], ["3", "4"]])])
    assert bottom2 == 10 + 30 + 22 + 22 * 2 + 14
    lines = arrow([(0, 0), (0, 50), (30, 50)], ["a", "b"])
    plain_line = arrow([(0, 0), (10, 0)], head=False)
    for part in (svg, svg2, lines, plain_line):
        ET.fromstring(f'<g xmlns="{NS["svg"]}">{part}</g>')
    assert 'marker-end="url(#head)"' in lines and "marker-end" not in plain_line
    assert "M0,0 L0,50 L30,50" in lines and "<rect" not in plain_line


# The shapes on the arrows.


@settings(max_examples=25, deadline=None)
@given(st.tuples(*[st.integers(1, 7)] * 4))
def test_shape_labels_match_the_code_for_any_sizes(dims):
    sizes = dict(zip(("T", "d_model", "d_k", "d_v"), dims))
    shapes = stage_shapes(sizes)
    assert set(shapes) == set(SHAPES)
    for name, letters in SHAPES.items():
        assert shapes[name] == tuple(sizes.get(s, s) for s in letters), name


@pytest.mark.parametrize("sizes, pattern", [
    ({"T": 3, "d_model": 1, "d_k": 1}, r"sizes must be a dict with exactly the keys T, "
     r"d_model, d_k, d_v, got \{'T': 3, 'd_model': 1, 'd_k': 1\}"),
    ({"T": 3, "d_model": 1, "d_k": 1, "d_v": 0}, r"sizes\['d_v'\] must be a positive int, "
     r"got 0"),
    ({"T": 3.0, "d_model": 1, "d_k": 1, "d_v": 1}, r"sizes\['T'\] must be a positive "
     r"int, got 3.0"),
    ({"T": True, "d_model": 1, "d_k": 1, "d_v": 1}, r"sizes\['T'\] must be a positive "
     r"int, got True"),
    ({"T": 3, "d_model": 1, "d_k": 1, "d_v": 1, "B": 2}, r"exactly the keys"),
    ([3, 1, 1, 1], r"sizes must be a dict"),
])
def test_stage_shapes_rejects_bad_sizes(sizes, pattern):
    with pytest.raises(ValueError, match=pattern):
        stage_shapes(sizes)


# The page.


def tokens(text: str) -> list[str]:
    """The numbers a reader sees: prose, math, tables and alt text; not code blocks
    and not the digits of a link target."""
    text = re.sub(r"\]\((?!figures/)[^)\s]*\)", "]", pages.prose(text))
    return pages.NUMBER.findall(text)


def without_tables(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("|"))


def test_page_shows_the_svg_with_alt_text_whose_numbers_are_right():
    text = pages.read_page(PAGE)
    (alt,) = re.findall(r"^!\[(.*)\]\(figures/diagram\.svg\)$", text, re.M)
    assert len(alt) > 200 and "Flow chart of self-attention" in alt
    x, out = [r[0] for r in rows(W["x"])], [r[0] for r in rows(W["output"])]
    assert tokens(alt) == [
        *x, fmt(W["w"][0, 0]), *x,  # inputs; W = [1]; Q, K, V = [1, 2, 3]
        "3", "3", fmt(W["scale"]), *out,  # 3 by 3 scores; sqrt(d_k) = 1; output
        *shape_label("q", SIZES).split("= ")[1].strip("()").split(", "),
    ]


def test_intro_numbers():
    intro = pages.read_page(PAGE).split("\n## ", 1)[0]
    x, out = [r[0] for r in rows(W["x"])], [r[0] for r in rows(W["output"])]
    alt = ["1", "2", "3", "1", "1", "2", "3", "3", "3", "1", *out, "3", "1"]
    assert tokens(intro) == [*x, *alt]


TEX = {"T": "T", "d_model": r"d_\text{model}", "d_k": "d_k", "d_v": "d_v"}
TABLE = [  # (what flows out, the SHAPES entry, the worked example's tensor)
    ("$x$", "x", "x"), ("$W_q$, $W_k$", "w_q", "w"), ("$W_v$", "w_v", "w"),
    ("$Q$, $K$", "q", "q"), ("$V$", "v", "v"), ("scores", "scores", "scores"),
    ("scaled scores", "scaled", "scaled"), ("$e^{s}$", "exps", "exps"),
    ("row sums", "sums", "sums"), ("weights", "weights", "weights"),
    ("output", "output", "output"),
]


def test_text_alternative_table_matches_the_code():
    section = pages.section(pages.read_page(PAGE), "The diagram in words")
    header, *body = pages.tables(section)[0]
    assert header == ["step", "box", "what flows out", "shape", "here",
                      "numbers in the example"]
    assert [row[2] for row in body] == [flows for flows, _, _ in TABLE]
    assert [int(row[0]) for row in body] == [1, 2, 2, 3, 3, 4, 5, 6, 6, 7, 8]
    for row, (_, shape, stage) in zip(body, TABLE):
        letters = SHAPES[shape]
        assert row[3] == "$(" + ", ".join(TEX.get(s, str(s)) for s in letters) + ")$"
        assert row[4] == "(" + ", ".join(str(SIZES.get(s, s)) for s in letters) + ")"
        assert row[5] == "; ".join(", ".join(r) for r in rows(W[stage])), row
        assert W[stage].shape == tuple(SIZES.get(s, s) for s in letters)


def test_diagram_in_words_prose_numbers():
    section = pages.section(pages.read_page(PAGE), "The diagram in words")
    assert tokens(without_tables(section)) == [
        str(SIZES["T"]), str(SIZES["d_k"]), fmt(W["w"][0, 0]),
    ]
    assert SIZES["d_model"] == SIZES["d_k"] == SIZES["d_v"]


def test_checking_the_shapes_prose_numbers():
    section = pages.section(pages.read_page(PAGE), "Checking the shapes on the arrows")
    sizes = {"T": 3, "d_model": 4, "d_k": 2, "d_v": 5}
    assert len(set(sizes.values())) == 4  # "all differ"
    assert tokens(section) == [
        str(SIZES["d_k"]), *shape_label("q", SIZES).split("= ")[1].strip("()").split(", "),
        *[str(sizes[n]) for n in ("T", "d_model", "d_k", "d_v")],
    ]
    # the code block uses the sizes the prose names
    assert str(sizes).replace("'", '"') in section


def test_check_yourself_numbers():
    section = pages.section(pages.read_page(PAGE), "How the picture is drawn")
    answer = section[section.index('??? question'):section.index('??? example')]
    before = stage_shapes(SIZES)
    after = stage_shapes({**SIZES, "d_v": 2})
    changed = [n for n in SHAPES if before[n] != after[n]]
    assert changed == ["w_v", "v", "output"]
    assert {before[n] for n in ("scores", "exps", "weights")} == {(3, 3)}
    assert tokens(answer) == [
        "2", *map(str, after["w_v"]), *map(str, after["v"]),
        *map(str, after["weights"]), *map(str, after["sums"]),
    ]
    assert tokens(section[:section.index('??? question')]) == []


@pytest.mark.parametrize("call, pattern", [
    (lambda: box(0, 0, 100, "t", matrices=[("cap", [["1", "2"], ["3"]])]),
     r"matrices\[0\] must be a \(caption, rows\) pair: a str and a non-empty list of "
     r"equally long lists of str, got \('cap', \[\['1', '2'\], \['3'\]\]\)"),
    (lambda: box(0, 0, 100, "t", matrices=[["cap", [["1"]]]]), r"matrices\[0\] must be"),
    (lambda: box(0, 0, 100, "t", matrices=[("cap", [])]), r"matrices\[0\] must be"),
    (lambda: box(0, 0, 100, "t", matrices=[("cap", [[1]])]),
     r"matrices\[0\] row must be a non-empty list of words, got \[1\]"),
    (lambda: box(float("nan"), 0, 100, "t"), r"cx must be a number in \(-inf, inf\), "
     r"got nan"),
    (lambda: box(0, 0, 100, 3), r"title must be a str, got int"),
    (lambda: box(0, 0, 100, "t", lines="one"), r"lines must be a list of words, got"),
    (lambda: arrow([(0, 0)]), r"points must be at least two \(x, y\) pairs of finite "
     r"numbers, got \[\(0, 0\)\]"),
    (lambda: arrow([(0, 0), (1, float("inf"))]), r"points must be at least two"),
    (lambda: arrow([(0, 0), (1, 1)], ["a"], at=(1, 2, 3)), r"at must be None or an "
     r"\(x, y\) pair of finite numbers, got \(1, 2, 3\)"),
    (lambda: arrow([(0, 0), (1, 1)], ["a"], at=(1, float("nan"))), r"at must be None"),
    (lambda: arrow([(0, 0), (1, 1)], head=1), r"head must be True or False, got 1"),
    (lambda: shape_label("nope", SIZES), r"name must be one of x, w_q, .*got 'nope'"),
    (lambda: shape_label("x", [3]), r"sizes must be a dict, got list"),
    (lambda: plain(3), r"label must be a str, got int"),
])
def test_drawing_helpers_refuse_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
