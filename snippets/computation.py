"""The five steps of attention in NumPy, as twins of ``snippets/attention.py``.

The page ``docs/computation.md`` shows every step twice, side by side: the NumPy
function from this file and the PyTorch function from ``snippets/attention.py``. Both
take any number of leading batch dimensions, and the tests check that they agree on
every intermediate result (NumPy in float64, PyTorch in float32).

Shape legend: B = batch, T = tokens, d_model = embedding width, d_k = width of the
queries and keys, d_v = width of the values.
"""

# --8<-- [start:imports]
import numpy as np
# --8<-- [end:imports]

# Outside any section: the pages include snippets/checks.py's section instead.
from snippets.checks import check_shapes, check_size

__all__ = [
    "example_inputs",
    "np_project",
    "np_attention_scores",
    "np_scale_scores",
    "np_attention_weights",
    "np_weighted_sum",
    "np_self_attention",
]


# --8<-- [start:example-inputs]
def example_inputs(batch=2, seq_len=3, d_model=6, d_k=4, d_v=5, seed=0):
    """Seeded float64 inputs: x (B, T, d_model) and w_q, w_k (d_model, d_k),
    w_v (d_model, d_v).

    The embeddings have N(0, 1) entries. The projection matrices have N(0, 1/d_model)
    entries, so that a projected entry has variance about 1 (unscaled N(0, 1) matrices
    make it d_model; the PyTorch example page shows what that does to the softmax, and
    the scales libraries start their layers at).
    """
    for name, size in (("batch", batch), ("seq_len", seq_len), ("d_model", d_model),
                       ("d_k", d_k), ("d_v", d_v)):
        check_size(name, size)
    check_size("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, seq_len, d_model))  # (B, T, d_model)
    w_q = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)  # (d_model, d_k)
    w_k = rng.standard_normal((d_model, d_k)) / np.sqrt(d_model)  # (d_model, d_k)
    w_v = rng.standard_normal((d_model, d_v)) / np.sqrt(d_model)  # (d_model, d_v)
    return x, w_q, w_k, w_v
# --8<-- [end:example-inputs]


# --8<-- [start:numpy-project]
def np_project(x, w_q, w_k, w_v):
    """Step 1: project the embeddings into queries, keys and values.

    x: (..., T, d_model); w_q, w_k: (d_model, d_k); w_v: (d_model, d_v).
    Returns q, k: (..., T, d_k) and v: (..., T, d_v). ``@`` treats every dimension
    before the last two as a batch dimension, so one call serves any batch shape.
    Dtypes: float16, float32, float64, all four arrays alike; the numbers of NumPy's
    matmul.
    """
    check_shapes(x=(x, "(..., T, d_model)"), w_q=(w_q, "(d_model, d_k)"),
                 w_k=(w_k, "(d_model, d_k)"), w_v=(w_v, "(d_model, d_v)"),
                 kind=np.ndarray)
    q = x @ w_q  # (..., T, d_model) @ (d_model, d_k) -> (..., T, d_k)
    k = x @ w_k  # (..., T, d_model) @ (d_model, d_k) -> (..., T, d_k)
    v = x @ w_v  # (..., T, d_model) @ (d_model, d_v) -> (..., T, d_v)
    return q, k, v
# --8<-- [end:numpy-project]


# --8<-- [start:numpy-scores]
def np_attention_scores(q, k):
    """Step 2: the dot product of every query with every key.

    q: (..., T_q, d_k), k: (..., T_k, d_k) -> scores: (..., T_q, T_k).
    ``np.swapaxes(k, -2, -1)`` turns only the last two axes; ``k.T`` would reverse
    all of them, batch axes included.
    Dtypes: float16, float32, float64, q and k alike; the numbers of NumPy's matmul.
    """
    check_shapes(q=(q, "(..., T_q, d_k)"), k=(k, "(..., T_k, d_k)"), kind=np.ndarray)
    return q @ np.swapaxes(k, -2, -1)  # (..., T_q, d_k) @ (..., d_k, T_k)
# --8<-- [end:numpy-scores]


# --8<-- [start:numpy-scale]
def np_scale_scores(scores, d_k):
    """Step 3: divide by sqrt(d_k) so the scores' spread does not grow with d_k.

    Dtypes: float16, float32, float64; the numbers of NumPy's division.
    """
    check_shapes(scores=(scores, "(...)"), kind=np.ndarray)
    check_size("d_k", d_k)
    return scores / d_k**0.5  # same shape and dtype: (..., T_q, T_k)
# --8<-- [end:numpy-scale]


# --8<-- [start:numpy-softmax]
def np_attention_weights(scores):
    """Step 4: softmax over the keys (the last axis), computed stably.

    scores: (..., T_q, T_k) -> weights of the same shape, each row >= 0, summing
    to 1. Subtracting each row's maximum first leaves the result unchanged
    (the factor exp(-max) cancels) but keeps exp() from overflowing: the largest
    exponent is exp(0) = 1.
    Dtypes: float16, float32, float64; within 1e-3 of torch.softmax in float16,
    1e-6 in float32 and 1e-12 in float64.
    """
    check_shapes(scores=(scores, "(..., T_k)"), kind=np.ndarray)
    top = scores.max(axis=-1, keepdims=True, initial=-np.inf)  # (an empty row: -inf)
    shifted = scores - top  # row max becomes 0
    e = np.exp(shifted)  # (..., T_q, T_k), every entry in (0, 1]
    return e / e.sum(axis=-1, keepdims=True)  # rows sum to 1
# --8<-- [end:numpy-softmax]


# --8<-- [start:numpy-weighted-sum]
def np_weighted_sum(weights, v):
    """Step 5: each output row is the weights' blend of the value rows.

    weights: (..., T_q, T_k), v: (..., T_k, d_v) -> output: (..., T_q, d_v).
    Dtypes: float16, float32, float64, both alike; the numbers of NumPy's matmul.
    """
    check_shapes(weights=(weights, "(..., T_q, T_k)"), v=(v, "(..., T_k, d_v)"),
                 kind=np.ndarray)
    return weights @ v  # (..., T_q, T_k) @ (..., T_k, d_v) -> (..., T_q, d_v)
# --8<-- [end:numpy-weighted-sum]


# --8<-- [start:numpy-attention]
def np_self_attention(x, w_q, w_k, w_v):
    """The five steps in a row: x (..., T, d_model) -> output (..., T, d_v) and
    weights (..., T, T).

    Dtypes: float16, float32, float64, all four arrays alike; within 1e-2 of
    torch.nn.functional.scaled_dot_product_attention in float16, 1e-5 in float32
    and 1e-12 in float64.
    """
    q, k, v = np_project(x, w_q, w_k, w_v)  # q, k: (..., T, d_k); v: (..., T, d_v)
    scores = np_scale_scores(np_attention_scores(q, k), q.shape[-1])  # (..., T, T)
    weights = np_attention_weights(scores)  # (..., T, T), rows sum to 1
    return np_weighted_sum(weights, v), weights  # (..., T, d_v), (..., T, T)
# --8<-- [end:numpy-attention]
