"""The figure of docs/softmax-stability.md: row sums after attention dropout."""

from __future__ import annotations

import torch

from figures.svg import card, to_svg
from snippets.softmax_stability import attention_dropout


def dropout_row_sums_svg(p=0.1, num_masks=4000, seed=0):
    """Histogram: the row sum of one row of attention weights after dropout, over
    ``num_masks`` masks. Each sum is off 1; their average is 1."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.softmax(torch.randn(8, generator=generator), dim=-1)  # (8,)
    copies = weights.expand(num_masks, 8)  # (N, 8)
    sums = attention_dropout(copies, p, generator=generator).sum(dim=-1)  # (N,)
    with card("softmax-dropout", {"font.size": 10}) as plt:
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        ax.hist(sums.numpy(), bins=40, color="#5c6bc0")
        ax.axvline(1.0, color="black", linestyle="--", label="1 (no dropout)")
        mean = sums.mean().item()
        ax.axvline(mean, color="#d84315", label=f"mean of the sums = {mean:.3f}")
        ax.set_xlabel(f"row sum after dropout (p = {p})")
        ax.set_ylabel(f"count of {num_masks} masks")
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
        return to_svg(fig)


GENERATED = {"figures/dropout-row-sums.svg": dropout_row_sums_svg}
