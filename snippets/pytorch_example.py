"""The article's PyTorch example, done right, and the numbers that say why.

The page ``docs/pytorch-example.md`` shows this file. ``article_example`` and
``article_attention`` are the article's recipe (batch 1, 4 tokens, width 5, three
plain ``torch.randn(5, 5)`` matrices), with the random generator made explicit so that
it can be seeded. ``SelfAttention`` is the same computation as a reusable layer: its
projections are ``nn.Linear`` layers, so they are parameters, initialised at a sensible
scale. ``scaled_scores_by_init`` and ``saturation_stats`` measure, over many random
draws, how much the article's unscaled weights saturate the softmax.

Shape legend: B = batch, T = tokens, d_model = embedding width, d_k = width of the
queries and keys, d_v = width of the values.
"""

# --8<-- [start:imports]
import math

import torch
from torch import nn
# --8<-- [end:imports]

from snippets.attention import (
    attention_scores,
    project,
    scale_scores,
    scaled_dot_product_attention,
)
from snippets.checks import (
    HALF,
    check_choice,
    check_dim,
    check_flag,
    check_number,
    check_seed,
    check_shapes,
    check_size,
    check_type,
    check_values,
)

__all__ = [
    "INIT_SCHEMES",
    "score_spread",
    "SelfAttention",
    "article_attention",
    "article_example",
    "saturation_stats",
    "scaled_scores_by_init",
]

# --8<-- [start:article-example]
def article_example(generator=None, seq_len=4, d_model=5, weight_scale=1.0):
    """The article's inputs: x (1, T, d_model) and w_q, w_k, w_v (d_model, d_model).

    All entries are drawn from N(0, 1), in the article's order (x, then w_q, w_k,
    w_v), and the matrices are multiplied by ``weight_scale`` (the article: 1).
    ``generator=None`` draws from PyTorch's global generator, as the article does;
    pass a seeded ``torch.Generator`` to get the same numbers on every run.
    """
    check_type("generator", generator, (torch.Generator, type(None)),
               "None or a torch.Generator")
    check_size("seq_len", seq_len)
    check_size("d_model", d_model)
    check_number("weight_scale", weight_scale)
    x = torch.randn(1, seq_len, d_model, generator=generator)  # (1, T, d_model)
    w_q, w_k, w_v = (
        torch.randn(d_model, d_model, generator=generator) * weight_scale
        for _ in range(3)
    )  # each (d_model, d_model), so d_k = d_v = d_model
    return x, w_q, w_k, w_v
# --8<-- [end:article-example]


# --8<-- [start:article-attention]
def article_attention(x, w_q, w_k, w_v):
    """The article's five steps on plain tensors: project, then scaled dot-product
    attention. Returns (output (1, T, d_model), weights (1, T, T)).

    Dtypes: those of ``project`` and ``scaled_dot_product_attention``.
    """
    q, k, v = project(x, w_q, w_k, w_v)  # each (1, T, d_model)
    return scaled_dot_product_attention(q, k, v)  # steps 2-5
# --8<-- [end:article-attention]


# --8<-- [start:self-attention]
class SelfAttention(nn.Module):
    """Single-head self-attention: softmax(q k^T / sqrt(d_k)) v, with q, k and v
    projected from the same input by three learned linear layers.

    x: (..., T, d_model) -> output (..., T, d_v), weights (..., T, T); d_v defaults
    to d_k. The projections are ``nn.Linear`` layers, so they are registered
    parameters (trained by an optimizer, saved in ``state_dict``, moved by ``.to``)
    and start at nn.Linear's scale, uniform in +-1/sqrt(d_model), which keeps the
    scores small and the softmax far from saturation.
    """

    def __init__(self, d_model, d_k, d_v=None, bias=False):
        super().__init__()
        d_v = d_k if d_v is None else d_v
        for name, value in (("d_model", d_model), ("d_k", d_k), ("d_v", d_v)):
            check_size(name, value)
        check_flag("bias", bias)
        self.d_model, self.d_k, self.d_v = d_model, d_k, d_v
        self.w_q = nn.Linear(d_model, d_k, bias=bias)  # weight: (d_k, d_model)
        self.w_k = nn.Linear(d_model, d_k, bias=bias)  # weight: (d_k, d_model)
        self.w_v = nn.Linear(d_model, d_v, bias=bias)  # weight: (d_v, d_model)

    @classmethod
    def from_matrices(cls, w_q, w_k, w_v):
        """A layer computing x @ w_q, x @ w_k, x @ w_v, like the article's matrices.

        w_q, w_k: (d_model, d_k), w_v: (d_model, d_v). nn.Linear stores its weight
        as (out, in) and computes x @ weight.T, so the matrices are copied transposed.
        The layer takes the matrices' dtype and device.
        """
        check_shapes(w_q=(w_q, "(d_model, d_k)"), w_k=(w_k, "(d_model, d_k)"),
                     w_v=(w_v, "(d_model, d_v)"))
        d_model, d_k = w_q.shape
        layer = cls(d_model, d_k, w_v.shape[1]).to(w_q)
        with torch.no_grad():
            for linear, w in ((layer.w_q, w_q), (layer.w_k, w_k), (layer.w_v, w_v)):
                linear.weight.copy_(w.T)  # (d_model, out) -> (out, d_model)
        return layer

    def qkv(self, x):
        """x (..., T, d_model) -> q, k (..., T, d_k) and v (..., T, d_v).

        Dtypes: the layer's, float16, bfloat16, float32 or float64 (x must match
        it); the numbers of nn.Linear in that dtype.
        """
        weights = self.w_q.weight  # (d_k, d_model): x must match its width and dtype
        check_shapes(**{"the layer's weights": (weights, "(d_k, d_model)")},
                     x=(x, "(..., T, d_model)"))
        q = self.w_q(x)  # (..., T, d_model) @ (d_model, d_k) -> (..., T, d_k)
        k = self.w_k(x)  # (..., T, d_model) @ (d_model, d_k) -> (..., T, d_k)
        v = self.w_v(x)  # (..., T, d_model) @ (d_model, d_v) -> (..., T, d_v)
        return q, k, v

    def forward(self, x, mask=None, is_causal=False):
        """Returns (output (..., T, d_v), weights (..., T, T)); ``mask`` is boolean,
        True = may attend, as in ``scaled_dot_product_attention``.

        Dtypes: those of ``qkv`` and ``scaled_dot_product_attention``.
        """
        q, k, v = self.qkv(x)
        return scaled_dot_product_attention(q, k, v, mask=mask, is_causal=is_causal)
# --8<-- [end:self-attention]


# --8<-- [start:scores-by-init]
def scaled_scores_by_init(num_runs=1000, seq_len=4, d_model=5, seed=0):
    """The scaled scores q k^T / sqrt(d_k) of ``num_runs`` random examples of the
    article's size, with W_Q and W_K made three ways (d_k = d_model, as there):

    - "torch.randn": the article's N(0, 1) matrices;
    - "torch.randn / sqrt(d_model)": the same numbers divided by sqrt(d_model);
    - "nn.Linear": a fresh ``SelfAttention`` layer, with PyTorch's default init.

    Run r draws x and the N(0, 1) matrices from a generator seeded with seed + r;
    the layers draw from the global generator, seeded with ``seed`` inside
    ``fork_rng`` so the caller's random state is left as it was.
    Returns {name: scores of shape (num_runs, T, T)}, in float32.
    """
    for name, size in (("num_runs", num_runs), ("seq_len", seq_len),
                       ("d_model", d_model)):
        check_size(name, size)
    check_seed("seed", seed)
    xs, raw_q, raw_k, lin_q, lin_k = [], [], [], [], []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for run in range(num_runs):
            generator = torch.Generator().manual_seed(seed + run)
            x, w_q, w_k, _ = article_example(generator, seq_len, d_model)
            layer = SelfAttention(d_model, d_model)
            xs.append(x[0])  # (T, d_model)
            raw_q.append(w_q)
            raw_k.append(w_k)
            lin_q.append(layer.w_q.weight.T)  # nn.Linear computes x @ weight.T
            lin_k.append(layer.w_k.weight.T)
    x = torch.stack(xs)  # (N, T, d_model): all runs at once, one batched matmul
    pairs = {
        "torch.randn": (torch.stack(raw_q), torch.stack(raw_k)),  # (N, d_model, d_k)
        "torch.randn / sqrt(d_model)": (torch.stack(raw_q) / math.sqrt(d_model),
                                        torch.stack(raw_k) / math.sqrt(d_model)),
        "nn.Linear": (torch.stack(lin_q), torch.stack(lin_k)),
    }
    return {
        name: scale_scores(attention_scores(x @ w_q, x @ w_k), d_model)  # (N, T, T)
        for name, (w_q, w_k) in pairs.items()
    }
# --8<-- [end:scores-by-init]


# --8<-- [start:saturation-stats]
def saturation_stats(scores):
    """How saturated the softmax of ``scores`` (..., T, T) is, averaged over rows.

    - "score std": the spread of the scaled scores;
    - "max weight": each row's largest weight (1/T = uniform, 1 = one key only);
    - "entropy": of each row, in bits (log2 T = uniform, 0 = one key only);
    - "saturated": the share of rows that give more than 0.99 to one key;
    - "gradient": the size (Frobenius norm) of the softmax's Jacobian
      diag(p) - p p^T, the factor every gradient passes through on its way from
      the weights back to the scores; it is 0 for a one-hot row.

    Dtypes: float16, bfloat16, float32, float64; the half types are computed in
    float32. Within 1e-3 in float16, 1e-2 in bfloat16, 1e-5 in float32 and 1e-12
    in float64 (relative) of the same statistics of the same scores in float64
    ("saturated" may differ by a row whose largest weight is within that of 0.99).
    """
    check_shapes(scores=(scores, "(..., T, T)"))
    check_dim("scores", check_values("scores", scores), -1)
    if scores.dtype in HALF:  # compute in float32
        return saturation_stats(scores.float())
    p = torch.softmax(scores, dim=-1)  # (..., T, T)
    largest = p.max(dim=-1).values  # (..., T)
    entropy = -torch.special.xlogy(p, p).sum(dim=-1) / math.log(2)  # 0 log 0 = 0
    jacobian = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., T, T, T)
    return {
        "score std": scores.std().item(),
        "max weight": largest.mean().item(),
        "entropy": entropy.mean().item(),
        "saturated": (largest > 0.99).float().mean().item(),
        "gradient": torch.linalg.matrix_norm(jacobian).mean().item(),
    }
# --8<-- [end:saturation-stats]


# --8<-- [start:init-schemes]
def _linear(d_model, d_k):
    return nn.Linear(d_model, d_k, bias=False).weight.T  # weight (d_k, d_model)


def _multihead(d_model, d_k):
    """Head 0's query and key blocks of nn.MultiheadAttention(d_model, d_model // d_k),
    whose (3 d_model, d_model) in_proj_weight starts Xavier-uniform."""
    w = nn.MultiheadAttention(d_model, d_model // d_k).in_proj_weight  # (3D, D)
    return w[:d_k].T, w[d_model:d_model + d_k].T  # each (d_model, d_k)


# name: (the weights' standard deviation, a function making w_q, w_k (d_model, d_k))
INIT_SCHEMES = {
    "torch.randn (the article)": (
        lambda d: 1.0,
        lambda d_model, d_k: (torch.randn(d_model, d_k), torch.randn(d_model, d_k)),
    ),
    "torch.randn / sqrt(d_model)": (
        lambda d: 1 / math.sqrt(d),
        lambda d_model, d_k: (torch.randn(d_model, d_k) / math.sqrt(d_model),
                              torch.randn(d_model, d_k) / math.sqrt(d_model)),
    ),
    "nn.Linear default": (  # uniform in +-1/sqrt(d_model)
        lambda d: 1 / math.sqrt(3 * d),
        lambda d_model, d_k: (_linear(d_model, d_k), _linear(d_model, d_k)),
    ),
    "nn.MultiheadAttention": (  # Xavier uniform on (3 d_model, d_model)
        lambda d: math.sqrt(2 / (d + 3 * d)),
        _multihead,
    ),
    "GPT-2, N(0, 0.02)": (
        lambda d: 0.02,
        lambda d_model, d_k: (torch.randn(d_model, d_k) * 0.02,
                              torch.randn(d_model, d_k) * 0.02),
    ),
}


def score_spread(name, d_model, d_k, num_runs=1000, seq_len=4, seed=0):
    """Draw ``num_runs`` pairs w_q, w_k with scheme ``name`` and unit-variance inputs
    x (T, d_model); return (the weights' measured std, the std of the scaled scores
    x w_q (x w_k)^T / sqrt(d_k)). Expected: sigma and d_model * sigma**2.
    Dtypes: float32, the dtype the schemes draw in; the numbers of torch.matmul.
    """
    check_choice("name", name, tuple(INIT_SCHEMES))
    for arg, size in (("d_model", d_model), ("d_k", d_k), ("num_runs", num_runs),
                      ("seq_len", seq_len)):
        check_size(arg, size)
    check_seed("seed", seed)
    if num_runs * seq_len**2 < 2:  # a spread needs two scores
        raise ValueError(f"num_runs and seq_len must give at least two scores "
                         f"(num_runs * seq_len**2 >= 2), got num_runs={num_runs} "
                         f"and seq_len={seq_len}")
    if name == "nn.MultiheadAttention" and d_model % d_k:
        raise ValueError(f"d_k must divide d_model, so that nn.MultiheadAttention has "
                         f"heads of d_k features, got d_model={d_model} and d_k={d_k}")
    _, make = INIT_SCHEMES[name]
    weights, scores = [], []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for _ in range(num_runs):
            w_q, w_k = make(d_model, d_k)  # (d_model, d_k) each
            x = torch.randn(seq_len, d_model)  # (T, d_model)
            weights.append(torch.cat([w_q.flatten(), w_k.flatten()]))
            scores.append(scale_scores(attention_scores(x @ w_q, x @ w_k), d_k))
    return torch.cat(weights).std().item(), torch.stack(scores).std().item()
# --8<-- [end:init-schemes]

