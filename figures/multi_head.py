"""The figure of docs/multi-head.md's "Different heads, different weights": the
weights of both heads of the page's seeded, untrained example."""

from __future__ import annotations

import torch

from figures.svg import card, label_cells, to_svg
from snippets.multi_head import MultiHeadAttention


def seeded_head_weights():
    """(H, T, T) weights of every head for sequence 0 of the page's seeded example.

    The example is ``torch.manual_seed(0)``, then ``MultiHeadAttention(8, 2)``, then
    ``x = torch.randn(2, 5, 8)``: an untrained layer, H = 2, T = 5. The draws run in
    a forked random state, so the caller's generator is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MultiHeadAttention(8, 2)
        x = torch.randn(2, 5, 8)  # (B, T, D)
    with torch.no_grad():
        _, weights = model(x, need_weights=True)  # (B, H, T, T)
    return weights[0]  # (H, T, T)


def heads_heatmap_svg():
    """One heatmap per head of ``seeded_head_weights()``; each row's largest weight
    is outlined."""
    weights = seeded_head_weights().numpy()  # (H, T, T)
    num_heads, seq_len, _ = weights.shape
    head_dim = 8 // num_heads
    top = max(0.5, float(weights.max()))  # colour scale: 0 .. 0.5 at least
    with card("multihead-heads") as plt:
        fig, axes = plt.subplots(1, num_heads, figsize=(3.6 * num_heads + 1.2, 4.0),
                                 layout="constrained")
        for h, ax in enumerate(axes):
            image = ax.imshow(weights[h], cmap="Blues", vmin=0.0, vmax=top)
            for i, best in enumerate(weights[h].argmax(axis=-1)):
                ax.add_patch(plt.Rectangle((best - 0.5, i - 0.5), 1, 1, fill=False,
                                           edgecolor="#b2182b", lw=2.2))
            label_cells(ax, image, weights[h], ".2f", fontsize=9)
            ax.set_xticks(range(seq_len))
            ax.set_yticks(range(seq_len))
            ax.set_xlabel("key (token attended to)")
            ax.set_ylabel("query (token attending)")
            ax.set_title(f"head {h}: features {h * head_dim}\u2013"
                         f"{(h + 1) * head_dim - 1}")
        fig.colorbar(image, ax=list(axes), label="attention weight", fraction=0.04)
        fig.suptitle("Untrained MultiHeadAttention(8, 2): the two heads' weights, "
                     "sequence 0")
        return to_svg(fig)


GENERATED = {"figures/multihead-heads.svg": heads_heatmap_svg}
