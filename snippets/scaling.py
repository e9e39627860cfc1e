"""Why attention divides the scores by sqrt(d_k), measured rather than asserted.

The page ``docs/scaling.md`` shows this file one section at a time. For query and key
vectors with independent unit-variance entries, ``measure_scaling`` draws scores for
every d_k from 4 to 1024 and reports, without and with the division by sqrt(d_k):
the spread of the scores, how close the softmax comes to putting all its weight on
one key, and how much gradient the softmax lets through. ``scaling_figure_svg``
draws the same numbers; the site's build runs it through ``GENERATED``.
"""

# --8<-- [start:imports]
import io
import math

import torch
# --8<-- [end:imports]

from snippets.attention import attention_scores, attention_weights, scale_scores
from snippets.checks import (
    HALF,
    as_numbers,
    check_keys,
    check_seed,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
)

__all__ = [
    "D_K_VALUES",
    "sample_scores",
    "softmax_jacobian_norm",
    "measure_scaling",
    "format_table",
    "scaling_figure_svg",
    "GENERATED",
]

# --8<-- [start:sample-scores]
def sample_scores(d_k_values, num_keys=16, num_groups=64, queries_per_group=64, seed=0):
    """Scores of random queries against random keys, unscaled and scaled, per d_k.

    Every entry of q and k is drawn independently from N(0, 1). There are
    ``num_groups`` groups of ``num_keys`` keys, each scored by ``queries_per_group``
    queries: R = num_groups * queries_per_group rows of ``num_keys`` scores.
    One seeded draw, as wide as the largest d_k, serves every d_k: the experiment
    at d_k uses the first d_k coordinates, which are independent unit-variance
    entries too, so the whole measurement is a few batched matmuls.

    Returns (unscaled, scaled), each of shape (len(d_k_values), R, num_keys), in
    float32.
    """
    check_type("d_k_values", d_k_values, (list, tuple), "a list of positive ints")
    if not d_k_values:
        raise ValueError(f"d_k_values must be a non-empty list of positive ints, "
                         f"got {d_k_values!r}")
    for i, d_k in enumerate(d_k_values):
        check_size(f"d_k_values[{i}]", d_k)
    check_size("num_keys", num_keys, minimum=2)
    check_size("num_groups", num_groups)
    check_size("queries_per_group", queries_per_group)
    check_seed("seed", seed)
    generator = torch.Generator().manual_seed(seed)
    width = max(d_k_values)
    q = torch.randn(num_groups, queries_per_group, width, generator=generator)
    k = torch.randn(num_groups, num_keys, width, generator=generator)
    unscaled, scaled = [], []
    for d_k in d_k_values:
        # (G, Q, d_k) @ (G, d_k, T) -> (G, Q, T), then one row per query: (G * Q, T)
        scores = attention_scores(q[..., :d_k], k[..., :d_k]).reshape(-1, num_keys)
        unscaled.append(scores)
        scaled.append(scale_scores(scores, d_k))  # divided by sqrt(d_k)
    return torch.stack(unscaled), torch.stack(scaled)  # each (len(d_k_values), R, T)
# --8<-- [end:sample-scores]


# --8<-- [start:jacobian-norm]
def softmax_jacobian_norm(weights):
    """Frobenius norm of d softmax / d scores, per row of weights: (..., T) -> (...).

    For p = softmax(s) the Jacobian is diag(p) - p p^T, and its norm bounds how much
    gradient reaches the scores: when one weight is near 1 and the rest near 0, every
    entry is near 0 and learning stalls. It is built entry by entry because the
    shorter closed form, sum(p^2) - 2 sum(p^3) + (sum(p^2))^2, subtracts numbers close
    to 1 and, in float32, rounds the small norm of such a row to 0.

    Dtypes: float16, bfloat16, float32, float64; the half types are computed in
    float32 and rounded once. Within 1e-3 (relative) of the norm of
    torch.autograd's Jacobian of torch.softmax in float16, 1e-2 in bfloat16, 1e-5
    in float32 and 1e-12 in float64.
    """
    check_tensor("weights", weights, "(..., T)")
    if weights.dtype in HALF:  # compute in float32, round once
        return softmax_jacobian_norm(weights.float()).to(weights.dtype)
    num_keys = weights.shape[-1]
    outer = weights[..., :, None] * weights[..., None, :]  # (..., T, T): p_i p_j
    eye = torch.eye(num_keys, dtype=weights.dtype, device=weights.device)  # (T, T)
    off_diagonal = outer * (1 - eye)  # p_i p_j where i != j
    jacobian = torch.diag_embed(weights * (1 - weights)) - off_diagonal  # (..., T, T)
    return torch.linalg.matrix_norm(jacobian)  # Frobenius norm: (...,)
# --8<-- [end:jacobian-norm]


# --8<-- [start:measure]
D_K_VALUES = tuple(2**i for i in range(2, 11))  # 4, 8, ..., 1024


def measure_scaling(d_k_values=D_K_VALUES, num_keys=16, seed=0):
    """For each d_k, without and with the division by sqrt(d_k):

    - ``std``: standard deviation of the scores (sqrt(d_k) and 1, in theory);
    - ``max_weight``: the largest softmax weight of a row, averaged over the rows
      (1 / num_keys for a uniform softmax, 1 for a one-hot one);
    - ``grad`` and ``grad_median``: mean and median over the rows of the softmax
      Jacobian's norm, the gradient that can flow back to the scores.

    Returns a dict of lists, one value per d_k, keyed like ``"std_unscaled"``.
    """
    unscaled, scaled = sample_scores(d_k_values, num_keys, seed=seed)  # (N, R, T)
    results = {"d_k": list(d_k_values), "num_keys": num_keys}
    for name, scores in (("unscaled", unscaled), ("scaled", scaled)):
        weights = attention_weights(scores)  # (N, R, T), rows sum to 1
        grad = softmax_jacobian_norm(weights)  # (N, R)
        results[f"std_{name}"] = scores.flatten(1).std(dim=1).tolist()
        results[f"max_weight_{name}"] = weights.amax(dim=-1).mean(dim=-1).tolist()
        results[f"grad_{name}"] = grad.mean(dim=-1).tolist()
        results[f"grad_median_{name}"] = grad.median(dim=-1).values.tolist()
    return results
# --8<-- [end:measure]


# --8<-- [start:table]
def format_table(results):
    """The measurements as a fixed-width text table, one line per d_k."""
    measures, names = ("std", "max_weight", "grad"), ("unscaled", "scaled")
    columns = ["d_k"] + [f"{m}_{n}" for m in measures for n in names]
    check_keys("results", results, columns)
    named = {f"results[{key!r}]": results[key] for key in columns}
    check_shapes(**{name: (as_numbers(name, value, torch.float64), "(N,)")
                    for name, value in named.items()})  # one number per d_k, each key
    titles = ("std of scores", "largest weight", "gradient norm")
    lines = [
        f"{'':>6}" + "".join(f"{title:>18}" for title in titles),
        f"{'d_k':>6}" + f"{'unscaled':>9}{'scaled':>9}" * len(titles),
    ]
    for i, d_k in enumerate(results["d_k"]):
        cells = [results[column][i] for column in columns[1:]]
        lines.append(f"{d_k:>6}" + "".join(f"{cell:>9.3f}" for cell in cells))
    return "\n".join(lines)
# --8<-- [end:table]


def scaling_figure_svg(results=None):
    """The measurements as three panels over a log2 d_k axis, as an SVG string.

    Drawn on a white background with dark text so that it stays legible when the
    site is in dark mode; ids are salted and the date left out, so the same numbers
    give the same file. Tick labels are plain numbers (no mathtext) and the layout is
    fixed, which keeps the drawing well under a second.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

    results = measure_scaling() if results is None else results
    d_k = results["d_k"]
    colours = {"unscaled": "#b03a2e", "scaled": "#1f4e9c"}
    labels = {"unscaled": "q·k", "scaled": "q·k / √d_k"}
    style = {
        "svg.hashsalt": "scaling",
        "svg.fonttype": "path",
        "font.size": 10,
        "text.color": "#1a1a1a",
        "axes.labelcolor": "#1a1a1a",
        "axes.edgecolor": "#333333",
        "xtick.color": "#1a1a1a",
        "ytick.color": "#1a1a1a",
        "figure.facecolor": "white",
        "axes.facecolor": "white",
        "savefig.facecolor": "white",
    }
    with matplotlib.rc_context(style):
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
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(fig)
    return buffer.getvalue()


GENERATED = {"figures/scaling.svg": scaling_figure_svg}
