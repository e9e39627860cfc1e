"""The figure of docs/scaling.md: what dividing by sqrt(d_k) does, in three panels."""

from __future__ import annotations

import math

from figures.svg import card, to_svg
from snippets.scaling import measure_scaling


def scaling_figure_svg(results=None):
    """``measure_scaling()``'s numbers (or ``results``) as three panels over a log2
    d_k axis. Tick labels are plain numbers (no mathtext) and the layout is fixed,
    which keeps the drawing well under a second."""
    from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

    results = measure_scaling() if results is None else results
    d_k = results["d_k"]
    colours = {"unscaled": "#b03a2e", "scaled": "#1f4e9c"}
    labels = {"unscaled": "q·k", "scaled": "q·k / √d_k"}
    with card("scaling", {"font.size": 10, "axes.edgecolor": "#333333"}) as plt:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.3)
        std_ax, max_ax, grad_ax = axes
        legend_at = {std_ax: "upper left", max_ax: "center right",
                     grad_ax: "lower left"}
        std_ax.plot(d_k, [math.sqrt(d) for d in d_k], color="#bbbbbb", linewidth=6,
                    label="√d_k (theory)")
        max_ax.axhline(1 / results["num_keys"], color="#666666", linestyle=":",
                       linewidth=2, label=f"uniform (1/{results['num_keys']})")
        for name, colour in colours.items():
            kw = {"color": colour, "marker": "o", "markersize": 4,
                  "label": labels[name]}
            std_ax.plot(d_k, results[f"std_{name}"], **kw)
            max_ax.plot(d_k, results[f"max_weight_{name}"], **kw)
            grad_ax.plot(d_k, results[f"grad_{name}"], **kw)
        grad_ax.plot(d_k, results["grad_median_unscaled"], color=colours["unscaled"],
                     linestyle="--", label="q·k, median over rows (mean: solid)")
        std_ax.set(title="Spread of the scores", ylabel="standard deviation")
        max_ax.set(title="Largest softmax weight", ylabel="mean over rows", ylim=(0, 1))
        grad_ax.set(title="Gradient through the softmax",
                    ylabel="norm of d softmax / d scores")
        std_ax.set_yscale("log", base=2)
        std_ax.yaxis.set_major_locator(FixedLocator([1, 2, 4, 8, 16, 32]))
        grad_ax.set_yscale("log")
        grad_ax.yaxis.set_major_locator(FixedLocator([1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1]))
        grad_ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        std_ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(d_k))
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
            ax.set_xlabel("d_k (log scale)")
            ax.tick_params(axis="x", labelsize=8)
            ax.grid(True, color="#dddddd", linewidth=0.6)
            ax.legend(fontsize=8, frameon=False, loc=legend_at[ax])
        return to_svg(fig)


GENERATED = {"figures/scaling.svg": scaling_figure_svg}
