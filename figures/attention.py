"""The figure of docs/attention.md: the hand-built head's weights as a heatmap."""

from __future__ import annotations

from figures.svg import card, label_cells, to_svg
from snippets.attention import handbuilt_attention


def handbuilt_heatmap_svg():
    """The hand-built head's weights on "The cat sat on the mat.", each cell
    labelled to 2 decimals, the row the page talks about ("sat") outlined."""
    tokens, weights = handbuilt_attention()
    w = weights.numpy()  # (T, T)
    with card("handbuilt-heatmap") as plt:
        fig, ax = plt.subplots(figsize=(5.6, 4.8))
        image = ax.imshow(w, cmap="Blues", vmin=0.0, vmax=1.0)
        sat = tokens.index("sat")
        ax.add_patch(plt.Rectangle((-0.5, sat - 0.5), len(tokens), 1, fill=False,
                                   edgecolor="#b2182b", lw=2.5))
        label_cells(ax, image, w, ".2f")
        ax.set_xticks(range(len(tokens)), tokens)
        ax.set_yticks(range(len(tokens)), tokens)
        ax.set_xlabel("key: the token attended to")
        ax.set_ylabel("query: the token attending")
        ax.set_title("Hand-built head on \u201cThe cat sat on the mat.\u201d")
        fig.colorbar(image, ax=ax, label="attention weight", fraction=0.046)
        fig.tight_layout()
        return to_svg(fig)


GENERATED = {"figures/handbuilt-heatmap.svg": handbuilt_heatmap_svg}
