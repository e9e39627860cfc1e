"""Why attention divides the scores by sqrt(d_k), measured rather than asserted.

The page ``docs/scaling.md`` shows this file one section at a time. For query and key
vectors with independent unit-variance entries, ``measure_scaling`` draws scores for
every d_k from 4 to 1024 and reports, without and with the division by sqrt(d_k):
the spread of the scores, how close the softmax comes to putting all its weight on
one key, and how much gradient the softmax lets through. ``figures/scaling.py``
draws the same numbers.
"""

# --8<-- [start:imports]
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
