"""The figure of docs/numerical-example.md: the worked example's weights."""

from __future__ import annotations

from figures.svg import card, label_cells, to_svg
from snippets.numerical_example import fmt, worked_example


def weights_heatmap_svg():
    """Heat map of the worked example's 3 x 3 weights, each cell labelled with its
    weight to 4 decimals; rows are the queries, columns the keys."""
    stages = worked_example()
    weights = stages["weights"].numpy()  # (3, 3)
    subscripts = "₁₂₃₄₅₆₇₈₉"
    labels = [f"x{subscripts[i]}={fmt(v)}" for i, v in enumerate(stages["x"][:, 0])]
    ticks = [i + 0.5 for i in range(len(labels))]
    with card("numerical-heatmap") as plt:
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        # pcolormesh draws vector cells (imshow would embed a bitmap in the SVG); 64
        # shades are as many as the eye tells apart, and make a colorbar of 64 bands
        blues = plt.colormaps["Blues"].resampled(64)
        mesh = ax.pcolormesh(weights, cmap=blues, vmin=0.0, vmax=1.0)
        ax.invert_yaxis()  # query 1 on top, as in the matrix
        ax.set_aspect("equal")
        label_cells(ax, mesh, weights, ".4f", centre=0.5)  # row = query, column = key
        ax.set_xticks(ticks, labels)
        ax.set_yticks(ticks, labels)
        ax.set_xlabel("key (the token looked at)")
        ax.set_ylabel("query (the token looking)")
        ax.set_title("Attention weights (each row sums to 1)")
        colorbar = fig.colorbar(mesh, ax=ax, label="weight")
        colorbar.solids.set_rasterized(False)  # vector, not an embedded bitmap
        colorbar.solids.set_edgecolor("face")  # no hairline seams between the bands
        fig.tight_layout()
        return to_svg(fig)


GENERATED = {"figures/numerical-heatmap.svg": weights_heatmap_svg}
