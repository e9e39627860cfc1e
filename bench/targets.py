"""The targets: every ratio the docs quote, computed from the stored times (named by
their JSON paths), with pass or fail."""

from __future__ import annotations

from bench.config import MODES


def resolve(data, path):
    for key in path:
        data = data[key]
    return data


COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">=": lambda a, b: a >= b}


def target(data, name, description, numerator, denominator, op, threshold):
    """ratio = the value at JSON path ``numerator`` / the one at ``denominator``.

    A zero denominator (a memory peak below one page, in --quick runs) gives
    ratio None and a failed target."""
    bottom = resolve(data, denominator)
    ratio = resolve(data, numerator) / bottom if bottom else None
    return {"name": name, "description": description, "numerator": numerator,
            "denominator": denominator, "ratio": ratio, "op": op,
            "threshold": threshold,
            "passed": ratio is not None and COMPARE[op](ratio, threshold)}


def make_targets(data):
    mha_time = ["mha", "times"]
    targets = [
        target(data, "multihead_vs_torch_no_mask",
               "MultiHeadAttention / nn.MultiheadAttention time, no mask",
               [*mha_time, "multihead_no_mask", "median_s"],
               [*mha_time, "torch_mha_no_mask", "median_s"], "<=", 0.80),
        target(data, "multihead_vs_torch_causal",
               "MultiHeadAttention / nn.MultiheadAttention time, causal",
               [*mha_time, "multihead_causal", "median_s"],
               [*mha_time, "torch_mha_causal", "median_s"], "<=", 0.65),
        target(data, "multihead_matmul_efficiency",
               "MultiHeadAttention GFLOP/s (no mask) / matmul GFLOP/s",
               ["mha", "achieved_gflops"], ["matmul", "gflops"], ">=", 0.75),
    ]
    t = str(data["sweep"]["config"]["T"][-1])
    res = ["sweep", "results"]
    for method in ("tiled", "tiled_block_256"):
        for mode in MODES:
            if data["sweep"]["results"]["naive"][mode][t].get("skipped"):
                continue
            label = f"{method}, T={t}, {mode}"
            targets += [
                target(data, f"{method}_vs_naive_time_{mode}",
                       f"{label}: time / naive time",
                       [*res, method, mode, t, "median_s"],
                       [*res, "naive", mode, t, "median_s"], "<", 1.0),
                target(data, f"{method}_vs_sdpa_time_{mode}",
                       f"{label}: time / torch SDPA time",
                       [*res, method, mode, t, "median_s"],
                       [*res, "sdpa", mode, t, "median_s"], "<=", 2.0),
                target(data, f"{method}_vs_naive_memory_{mode}",
                       f"{label}: peak extra memory / naive's",
                       [*res, method, mode, t, "peak_extra_bytes"],
                       [*res, "naive", mode, t, "peak_extra_bytes"], "<=", 1 / 16),
            ]
    return targets
