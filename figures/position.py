"""The figures of docs/position.md: the sinusoidal position table, and RoPE's score
against the relative position."""

from __future__ import annotations

import torch

from figures.svg import card, to_svg
from snippets.position import rope_score, sinusoidal_positions


def sinusoidal_svg(T=64, d_model=64):
    """Heatmap of ``sinusoidal_positions(T, d_model)``: one row per position."""
    table = sinusoidal_positions(T, d_model)  # (T, d_model)
    with card("position-sinusoidal", {"font.size": 10}) as plt:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        image = ax.imshow(table.numpy(), cmap="RdBu", vmin=-1, vmax=1, aspect="auto",
                          interpolation="nearest")
        ax.set_xlabel("dimension (even: sin, odd: cos; frequency falls to the right)")
        ax.set_ylabel("position")
        fig.colorbar(image, ax=ax, label="value")
        fig.tight_layout()
        return to_svg(fig)


def rope_relative_svg(head_dim=64, key_positions=(0, 100, 1000), span=40, seed=0):
    """RoPE score of one vector with itself against the relative position m - n,
    for keys at several absolute positions n. The curves coincide."""
    q = torch.randn(head_dim, generator=torch.Generator().manual_seed(seed))
    offsets = list(range(-span, span + 1))
    styles = [("-", 3.0), ("--", 1.8), (":", 1.8)]
    with card("position-rope", {"font.size": 10}) as plt:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        for n, (style, width) in zip(key_positions, styles):
            scores = [rope_score(q, q, n + offset, n) for offset in offsets]
            ax.plot(offsets, scores, linestyle=style, linewidth=width,
                    label=f"key at position n = {n}")
        ax.set_xlabel("relative position m - n of the query")
        ax.set_ylabel("score q·k after RoPE")
        ax.legend(frameon=False)
        fig.tight_layout()
        return to_svg(fig)


GENERATED = {
    "figures/sinusoidal-positions.svg": sinusoidal_svg,
    "figures/rope-relative.svg": rope_relative_svg,
}
