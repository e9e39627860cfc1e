"""The article's numerical example, worked to the last number.

The article takes three tokens with the scalar embeddings 1, 2 and 3, sets
Q = K = V = x and stops after writing down QK^T. ``worked_example`` computes every
stage after that (scale, exponentials, row sums, weights, output) so the page, its
tables, the heat map and the diagram on ``docs/diagram.md`` all show the same numbers.
``scaling_example`` is a second example, with d_k = 4, in which dividing by sqrt(d_k)
changes the weights.
"""

# --8<-- [start:imports]
import math

import torch
# --8<-- [end:imports]

from snippets.attention import (
    attention_scores,
    attention_weights,
    project,
    scale_scores,
    weighted_sum,
)
from snippets.checks import as_numbers, check_tensor, check_type, check_values

__all__ = [
    "softmax_by_hand",
    "worked_example",
    "scaling_example",
    "fmt",
]


# --8<-- [start:softmax-by-hand]
def softmax_by_hand(scores):
    """Softmax along the last dimension, in the three steps one does by hand.

    scores: (..., T_q, T_k). Returns ``(exps, sums, weights)``: exps (..., T_q, T_k)
    is e to the power of each score, sums (..., T_q, 1) is each row's total (kept as
    a column so it divides every entry of its row), weights (..., T_q, T_k) = exps /
    sums. No max is subtracted first, so that the exponentials are the ones a reader
    writes down; for large scores use ``torch.softmax``, which does subtract it.

    Dtypes: float16, bfloat16, float32, float64, computed in that dtype; where
    nothing overflows, the weights are within 1e-3 of torch.softmax in float16,
    1e-2 in bfloat16, 1e-6 in float32 and 1e-12 in float64.
    """
    check_tensor("scores", scores, "(..., T_k)")
    exps = torch.exp(scores)  # (..., T_q, T_k)
    sums = exps.sum(dim=-1, keepdim=True)  # (..., T_q, 1)
    return exps, sums, exps / sums  # (..., T_q, T_k) / (..., T_q, 1) -> (..., T_q, T_k)
# --8<-- [end:softmax-by-hand]


# --8<-- [start:worked-example]
def worked_example(embeddings=(1.0, 2.0, 3.0)):
    """Every stage of the article's example: one scalar embedding per token.

    ``embeddings`` holds T numbers, one per token, so x has shape (T, d_model) =
    (T, 1). W_q = W_k = W_v = [1] (a 1 x 1 identity), which makes Q = K = V = x, as
    the article says, and d_k = d_v = 1. Computed in float64: float32 keeps about 7
    significant digits, too few for the 4th decimal of e^9 = 8103.0839.

    Returns a dict of tensors: x, q, k, v and output (T, 1); w (1, 1); scores,
    scaled, exps and weights (T, T); sums (T, 1); plus d_k (int) and scale =
    sqrt(d_k) (float).
    """
    x = as_numbers("embeddings", embeddings, torch.float64)
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(
            "embeddings must be a non-empty flat sequence of numbers (one scalar per "
            f"token), got shape {tuple(x.shape)}"
        )
    x = x.reshape(-1, 1)  # (T,) -> (T, d_model) = (T, 1): one row per token
    w = torch.ones(1, 1, dtype=torch.float64)  # W_q = W_k = W_v = [1]
    q, k, v = project(x, w, w, w)  # each (T, 1) @ (1, 1) -> (T, 1), equal to x
    d_k = q.shape[-1]  # 1
    scores = attention_scores(q, k)  # (T, 1) @ (1, T) -> (T, T)
    scaled = scale_scores(scores, d_k)  # divided by sqrt(1) = 1: unchanged
    exps, sums, weights = softmax_by_hand(scaled)  # (T, T), (T, 1), (T, T)
    output = weighted_sum(weights, v)  # (T, T) @ (T, 1) -> (T, 1)
    return {
        "x": x, "w": w, "q": q, "k": k, "v": v, "d_k": d_k, "scale": math.sqrt(d_k),
        "scores": scores, "scaled": scaled, "exps": exps, "sums": sums,
        "weights": weights, "output": output,
    }
# --8<-- [end:worked-example]


# --8<-- [start:scaling-example]
def scaling_example():
    """Three tokens of width 4 (d_k = 4, so sqrt(d_k) = 2), with Q = K = V = x.

    Returns a dict: x (3, 4); scores and scaled (3, 3); the weights without and with
    the division by sqrt(d_k), both (3, 3); and d_k.
    """
    x = torch.tensor(
        [
            [1.0, 0.0, 1.0, 0.0],  # token 1: features 1 and 3
            [0.0, 1.0, 0.0, 1.0],  # token 2: features 2 and 4, none shared with 1
            [1.0, 1.0, 1.0, 1.0],  # token 3: all four features
        ],
        dtype=torch.float64,
    )  # (T, d_k) = (3, 4)
    d_k = x.shape[-1]
    scores = attention_scores(x, x)  # (3, 4) @ (4, 3) -> (3, 3)
    scaled = scale_scores(scores, d_k)  # divided by sqrt(4) = 2
    return {
        "x": x, "d_k": d_k, "scores": scores, "scaled": scaled,
        "weights_unscaled": attention_weights(scores),  # (3, 3)
        "weights_scaled": attention_weights(scaled),  # (3, 3)
    }
# --8<-- [end:scaling-example]


# --8<-- [start:fmt]
def fmt(value) -> str:
    """A number as the pages write it: whole numbers bare, the rest to 4 decimals.

    value: a real number, or a tensor holding one.
    """
    check_type("value", value, (int, float, torch.Tensor), "a number or a tensor")
    number = check_values("value", as_numbers("value", value, torch.float64))
    if number.numel() != 1:
        raise ValueError(f"value must be one number, got a tensor of shape "
                         f"{tuple(number.shape)}")
    value = number.item()
    return f"{value:.0f}" if value.is_integer() else f"{value:.4f}"
# --8<-- [end:fmt]
