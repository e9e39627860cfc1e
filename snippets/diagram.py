"""The self-attention diagram, drawn from the numbers of the numerical example.

``diagram_svg`` lays out the flow x -> (W_q, W_k, W_v) -> Q, K, V -> QK^T -> / sqrt(d_k)
-> softmax -> weights . V -> output as a hand-written SVG. Every box shows the
numbers that ``snippets.numerical_example.worked_example`` computes when the site is
built, and every arrow the shape of what flows along it, so the picture cannot
disagree with the page. ``stage_shapes`` runs the same steps with four different
sizes to check the arrows' shape labels. ``figures/diagram.py`` adds the SVG to the
site.
"""

# --8<-- [start:imports]
import re
from xml.sax.saxutils import escape
# --8<-- [end:imports]

import torch  # on the pages, snippets/numerical_example.py:imports imports it

from snippets.attention import (
    attention_scores,
    project,
    scale_scores,
    weighted_sum,
)
from snippets.checks import (
    as_numbers,
    check_choice,
    check_flag,
    check_keys,
    check_number,
    check_seed,
    check_size,
    check_type,
    check_words,
)
from snippets.numerical_example import fmt, softmax_by_hand, worked_example

__all__ = [
    "SHAPES",
    "stage_shapes",
    "shape_label",
    "plain",
    "svg_text",
    "box",
    "arrow",
    "diagram_svg",
]


# --8<-- [start:stage-shapes]
SHAPES = {  # what flows along each arrow of the diagram, and its shape
    "x": ("T", "d_model"),
    "w_q": ("d_model", "d_k"),
    "w_k": ("d_model", "d_k"),
    "w_v": ("d_model", "d_v"),
    "q": ("T", "d_k"),
    "k": ("T", "d_k"),
    "v": ("T", "d_v"),
    "scores": ("T", "T"),
    "scaled": ("T", "T"),
    "exps": ("T", "T"),
    "sums": ("T", 1),
    "weights": ("T", "T"),
    "output": ("T", "d_v"),
}


def stage_shapes(sizes, seed=0):
    """Run the five steps on random tensors of the given sizes and return the shape
    of every arrow of the diagram, by name.

    sizes: {"T": ..., "d_model": ..., "d_k": ..., "d_v": ...}, positive ints.
    """
    names = ("T", "d_model", "d_k", "d_v")
    check_keys("sizes", sizes, names, exact=True)
    for name in names:
        check_size(f"sizes[{name!r}]", sizes[name])
    check_seed("seed", seed)
    T, d_model, d_k, d_v = (sizes[n] for n in names)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, d_model, generator=gen)  # (T, d_model)
    w_q = torch.randn(d_model, d_k, generator=gen)  # (d_model, d_k)
    w_k = torch.randn(d_model, d_k, generator=gen)  # (d_model, d_k)
    w_v = torch.randn(d_model, d_v, generator=gen)  # (d_model, d_v)
    q, k, v = project(x, w_q, w_k, w_v)  # (T, d_k), (T, d_k), (T, d_v)
    scores = attention_scores(q, k)  # (T, d_k) @ (d_k, T) -> (T, T)
    scaled = scale_scores(scores, d_k)  # (T, T)
    exps, sums, weights = softmax_by_hand(scaled)  # (T, T), (T, 1), (T, T)
    output = weighted_sum(weights, v)  # (T, T) @ (T, d_v) -> (T, d_v)
    found = {"x": x, "w_q": w_q, "w_k": w_k, "w_v": w_v, "q": q, "k": k, "v": v,
             "scores": scores, "scaled": scaled, "exps": exps, "sums": sums,
             "weights": weights, "output": output}
    return {name: tuple(t.shape) for name, t in found.items()}
# --8<-- [end:stage-shapes]


# --8<-- [start:svg-text]
SCRIPT = re.compile(r"([_^])(\{[^}]*\}|.)")  # _k, _{model}: subscript; ^T: superscript


def _runs(label):
    """``label`` as (text, level) runs: level 0 on the line, -1 below, +1 above."""
    runs, pos = [], 0
    for m in SCRIPT.finditer(label):
        level = -1 if m.group(1) == "_" else 1
        runs += [(label[pos:m.start()], 0), (m.group(2).strip("{}"), level)]
        pos = m.end()
    runs.append((label[pos:], 0))
    return [(text, level) for text, level in runs if text]


def plain(label):
    """The characters a reader sees, without the markup: plain("QK^T") == "QKT"."""
    check_type("label", label, str)
    return "".join(text for text, _ in _runs(label))


def svg_text(x, y, label, size=15, anchor="middle", bold=False, color="#1a1a1a"):
    """One line of text with its baseline at y. Sub- and superscripts are smaller
    <tspan>s moved with dy (which every browser supports, unlike baseline-shift)."""
    spans, at = [], 0.0
    for text, level in _runs(label):
        target = {0: 0.0, -1: 0.3 * size, 1: -0.45 * size}[level]
        small = f' font-size="{0.72 * size:g}"' if level else ""
        spans.append(f'<tspan dy="{target - at:g}"{small}>{escape(text)}</tspan>')
        at = target
    weight = ' font-weight="bold"' if bold else ""
    return (f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" text-anchor="{anchor}" '
            f'fill="{color}"{weight}>{"".join(spans)}</text>')


def shape_label(name, sizes):
    """The label of an arrow: its shape in letters, then in the example's numbers,
    e.g. "(T, d_{k}) = (3, 1)"."""
    check_choice("name", name, tuple(SHAPES))
    check_type("sizes", sizes, dict)
    letters = ", ".join(re.sub(r"_(\w+)", r"_{\1}", str(s)) for s in SHAPES[name])
    numbers = ", ".join(str(sizes.get(s, s)) for s in SHAPES[name])
    return f"({letters}) = ({numbers})"
# --8<-- [end:svg-text]


# --8<-- [start:svg-shapes]
LINE_HEIGHT, CHAR_WIDTH = 22, 0.56  # px per line; a digit is about 0.56 em wide


def _width(label, size=15):
    return CHAR_WIDTH * size * len(plain(label))


def _matrix(left, top, rows):
    """Cells right-aligned in columns, between square brackets; (svg, width)."""
    widths = [max(_width(row[j]) for row in rows) for j in range(len(rows[0]))]
    gap, pad = 16, 10
    parts, x = [], left + pad
    for j, w in enumerate(widths):
        x += w + (gap if j else 0)
        parts += [svg_text(x, top + LINE_HEIGHT * (i + 0.75), row[j], anchor="end")
                  for i, row in enumerate(rows)]
    right, bottom = x + pad, top + LINE_HEIGHT * len(rows)
    for edge, tick in ((left, 5), (right, -5)):  # [ on the left, ] on the right
        parts.append(f'<path d="M{edge + tick:g},{top:g} h{-tick} V{bottom:g} h{tick}" '
                     'fill="none" stroke="#1a1a1a" stroke-width="1.3"/>')
    return "".join(parts), right - left


def box(cx, top, width, title, lines=(), matrices=(), fill="#e8eaf6"):
    """A rounded box centred on cx: a bold title, then either lines of text or
    matrices side by side, each under its caption. Returns (svg, bottom).
    matrices: (caption, rows) pairs, rows a list of equally long lists of strings.
    """
    for name, number in (("cx", cx), ("top", top), ("width", width)):
        check_number(name, number)
    check_type("title", title, str)
    check_type("fill", fill, str)
    check_words("lines", lines, minimum=0)
    for i, pair in enumerate(check_type("matrices", matrices, (list, tuple), "a list")):
        caption, rows = pair if isinstance(pair, tuple) and len(pair) == 2 else (0, 0)
        if not (isinstance(caption, str) and isinstance(rows, list) and rows and all(
                check_words(f"matrices[{i}] row", row, minimum=1) is row
                and len(row) == len(rows[0]) for row in rows)):
            raise ValueError(
                f"matrices[{i}] must be a (caption, rows) pair: a str and a non-empty "
                f"list of equally long lists of str, got {pair!r}"
            )
    body = top + 30  # below the title
    parts = [svg_text(cx, top + 21, title, size=16, bold=True, color="#1a237e")]
    parts += [svg_text(cx, body + LINE_HEIGHT * (i + 0.7), line)
              for i, line in enumerate(lines)]
    height = 30 + LINE_HEIGHT * len(lines) + 10
    if matrices:
        captions = 22 if any(caption for caption, _ in matrices) else 4
        gap = 36
        total = sum(_matrix(0, 0, rows)[1] for _, rows in matrices)
        total += gap * (len(matrices) - 1)
        left = cx - total / 2
        for caption, rows in matrices:
            svg, w = _matrix(left, body + captions, rows)
            parts += [svg_text(left + w / 2, body + 14, caption, size=13.5,
                               color="#37474f"), svg]
            left += w + gap
        height = 30 + captions + LINE_HEIGHT * max(len(r) for _, r in matrices) + 14
    frame = (f'<rect x="{cx - width / 2:g}" y="{top:g}" width="{width:g}" '
             f'height="{height:g}" rx="8" fill="{fill}" stroke="#3949ab" '
             'stroke-width="1.5"/>')
    return frame + "".join(parts), top + height


def arrow(points, label=(), at=None, head=True):
    """A line through ``points`` (with an arrowhead at the last one unless head is
    False); the label's lines sit on a white pill centred at ``at``.
    points: at least two (x, y) pairs of finite numbers; at: None or one pair.
    """
    check_flag("head", head)
    check_words("label", label, minimum=0)
    xy = as_numbers("points", points, torch.float64)  # (N, 2)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 2 or not xy.isfinite().all():
        raise ValueError(f"points must be at least two (x, y) pairs of finite "
                         f"numbers, got {points!r}")
    if at is not None and (as_numbers("at", at, torch.float64).shape != (2,)
                           or not torch.as_tensor(at).isfinite().all()):
        raise ValueError(f"at must be None or an (x, y) pair of finite numbers, "
                         f"got {at!r}")
    path = "M" + " L".join(f"{x:g},{y:g}" for x, y in points)
    marker = ' marker-end="url(#head)"' if head else ""
    parts = [f'<path d="{path}" fill="none" stroke="#455a64" stroke-width="1.8"'
             f'{marker}/>']
    if label:
        (x0, y0), (x1, y1) = points[0], points[1]
        cx, cy = at or ((x0 + x1) / 2, (y0 + y1) / 2)
        w = max(_width(line, 13.5) for line in label) + 16
        h = 19 * len(label) + 6
        parts.append(f'<rect x="{cx - w / 2:g}" y="{cy - h / 2:g}" width="{w:g}" '
                     f'height="{h:g}" rx="{h / 2:g}" fill="#ffffff" stroke="#b0bec5"/>')
        parts += [svg_text(cx, cy - h / 2 + 17 + 19 * i, line, size=13.5,
                           color="#263238") for i, line in enumerate(label)]
    return "".join(parts)
# --8<-- [end:svg-shapes]


# --8<-- [start:diagram-svg]
def diagram_svg():
    """The whole diagram as an SVG document, numbers from ``worked_example()``."""
    ex = worked_example()
    sizes = {"T": ex["x"].shape[0], "d_model": ex["x"].shape[1],
             "d_k": ex["q"].shape[1], "d_v": ex["v"].shape[1]}

    def rows(t):  # a matrix as rows of numbers, written as the page writes them
        return [[fmt(v) for v in row] for row in t.tolist()]

    def listed(t):  # "[1, 2, 3]" for a column, "[[1, 2, 3], [2, 4, 6], ...]" else
        if t.shape[1] == 1:
            return "[" + ", ".join(r[0] for r in rows(t)) + "]"
        return "[" + ", ".join("[" + ", ".join(r) + "]" for r in rows(t)) + "]"

    def shape(name, what):  # an arrow's label: what flows, and its shape
        return f"{what}: {shape_label(name, sizes)}"

    width, main = 800, 280  # the canvas; the centre of the column from QK^T down
    columns = {"q": 150, "k": 410, "v": 680}  # the centres of Q, K and V
    parts = []
    # The input, projected three times.
    svg, bottom = box(410, 20, 240, "input x", [f"x = {listed(ex['x'])}^T"])
    parts.append(svg)
    parts.append(box(100, 20, 180, "sizes", [
        f"T = {sizes['T']} tokens",
        f"d_{{model}} = d_k = d_v = {sizes['d_k']}"], fill="#f5f5f5")[0])
    bus = bottom + 56
    parts.append(arrow([(410, bottom), (410, bus)], [shape("x", "x")], head=False))
    parts.append(arrow([(columns["q"], bus), (columns["v"], bus)], head=False))
    for name, cx in columns.items():
        top, weight = bus + 90, f"W_{name}"
        parts.append(arrow([(cx, bus), (cx, top)], [
            f"× {weight} = {listed(ex['w'])}", shape(f"w_{name}", weight)]))
        svg, qkv_bottom = box(cx, top, 200, f"{name.upper()} = x {weight}",
                              [f"{listed(ex[name])}^T"])
        parts.append(svg)
    # Q and K meet; the main column runs down from there.
    top = qkv_bottom + 66
    for name in ("q", "k"):
        parts.append(arrow([(columns[name], qkv_bottom), (columns[name], top)],
                           [shape(name, name.upper())]))
    steps = [  # (title, matrices, label of the arrow out, fill)
        ("scores = QK^T", [("", rows(ex["scores"]))], [shape("scores", "scores")]),
        (f"scaled = scores ÷ √d_k = scores ÷ {fmt(ex['scale'])}",
         [("", rows(ex["scaled"]))], [shape("scaled", "scaled")]),
        ("softmax, part 1: e^s and the row sums",
         [("e^s", rows(ex["exps"])), ("row sum", rows(ex["sums"]))],
         [shape("exps", "e^s"), shape("sums", "row sums")]),
        ("softmax, part 2: weights = e^s ÷ row sum", [("", rows(ex["weights"]))],
         [shape("weights", "weights")]),
    ]
    for title, matrices, label in steps:
        fill = "#fff3e0" if title.startswith("softmax") else "#e8eaf6"
        svg, bottom = box(main, top, 420, title, matrices=matrices, fill=fill)
        parts.append(svg)
        top = bottom + 40 + 20 * len(label)
        parts.append(arrow([(main, bottom), (main, top)], label))
    # The weights blend the rows of V.
    blends = [
        " + ".join(f"{w}·{v}" for w, v in zip(row, rows(ex["v"].T)[0])) + f" = {o}"
        for row, (o,) in zip(rows(ex["weights"]), rows(ex["output"]))
    ]
    svg, bottom = box(main, top, 420, "output = weights · V", blends)
    parts.append(svg)
    join = (top + bottom) / 2
    parts.append(arrow([(columns["v"], qkv_bottom), (columns["v"], join),
                        (main + 210, join)], [shape("v", "V")]))
    top = bottom + 60
    parts.append(arrow([(main, bottom), (main, top)], [shape("output", "output")]))
    svg, bottom = box(main, top, 320, "output", [f"{listed(ex['output'])}^T"],
                      fill="#e8f5e9")
    parts.append(svg)
    parts += [svg_text(620, bottom - 62 + 20 * i, line, size=13.5, color="#455a64")
              for i, line in enumerate(["Each arrow says what flows along it",
                                        "and its shape (rows, columns): in letters,",
                                        "then in this example's numbers."])]
    height = bottom + 24
    title = "Self-attention, step by step, on the numerical example"
    desc = (
        f"Data flow of self-attention for {sizes['T']} tokens with the inputs "
        f"{listed(ex['x'])}: x is multiplied by W_q = W_k = W_v = {listed(ex['w'])}, "
        f"so Q = K = V = x; the scores QKᵀ are {listed(ex['scores'])}; dividing by "
        f"√d_k = {fmt(ex['scale'])} leaves them unchanged; the softmax of each row "
        f"takes the exponentials {listed(ex['exps'])}, divides them by the row sums "
        f"{listed(ex['sums'])} and gives the weights {listed(ex['weights'])}; the "
        f"weights times V give the output {listed(ex['output'])}. Each arrow is "
        "labelled with the shape of the matrix it carries."
    )
    head = ('<marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
            'fill="#455a64"/></marker>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:g}" '
        f'viewBox="0 0 {width} {height:g}" role="img" aria-labelledby="title desc" '
        'font-family="sans-serif">\n'
        f'<title id="title">{escape(title)}</title>\n'
        f'<desc id="desc">{escape(desc)}</desc>\n'
        f'<defs>{head}</defs>\n'
        f'<rect width="{width}" height="{height:g}" fill="#ffffff"/>\n'
        + "\n".join(parts) + "\n</svg>\n"
    )
# --8<-- [end:diagram-svg]
