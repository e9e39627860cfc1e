"""Softmax that does not overflow, log-sum-exp, and dropout on the attention weights.

The page ``docs/softmax-stability.md`` shows this file one section at a time:
``naive-softmax`` is the textbook formula, ``overflow-threshold`` finds by search the
largest input whose ``exp`` a floating-point type can hold, ``stable-softmax`` is the
max-subtracted version every library uses, ``logsumexp`` and ``log-softmax`` are its
log-space relatives, and ``attention-dropout`` / ``dropout-average`` show what
training-time dropout does to the weights and why their expected value is unchanged.

Shape legend: scores and weights are (..., T_q, T_k); softmax runs over one dimension
(the keys, ``dim=-1``, by default).
"""

# --8<-- [start:imports]
import math

import torch
# --8<-- [end:imports]

# Outside any section: the pages include snippets/checks.py's section instead.
from snippets.checks import (
    HALF,
    check_choice,
    check_dim,
    check_flag,
    check_number,
    check_size,
    check_tensor,
    check_type,
)

__all__ = [
    "naive_softmax",
    "overflow_threshold",
    "stable_softmax",
    "logsumexp",
    "log_softmax",
    "attention_dropout",
    "dropout_average",
]


# --8<-- [start:naive-softmax]
def naive_softmax(x, dim=-1):
    """exp(x) / sum(exp(x)), exactly as the formula is written. Do not use it.

    x: (..., n) -> (..., n) (softmax over ``dim``). Correct in exact arithmetic, but
    exp(x) overflows to inf once x passes ``overflow_threshold(x.dtype)``, and
    inf / inf is NaN.

    Dtypes: float16, bfloat16, float32, float64, computed in that dtype on purpose;
    where nothing overflows, within 1e-3 of torch.softmax in float16, 1e-2 in
    bfloat16, 1e-6 in float32 and 1e-12 in float64.
    """
    check_dim("x", check_tensor("x", x, "(..., n)"), dim)
    e = torch.exp(x)  # same shape as x; inf where x is too large
    return e / e.sum(dim=dim, keepdim=True)  # (..., n) / (..., 1) -> (..., n)
# --8<-- [end:naive-softmax]


# --8<-- [start:overflow-threshold]
FLOAT_BITS = {  # each floating-point type, and the integer type of the same width
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def overflow_threshold(dtype):
    """The largest x of ``dtype`` whose exp(x), computed in ``dtype``, is finite.

    Found by bisection over the bit patterns of the non-negative floats of the type,
    which are ordered like the numbers they encode: at every step exp(lo) is finite
    and exp(hi) is not, until lo and hi are neighbours. No formula is trusted: the
    answer is whatever torch.exp itself does at the edge.
    """
    check_choice("dtype", dtype, tuple(FLOAT_BITS))
    bits = FLOAT_BITS[dtype]

    def as_float(pattern):  # reinterpret an integer bit pattern as a float
        return torch.tensor(pattern, dtype=bits).view(dtype)

    lo = 0  # the bits of 0.0: exp(0) = 1 is finite
    hi = torch.tensor(math.inf, dtype=dtype).view(bits).item()  # exp(inf) is not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if torch.isfinite(torch.exp(as_float(mid))):
            lo = mid
        else:
            hi = mid
    return as_float(lo).item()
# --8<-- [end:overflow-threshold]


# --8<-- [start:stable-softmax]
def stable_softmax(x, dim=-1):
    """Softmax with the row maximum subtracted first: the same result, no overflow.

    x: (..., n) -> (..., n). After the shift the largest exponent is exp(0) = 1, so
    every term lies in (0, 1] and the sum in [1, n]: nothing overflows and the sum
    is never 0. As in torch.softmax, a row that is all -inf gives NaN.

    Dtypes: float16, bfloat16, float32, float64; the half types are computed in
    float32 and rounded once, as torch.softmax does. Within 1e-3 of torch.softmax
    in float16, 1e-2 in bfloat16, 1e-6 in float32 and 1e-12 in float64.
    """
    check_dim("x", check_tensor("x", x, "(..., n)"), dim)
    if x.dtype in HALF:  # compute in float32, round once
        return stable_softmax(x.float(), dim).to(x.dtype)
    m = x.amax(dim=dim, keepdim=True)  # (..., 1): the row maximum
    e = torch.exp(x - m)  # (..., n) - (..., 1) -> (..., n), each in (0, 1]
    return e / e.sum(dim=dim, keepdim=True)  # (..., n) / (..., 1) -> (..., n)
# --8<-- [end:stable-softmax]


# --8<-- [start:logsumexp]
def logsumexp(x, dim=-1, keepdim=False):
    """log(sum(exp(x))) along ``dim``, computed as m + log(sum(exp(x - m))).

    x: (..., n) -> (...) (or (..., 1) with keepdim). An infinite maximum is replaced
    by 0 before the shift, as torch.logsumexp does, so that a row of -inf (a fully
    masked row) gives -inf instead of the NaN of -inf - (-inf).

    Dtypes: float16, bfloat16, float32, float64; the half types are computed in
    float32 and rounded once. Within 1e-3 of torch.logsumexp (relative) in float16,
    1e-2 in bfloat16, 1e-6 in float32 and 1e-12 in float64.
    """
    check_dim("x", check_tensor("x", x, "(..., n)"), dim)
    check_flag("keepdim", keepdim)
    if x.dtype in HALF:  # compute in float32, round once
        return logsumexp(x.float(), dim, keepdim).to(x.dtype)
    m = x.amax(dim=dim, keepdim=True)  # (..., 1)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # keep -inf - m defined
    total = torch.exp(x - m).sum(dim=dim, keepdim=True)  # (..., 1), in [1, n]
    out = m + torch.log(total)  # (..., 1)
    return out if keepdim else out.squeeze(dim)
# --8<-- [end:logsumexp]


# --8<-- [start:log-softmax]
def log_softmax(x, dim=-1):
    """log(softmax(x)) without ever forming softmax(x): x - logsumexp(x).

    x: (..., n) -> (..., n). Finite wherever x is, even where softmax(x) itself
    underflows to 0 and log(0) would be -inf. In a row holding +inf the finite
    entries get -inf, their limit (torch.log_softmax gives NaN for the whole row).

    Dtypes: float16, bfloat16, float32, float64; the half types are computed in
    float32 and rounded once. Within 1e-3 of torch.log_softmax (relative) in
    float16, 1e-2 in bfloat16, 1e-6 in float32 and 1e-12 in float64.
    """
    check_dim("x", check_tensor("x", x, "(..., n)"), dim)
    if x.dtype in HALF:  # compute in float32, round once
        return log_softmax(x.float(), dim).to(x.dtype)
    return x - logsumexp(x, dim=dim, keepdim=True)  # (..., n) - (..., 1) -> (..., n)
# --8<-- [end:log-softmax]


# --8<-- [start:attention-dropout]
def attention_dropout(weights, p, training=True, generator=None):
    """Inverted dropout on attention weights: zero each entry with probability p and
    scale the survivors by 1 / (1 - p).

    weights: any shape -> same shape. The expected value of every entry is unchanged,
    so evaluation (``training=False``) returns the weights as they are. The random
    draws are the ones torch.nn.functional.dropout makes: with the same generator
    state the two give the same tensor.

    Dtypes: float16, bfloat16, float32, float64; the mask and the scaling are those
    of torch.nn.functional.dropout, to 1 ulp of the dtype.
    """
    check_tensor("weights", weights, "(...)")
    check_number("p", p, 0, 1, open_low=False)
    check_flag("training", training)
    check_type("generator", generator, (torch.Generator, type(None)),
               "None or a torch.Generator")
    if not training or p == 0:
        return weights
    keep = torch.empty_like(weights).bernoulli_(1 - p, generator=generator)  # 1 or 0
    return weights * (keep / (1 - p))  # survivors scaled up by 1 / (1 - p)
# --8<-- [end:attention-dropout]


# --8<-- [start:dropout-average]
def dropout_average(weights, p, num_masks, generator=None):
    """Average of ``num_masks`` independent dropouts of ``weights``, and its standard
    error.

    weights: (..., T_q, T_k) -> (mean, standard_error), both (..., T_q, T_k). An
    entry w becomes w / (1 - p) with probability 1 - p and 0 otherwise: its mean is
    w and its variance w^2 p / (1 - p), so the mean of num_masks draws has the
    standard error w * sqrt(p / ((1 - p) * num_masks)).

    Dtypes: those of ``attention_dropout``; the mean is taken in that dtype.
    """
    check_tensor("weights", weights, "(...)")
    check_number("p", p, 0, 1, open_low=False)
    check_size("num_masks", num_masks)
    copies = weights.expand(num_masks, *weights.shape)  # (N, ..., T_q, T_k)
    dropped = attention_dropout(copies, p, generator=generator)  # N masks at once
    mean = dropped.mean(dim=0)  # (..., T_q, T_k)
    standard_error = weights * math.sqrt(p / ((1 - p) * num_masks))
    return mean, standard_error
# --8<-- [end:dropout-average]
