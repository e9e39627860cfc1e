"""figures/: every file the build generates, and what each figure shows.

Every generator is checked alike: registered once, by the module named after its
page; the same bytes at every build; a bounded size; shown on its page with an alt
text. Every matplotlib figure also: a white card under everything, text kept as text
in the site's font stack, coordinates without needless digits, nothing loaded from
another host. Then each figure is checked for what it draws: the right series, the
right number on every cell, in the text colour of the one rule.
"""

from __future__ import annotations

import copy
import inspect
import pkgutil
import re
import time
import xml.etree.ElementTree as ET

import matplotlib
import pytest
import torch

import figures
from figures import (
    attention,
    diagram,
    efficient,
    explorer,
    multi_head,
    numerical_example,
    position,
    pytorch_example,
    scaling,
    softmax_stability,
)
from figures.svg import (
    DECIMALS,
    INK,
    STACK,
    WHITE,
    contrast,
    hex_rgb,
    luminance,
    shorten,
    text_colour,
)
from hooks.generated import generators
from snippets.attention import handbuilt_attention
from snippets.diagram import diagram_svg
from snippets.explorer import explorer_json
from snippets.numerical_example import worked_example
from snippets.position import rope_score
from snippets.pytorch_example import scaled_scores_by_init
from snippets.scaling import measure_scaling
from tests.conftest import ROOT
from tests.pages import read_page
from tests.test_multi_head import page_example

# Each page's module and what it must register: site path -> function.
GENERATED = {
    attention: {"figures/handbuilt-heatmap.svg": attention.handbuilt_heatmap_svg},
    diagram: {"figures/diagram.svg": diagram_svg},  # the page shows this code
    efficient: {"figures/bench-time.svg": efficient.bench_time_svg,
                "figures/bench-memory.svg": efficient.bench_memory_svg},
    # shown, too; SmolLM2's files, one per sentence, are tests/test_explorer.py's
    explorer: {"assets/explorer/attention.json": explorer_json,
               **{path: explorer.GENERATED[path] for path in explorer.GENERATED
                  if path.startswith("assets/explorer/smollm2/")}},
    multi_head: {"figures/multihead-heads.svg": multi_head.heads_heatmap_svg},
    numerical_example: {
        "figures/numerical-heatmap.svg": numerical_example.weights_heatmap_svg},
    position: {"figures/sinusoidal-positions.svg": position.sinusoidal_svg,
               "figures/rope-relative.svg": position.rope_relative_svg},
    pytorch_example: {"figures/pytorch-example-saturation.svg":
                      pytorch_example.saturation_figure_svg},
    scaling: {"figures/scaling.svg": scaling.scaling_figure_svg},
    softmax_stability: {
        "figures/dropout-row-sums.svg": softmax_stability.dropout_row_sums_svg},
}
PATHS = sorted(path for files in GENERATED.values() for path in files)
# The diagram is SVG written by hand, with tests of its own (tests/test_diagram.py).
MATPLOTLIB = [p for p in PATHS if p.endswith(".svg") and p != "figures/diagram.svg"]
# Every generated file stays at most this big. Measured (bytes): the largest figure,
# scaling.svg, is 41,024 (86,862 when text was drawn as paths); the smallest, 13,588.
MAX_BYTES = 48_000
NS = {"svg": "http://www.w3.org/2000/svg"}


def page_name(module) -> str:
    """figures.multi_head -> "multi-head", the page the module draws for."""
    return module.__name__.split(".")[-1].replace("_", "-")


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    """Every generated file, drawn once for this module's tests."""
    return {path: func() for path, func in generators().items()}


def texts(svg: str) -> list[tuple[str, str]]:
    """(the characters, the fill colour) of every <text> outside mathtext, in
    document order; matplotlib leaves out the fill of black text."""
    found = []
    for element in ET.fromstring(svg).iterfind(".//svg:text", NS):
        fill = re.search(r"fill: (#[0-9a-f]{6})", element.get("style") or "")
        found.append(("".join(element.itertext()), fill.group(1) if fill else "#000000"))
    return found


def cell_labels(svg: str, pattern: str) -> list[tuple[str, str]]:
    """The texts that look like a cell's label (``pattern``), in drawing order."""
    return [(text, fill) for text, fill in texts(svg) if re.fullmatch(pattern, text)]


# ---- every generator ----------------------------------------------------------------


def test_each_page_module_registers_its_files():
    for module, files in GENERATED.items():
        assert module.GENERATED == files, module.__name__
        assert (ROOT / "docs" / f"{page_name(module)}.md").is_file(), module.__name__
        assert (ROOT / "snippets" / f"{module.__name__.split('.')[-1]}.py").is_file()
    modules = {info.name for info in pkgutil.iter_modules(figures.__path__)}
    assert modules == {m.__name__.split(".")[-1] for m in GENERATED} | {"svg"}


def test_the_build_finds_every_generator_in_figures_and_none_in_snippets():
    found = generators()
    assert list(found) == [path for _, files in sorted(
        GENERATED.items(), key=lambda item: item[0].__name__) for path in files]
    for files in GENERATED.values():
        for path, func in files.items():
            assert found[path] is func, path
    assert generators("snippets") == {}


IMAGE = re.compile(r"^!\[(.+)\]\((figures/[^)\s]+\.svg)\)$", re.M)


def test_every_figure_is_shown_once_on_its_page_with_an_alt_text():
    shown = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        for alt, path in IMAGE.findall(page.read_text()):
            shown.setdefault(path, []).append((page.stem, alt))
    drawn = {path: module for module, files in GENERATED.items() for path in files
             if path.endswith(".svg")}
    assert set(shown) == set(drawn)
    for path, module in drawn.items():
        ((page, alt),) = shown[path]
        assert page == page_name(module), path
        assert len(alt) >= 80, f"{path}: the alt text must say what the figure shows"


@pytest.mark.parametrize("path", PATHS)
def test_the_same_bytes_at_every_build(rendered, path):
    assert generators()[path]() == rendered[path]


@pytest.mark.parametrize("path", [p for p in PATHS if "/smollm2/" not in p])
def test_size_is_bounded(rendered, path):
    assert len(rendered[path].encode()) <= MAX_BYTES


# ---- every matplotlib figure ----------------------------------------------------------


@pytest.mark.parametrize("path", MATPLOTLIB)
def test_a_white_card_under_everything(rendered, path):
    """The first thing drawn is a white rectangle over the whole figure, so it reads
    the same in the site's dark scheme."""
    svg = rendered[path]
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    _, _, width, height = root.get("viewBox").split()
    card = re.search(r'<g id="figure_1">\s*<g id="patch_1">\s*<path d="([^"]*)" '
                     r'style="fill: (#[0-9a-f]{6})"/>', svg)
    assert card.group(1).split() == ["M", "0", height, "L", width, height,
                                     "L", width, "0", "L", "0", "0", "z"]
    assert card.group(2) == WHITE
    assert re.search(r"fill:\s*(#[0-9a-f]{6})", svg).group(1) == WHITE


@pytest.mark.parametrize("path", MATPLOTLIB)
def test_text_is_text_in_the_sites_font_stack(rendered, path):
    svg = rendered[path]
    assert "<text" in svg and 'id="DejaVuSans-' not in svg  # no glyphs as paths
    assert f"text{{font-family: {STACK}}}" in svg
    # mathtext (10^3 on a log axis) names the font its glyphs were measured in
    assert set(re.findall(r"font-family: ([^;\"}]+)", svg)) <= {STACK, "'DejaVu Sans'"}


@pytest.mark.parametrize("path", MATPLOTLIB)
def test_coordinates_without_needless_digits(rendered, path):
    values = re.findall(r'\s(?:d|x|y|width|height|transform)="([^"]*)"', rendered[path])
    assert values
    longer = [n for v in values for n in re.findall(rf"\d+\.\d{{{DECIMALS + 1},}}", v)]
    assert not longer, longer[:5]


@pytest.mark.parametrize("path", MATPLOTLIB)
def test_loads_nothing_and_carries_no_date(rendered, path):
    svg = rendered[path]
    urls = set(re.findall(r"(?i)https?://[^\s\"'<>)]*", svg))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink",
                    "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd"}  # names only
    hrefs = re.findall(r'href="([^"]*)"', svg)
    assert all(h.startswith(("#", "data:image/png;base64,")) for h in hrefs), hrefs
    assert set(re.findall(r"url\(([^)]*)\)", svg)) <= {
        f"#{i}" for i in re.findall(r'id="([^"]+)"', svg)}
    assert "@import" not in svg and "<metadata" not in svg and "<dc:date" not in svg


# ---- figures/svg.py -----------------------------------------------------------------


def test_luminance_and_contrast_are_wcag_s():
    assert luminance((1.0, 1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert luminance((0.0, 0.0, 0.0, 1.0)) == 0.0
    assert luminance((0.03, 0.19, 0.42, 1.0)) < 0.18  # dark blue
    assert contrast((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)) == pytest.approx(21.0)
    assert contrast(hex_rgb("#777777"), hex_rgb(WHITE)) == pytest.approx(4.48, abs=0.01)
    assert hex_rgb("#ff8000") == (1.0, 128 / 255, 0.0)


def test_text_colour_is_whichever_contrasts_more():
    assert text_colour((0.03, 0.19, 0.42, 1.0)) == WHITE  # dark blue: white text
    assert text_colour((0.94, 0.96, 1.0, 1.0)) == INK  # pale blue: dark text
    for name in ("Blues", "RdBu", "viridis"):
        for x in torch.linspace(0, 1, 101).tolist():
            cell = matplotlib.colormaps[name](x)
            other = INK if text_colour(cell) == WHITE else WHITE
            assert contrast(cell, hex_rgb(text_colour(cell))) >= contrast(
                cell, hex_rgb(other)), (name, x)


def test_shorten_rounds_geometry_only_and_says_the_font_once():
    raw = (
        '<style type="text/css">*{stroke-linejoin: round}</style>\n'
        '<path d="M 0.123456 -0.004 \nL 10 2.5" style="fill: #ffffff"/>\n'
        f'<text style="font-size: 11px; font-family: {STACK}; fill: #1a1a1a" '
        'x="3.14159" y="2" transform="rotate(-0 3.14159 2)">0.6652</text>\n'
        '<text x="1" y="2" transform="rotate(-90 1.23456 2)">1.23456</text>'
    )
    assert shorten(raw) == (
        f'<style type="text/css">text{{font-family: {STACK}}}\n'
        '*{stroke-linejoin: round}</style>\n'
        '<path d="M 0.12 0 \nL 10 2.5" style="fill: #ffffff"/>\n'
        '<text style="font-size: 11px; fill: #1a1a1a" x="3.14" y="2">0.6652</text>\n'
        '<text x="1" y="2" transform="rotate(-90 1.23 2)">1.23456</text>'
    )
    assert STACK.endswith(", sans-serif")  # a reader without the named fonts


# ---- what each figure shows ---------------------------------------------------------


def test_handbuilt_heatmap_cells(rendered):
    svg = rendered["figures/handbuilt-heatmap.svg"]
    tokens, weights = handbuilt_attention()
    blues = matplotlib.colormaps["Blues"]
    assert cell_labels(svg, r"\d\.\d\d") == [
        (f"{w:.2f}", text_colour(blues(w))) for w in weights.flatten().tolist()]
    assert svg.count("stroke: #b2182b") == 1  # the row of "sat", outlined
    assert {"the", "cat", "sat", "on", "mat"} <= {text for text, _ in texts(svg)}


def test_multihead_figure_is_the_pages_example():
    _, _, _, weights = page_example()
    state = torch.random.get_rng_state()
    torch.testing.assert_close(multi_head.seeded_head_weights(), weights[0],
                               atol=0, rtol=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched


def test_multihead_heatmap_cells(rendered):
    svg = rendered["figures/multihead-heads.svg"]
    weights = multi_head.seeded_head_weights()  # (H, T, T)
    num_heads, seq_len, _ = weights.shape
    top = max(0.5, weights.max().item())
    blues = matplotlib.colormaps["Blues"]
    assert cell_labels(svg, r"\d\.\d\d") == [
        (f"{w:.2f}", text_colour(blues(w / top))) for w in weights.flatten().tolist()]
    assert svg.count("stroke: #b2182b") == num_heads * seq_len  # each row's largest
    titles = [t for t, _ in texts(svg) if t.startswith("head ")]
    assert titles == ["head 0: features 0\u20133", "head 1: features 4\u20137"]


def test_numerical_heatmap_cells_are_vector_and_quick():
    start = time.perf_counter()
    svg = numerical_example.weights_heatmap_svg()
    assert time.perf_counter() - start < 5  # well under a second once warm
    weights = worked_example()["weights"]
    shades = matplotlib.colormaps["Blues"].resampled(64)
    labels = cell_labels(svg, r"\d\.\d{4}")
    assert labels == [
        (f"{w:.4f}", text_colour(shades(w))) for w in weights.flatten().tolist()]
    assert {fill for _, fill in labels} == {WHITE, INK}  # dark cells: white text
    assert [t for t, _ in texts(svg)].count("x\u2081=1") == 2  # a key and a query
    assert "<image" not in svg  # cells and colorbar drawn as vectors, no bitmap
    (alt,) = re.findall(r"!\[([^\]]+)\]\(figures/numerical-heatmap\.svg\)",
                        read_page("numerical-example.md"))
    assert "attention weights" in alt.lower()


def test_scaling_figure_draws_its_three_measurements(rendered):
    svg = rendered["figures/scaling.svg"]
    assert svg == scaling.scaling_figure_svg(measure_scaling())  # the same numbers
    assert re.findall(r'id="axes_\d+"', svg) == ['id="axes_1"', 'id="axes_2"',
                                                  'id="axes_3"']
    shown = [text for text, _ in texts(svg)]
    for text in ["Spread of the scores", "Largest softmax weight",
                 "Gradient through the softmax", "d_k (log scale)", "1024"]:
        assert text in shown


def test_saturation_figure_titles_say_each_mean(rendered):
    svg = rendered["figures/pytorch-example-saturation.svg"]
    means = [torch.softmax(s, dim=-1).max(dim=-1).values.mean()
             for s in scaled_scores_by_init().values()]
    titles = [text for text, _ in texts(svg) if text.startswith("W_Q, W_K from ")]
    assert titles == [f"W_Q, W_K from {name}: mean {m:.2f}"
                      for name, m in zip(scaled_scores_by_init(), means)]


def defaults(func):
    return {k: p.default for k, p in inspect.signature(func).parameters.items()}


def test_rope_figure_curves_coincide():
    """What the picture claims: the curves for the three key positions are one."""
    d = defaults(position.rope_relative_svg)
    q = torch.randn(d["head_dim"], generator=torch.Generator().manual_seed(d["seed"]))
    offsets = range(-d["span"], d["span"] + 1)
    curves = torch.tensor(
        [[rope_score(q, q, n + o, n) for o in offsets] for n in d["key_positions"]]
    )
    assert (curves - curves[0]).abs().max() < 1e-4 * curves.abs().max()
    peak = curves[0].argmax().item()
    assert list(offsets)[peak] == 0  # "peaking at relative position 0"
    torch.testing.assert_close(curves[0], curves[0].flip(0))  # symmetric when q = k


# The benchmark figures of docs/efficient.md, from bench/results.json.

DATA = efficient.load_results()
METHODS = list(DATA["sweep"]["results"])


def test_load_results_reads_the_committed_run(tmp_path):
    assert efficient.RESULTS == ROOT / "bench" / "results.json"
    assert efficient.load_results() == DATA
    other = tmp_path / "r.json"
    other.write_text('{"sweep": 1}')
    assert efficient.load_results(other) == {"sweep": 1}


@pytest.mark.parametrize("mode", ["full", "causal"])
def test_series_are_the_stored_numbers_in_ms_and_mib(mode):
    times = efficient.series(DATA, "median_s", mode)
    memory = efficient.series(DATA, "peak_extra_bytes", mode)
    assert list(times) == list(memory) == METHODS
    for method in METHODS:
        stored = DATA["sweep"]["results"][method][mode]
        ts = sorted(int(t) for t in stored)
        assert times[method][0] == memory[method][0] == ts
        assert times[method][1] == [stored[str(t)]["median_s"] * 1e3 for t in ts]
        assert memory[method][1] == [stored[str(t)]["peak_extra_bytes"] / 2**20
                                     for t in ts]


def test_series_leave_out_skipped_points_and_sort_by_t():
    data = {"sweep": {"results": {"naive": {"full": {
        "256": {"skipped": "needs too much memory"},
        "64": {"median_s": 0.002, "peak_extra_bytes": 2**20, "skipped": None},
        "128": {"median_s": 0.001, "peak_extra_bytes": 2**21},
    }}}}}
    assert efficient.series(data, "median_s") == {"naive": ([64, 128], [2.0, 1.0])}
    assert efficient.series(data, "peak_extra_bytes") == {
        "naive": ([64, 128], [1.0, 2.0])}


@pytest.mark.parametrize("path", ["figures/bench-time.svg", "figures/bench-memory.svg"])
def test_bench_figure_has_every_series_once(rendered, path):
    svg = rendered[path]
    for method in METHODS:
        assert svg.count(f'id="series-{method}"') == 1, method
    assert svg.count('id="series-') == len(METHODS)


def test_bench_figures_differ_and_use_log_log_axes(rendered, monkeypatch):
    assert rendered["figures/bench-time.svg"] != rendered["figures/bench-memory.svg"]
    seen = {}
    import matplotlib.axes

    real = matplotlib.axes.Axes.legend

    def spy(ax, *args, **kwargs):
        seen["x"], seen["y"] = ax.get_xscale(), ax.get_yscale()
        seen["labels"] = [line.get_label() for line in ax.get_lines()]
        seen["ticks"] = list(ax.get_xticks())
        return real(ax, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", spy)
    efficient.bench_svg(DATA, "median_s", "causal")
    assert seen["x"] == seen["y"] == "log"
    assert seen["labels"] == [efficient.STYLES[m][0] for m in METHODS]
    assert seen["ticks"] == DATA["sweep"]["config"]["T"]


def test_an_unknown_method_still_gets_a_line():
    data = copy.deepcopy(DATA)
    data["sweep"]["results"]["new_method"] = data["sweep"]["results"]["sdpa"]
    svg = efficient.bench_svg(data, "median_s")
    assert 'id="series-new_method"' in svg
