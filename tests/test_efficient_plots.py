"""snippets/efficient_plots.py: the benchmark figures of docs/efficient.md are drawn
from bench/results.json, one series per method, legibly and byte for byte the same
at every build."""

from __future__ import annotations

import copy
import json
import re

import pytest

from hooks.generated import generators
from snippets import efficient_plots
from snippets.efficient_plots import (
    GENERATED,
    RESULTS,
    bench_memory_svg,
    bench_svg,
    bench_time_svg,
    load_results,
    series,
)

DATA = json.loads(RESULTS.read_text())
METHODS = list(DATA["sweep"]["results"])


def test_generated_maps_the_two_figures():
    assert GENERATED == {"figures/bench-time.svg": bench_time_svg,
                         "figures/bench-memory.svg": bench_memory_svg}
    found = generators()
    assert found["figures/bench-time.svg"] is bench_time_svg
    assert found["figures/bench-memory.svg"] is bench_memory_svg


def test_load_results_reads_the_committed_run(tmp_path):
    assert load_results() == DATA
    other = tmp_path / "r.json"
    other.write_text('{"sweep": 1}')
    assert load_results(other) == {"sweep": 1}


@pytest.mark.parametrize("mode", ["full", "causal"])
def test_series_are_the_stored_numbers_in_ms_and_mib(mode):
    times = series(DATA, "median_s", mode)
    memory = series(DATA, "peak_extra_bytes", mode)
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
    assert series(data, "median_s") == {"naive": ([64, 128], [2.0, 1.0])}
    assert series(data, "peak_extra_bytes") == {"naive": ([64, 128], [1.0, 2.0])}


@pytest.fixture(scope="module")
def figures():
    return {"time": bench_time_svg(), "memory": bench_memory_svg()}


@pytest.mark.parametrize("kind", ["time", "memory"])
def test_figure_is_deterministic_svg_on_white_with_every_series(figures, kind):
    svg = figures[kind]
    assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    again = bench_time_svg() if kind == "time" else bench_memory_svg()
    assert again == svg  # no date, salted ids: the same bytes at every build
    # The first thing drawn is the figure's own white background.
    assert re.search(r"fill:\s*(#[0-9a-f]{6})", svg).group(1) == "#ffffff"
    assert "<text" not in svg  # text drawn as paths: no font to load
    for method in METHODS:
        assert svg.count(f'id="series-{method}"') == 1, method
    assert svg.count('id="series-') == len(METHODS)


def test_figures_differ_and_use_log_log_axes(figures, monkeypatch):
    assert figures["time"] != figures["memory"]
    seen = {}
    import matplotlib.axes

    real = matplotlib.axes.Axes.legend

    def spy(ax, *args, **kwargs):
        seen["x"], seen["y"] = ax.get_xscale(), ax.get_yscale()
        seen["labels"] = [line.get_label() for line in ax.get_lines()]
        seen["ticks"] = list(ax.get_xticks())
        return real(ax, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", spy)
    bench_svg(DATA, "median_s", "causal")
    assert seen["x"] == seen["y"] == "log"
    assert seen["labels"] == [efficient_plots.STYLES[m][0] for m in METHODS]
    assert seen["ticks"] == DATA["sweep"]["config"]["T"]


def test_an_unknown_method_still_gets_a_line():
    data = copy.deepcopy(DATA)
    data["sweep"]["results"]["new_method"] = data["sweep"]["results"]["sdpa"]
    svg = bench_svg(data, "median_s")
    assert 'id="series-new_method"' in svg
