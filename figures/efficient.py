"""The figures of docs/efficient.md, drawn from the committed benchmark.

``bench/results.json`` is what ``make bench`` (``python -m bench.run``) wrote on one
machine. The figures plot its sweep: one attention layer (B = 1, 8 heads of 64) for
T = 128 .. 8192, every method, median time and peak extra memory against T on
log-log axes. The file is read when a figure is drawn, not at import.
"""

from __future__ import annotations

import json
from pathlib import Path

from figures.svg import INK, card, to_svg

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results.json"

# Method key in results.json -> (legend label, colour, marker, line style).
# Colours from the Okabe-Ito palette (distinct for colour-blind readers too).
STYLES = {
    "naive": ("naive (builds the T\u00d7T weights)", "#d55e00", "o", "-"),
    "sdpa": ("torch SDPA (fused kernel)", "#0072b2", "s", "-"),
    "tiled": ("tiled, block 128", "#009e73", "^", "-"),
    "tiled_block_256": ("tiled, block 256", "#009e73", "v", "--"),
    "multihead": ("MultiHeadAttention (ours)", "#cc79a7", "D", "-"),
    "torch_mha": ("torch.nn.MultiheadAttention", "#444444", "x", ":"),
}
QUANTITIES = {
    # key in a result -> (axis label, factor from the stored unit)
    "median_s": ("median time per call (ms)", 1e3),
    "peak_extra_bytes": ("peak extra memory (MiB)", 1 / 2**20),
}


def load_results(path=RESULTS):
    """The benchmark results as a dict."""
    return json.loads(Path(path).read_text())


def series(results, quantity, mode="full"):
    """{method: ([T, ...], [value, ...])} for one quantity ("median_s" or
    "peak_extra_bytes") and one mode ("full" or "causal"), in the units plotted
    (ms, MiB). Points the benchmark skipped (the naive version where memory was
    short) are left out."""
    factor = QUANTITIES[quantity][1]
    out = {}
    for method, by_mode in results["sweep"]["results"].items():
        ts, values = [], []
        for t, point in sorted(by_mode[mode].items(), key=lambda item: int(item[0])):
            if point.get("skipped"):
                continue
            ts.append(int(t))
            values.append(point[quantity] * factor)
        out[method] = (ts, values)
    return out


def bench_svg(results, quantity, mode="full"):
    """One log-log chart of ``quantity`` against T for every method; each method's
    line has the id ``series-<method>``."""
    label, _ = QUANTITIES[quantity]
    machine = results["machine"]
    with card(f"efficient-{quantity}-{mode}") as plt:
        fig, ax = plt.subplots(figsize=(7.5, 5.0), layout="constrained")
        all_ts = set()
        for method, (ts, values) in series(results, quantity, mode).items():
            name, colour, marker, line = STYLES.get(method, (method, INK, ".", "-"))
            ax.plot(ts, values, label=name, color=colour, marker=marker,
                    linestyle=line, linewidth=1.8, markersize=6, gid=f"series-{method}")
            all_ts.update(ts)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(all_ts)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(True, which="major", color="#d0d0d0", linewidth=0.7)
        ax.set_xlabel("sequence length T (tokens)")
        ax.set_ylabel(label)
        what = "time" if quantity == "median_s" else "peak extra memory"
        ax.set_title(f"One attention layer, {mode} attention: {what} "
                     f"(B = 1, 8 heads of 64)\n{machine['cpu_model']}, "
                     f"{machine['logical_cores']} cores, torch "
                     f"{machine['torch_version']}, {machine['date_utc'][:10]}",
                     fontsize=11)
        ax.legend(loc="upper left", fontsize=9, frameon=True, facecolor="white",
                  edgecolor="#d0d0d0")
        return to_svg(fig)


def bench_time_svg():
    """Median time against T, full attention, from bench/results.json."""
    return bench_svg(load_results(), "median_s", "full")


def bench_memory_svg():
    """Peak extra memory against T, full attention, from bench/results.json."""
    return bench_svg(load_results(), "peak_extra_bytes", "full")


GENERATED = {
    "figures/bench-time.svg": bench_time_svg,
    "figures/bench-memory.svg": bench_memory_svg,
}
