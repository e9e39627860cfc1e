"""The figure of docs/pytorch-example.md: how much each way of making W_Q and W_K
saturates the softmax."""

from __future__ import annotations

import torch

from figures.svg import card, to_svg
from snippets.pytorch_example import scaled_scores_by_init


def saturation_figure_svg():
    """Histograms of each row's largest weight, for the three ways of making the
    weights (1000 runs of the article's example each)."""
    scores = scaled_scores_by_init()
    seq_len = next(iter(scores.values())).shape[-1]
    bins = torch.linspace(1 / seq_len, 1.0, 31).tolist()
    colors = ("#b2182b", "#ef8a62", "#2166ac")
    with card("pytorch-example-saturation") as plt:
        fig, axes = plt.subplots(3, 1, figsize=(6.4, 5.6), sharex=True, sharey=True)
        for ax, (name, s), color in zip(axes, scores.items(), colors):
            largest = torch.softmax(s, dim=-1).max(dim=-1).values.flatten()
            ax.hist(largest.tolist(), bins=bins, color=color)
            ax.set_title(f"W_Q, W_K from {name}: mean {largest.mean():.2f}",
                         fontsize=11)
            ax.set_ylabel("rows")
        axes[-1].set_xlabel(
            f"largest weight in a row (1/{seq_len} = spread evenly, 1 = one key only)"
        )
        fig.tight_layout()
        return to_svg(fig)


GENERATED = {"figures/pytorch-example-saturation.svg": saturation_figure_svg}
