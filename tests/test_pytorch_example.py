"""snippets/pytorch_example.py and docs/pytorch-example.md: the article's recipe,
the SelfAttention layer, and the measured saturation of the softmax.

The references are torch.nn.functional.scaled_dot_product_attention (the layer and
the recipe must agree with it) and the article's arithmetic written out with plain
tensor operations. Every number the page states is recomputed here from the snippets.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from snippets.pytorch_example import (
    INIT_SCHEMES,
    SelfAttention,
    article_attention,
    article_example,
    saturation_stats,
    scaled_scores_by_init,
    score_spread,
)
from tests.pages import numbers, prose, read_page, section, tables

PAGE = "pytorch-example.md"
ATOL = 1e-6
INITS = ["torch.randn", "torch.randn / sqrt(d_model)", "nn.Linear"]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def close(actual, expected, atol=ATOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def seeded_layer(*args, seed=0, **kwargs):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SelfAttention(*args, **kwargs)


# ---------------------------------------------------------------------------
# The article's recipe
# ---------------------------------------------------------------------------


def test_article_example_has_the_article_shapes_and_scale():
    x, w_q, w_k, w_v = article_example(torch.Generator().manual_seed(0))
    assert x.shape == (1, 4, 5)
    assert w_q.shape == w_k.shape == w_v.shape == (5, 5)
    # weight_scale multiplies the same draws
    _, s_q, s_k, s_v = article_example(torch.Generator().manual_seed(0), weight_scale=0.5)
    for raw, scaled in ((w_q, s_q), (w_k, s_k), (w_v, s_v)):
        close(scaled, raw * 0.5, atol=0)


def test_article_example_draws_in_the_articles_order_from_the_global_generator():
    """generator=None draws x, w_q, w_k, w_v from the global generator, one after the
    other, exactly as the article's script does."""
    with torch.random.fork_rng():
        torch.manual_seed(7)
        x, w_q, w_k, w_v = article_example()
        torch.manual_seed(7)
        expected = (torch.randn(1, 4, 5), torch.randn(5, 5), torch.randn(5, 5),
                    torch.randn(5, 5))
    for got, want in zip((x, w_q, w_k, w_v), expected):
        assert torch.equal(got, want)
    # and a torch.Generator seeded alike gives the same numbers
    seeded = article_example(torch.Generator().manual_seed(7))
    for got, want in zip(seeded, expected):
        assert torch.equal(got, want)


@pytest.mark.parametrize("seed", range(5))
def test_article_attention_is_the_articles_arithmetic(seed):
    x, w_q, w_k, w_v = article_example(torch.Generator().manual_seed(seed))
    output, weights = article_attention(x, w_q, w_k, w_v)
    q, k, v = x @ w_q, x @ w_k, x @ w_v
    expected_weights = F.softmax(q @ k.transpose(-2, -1) / q.size(-1) ** 0.5, dim=-1)
    close(weights, expected_weights)
    close(output, expected_weights @ v, atol=1e-5)  # outputs of order 5: float32
    close(output, F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def test_seeding_makes_runs_repeat_and_different_seeds_differ():
    a = article_attention(*article_example(torch.Generator().manual_seed(0)))
    b = article_attention(*article_example(torch.Generator().manual_seed(0)))
    c = article_attention(*article_example(torch.Generator().manual_seed(1)))
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


def test_a_fresh_interpreter_seeds_the_global_generator_differently():
    """The page's claim that the unseeded script prints new numbers on every run:
    two fresh interpreters report different initial seeds and different weights."""
    code = (
        "import torch\n"
        "x = torch.randn(1, 4, 5)\n"
        "w = [torch.randn(5, 5) for _ in range(3)]\n"
        "q, k = x @ w[0], x @ w[1]\n"
        "print(torch.initial_seed(), torch.softmax(q @ k.mT / 5 ** 0.5, -1).tolist())\n"
    )
    runs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs)
    seeds = [out.split(" ", 1)[0] for out in outputs]
    assert seeds[0] != seeds[1]
    assert outputs[0].split(" ", 1)[1] != outputs[1].split(" ", 1)[1]


# ---------------------------------------------------------------------------
# SelfAttention
# ---------------------------------------------------------------------------

LAYER_SHAPES = [  # leading dims, T, d_model, d_k, d_v
    ((1,), 4, 5, 5, None),  # the article's
    ((), 3, 6, 4, 2),  # no batch dimension
    ((2, 3), 5, 8, 3, 7),  # two leading dimensions
    ((2,), 1, 4, 4, 4),  # one token
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", LAYER_SHAPES, ids=str)
@pytest.mark.parametrize("is_causal", [False, True])
def test_layer_matches_pytorch_on_its_own_qkv(shape, bias, is_causal):
    lead, seq_len, d_model, d_k, d_v = shape
    layer = seeded_layer(d_model, d_k, d_v, bias=bias)
    if bias:  # zero-initialised biases would hide a bias that is dropped
        with torch.no_grad():
            for linear in (layer.w_q, layer.w_k, layer.w_v):
                linear.bias.normal_()
    x = randn(*lead, seq_len, d_model, seed=1)
    output, weights = layer(x, is_causal=is_causal)
    q, k, v = layer.qkv(x)
    assert q.shape == k.shape == (*lead, seq_len, d_k)
    assert v.shape == (*lead, seq_len, d_k if d_v is None else d_v)
    assert output.shape == v.shape and weights.shape == (*lead, seq_len, seq_len)
    close(output, F.scaled_dot_product_attention(q, k, v, is_causal=is_causal))
    # the projections are x @ weight.T (+ bias)
    expected_q = x @ layer.w_q.weight.T + (layer.w_q.bias if bias else 0)
    close(q, expected_q)
    close(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_layer_mask_is_true_for_may_attend():
    layer = seeded_layer(4, 3)
    x = randn(2, 5, 4)
    mask = randn(5, 5, seed=2) > 0
    mask |= torch.eye(5, dtype=torch.bool)  # every query keeps itself
    output, weights = layer(x, mask=mask)
    q, k, v = layer.qkv(x)
    close(output, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert torch.all(weights[:, ~mask] == 0)


def test_layer_parameters():
    layer = seeded_layer(5, 5)
    params = dict(layer.named_parameters())
    assert list(params) == ["w_q.weight", "w_k.weight", "w_v.weight"]
    assert all(p.requires_grad and p.shape == (5, 5) for p in params.values())
    assert sum(p.numel() for p in layer.parameters()) == 75
    assert set(layer.state_dict()) == set(params)
    layer_with_bias = seeded_layer(5, 3, 2, bias=True)
    assert sum(p.numel() for p in layer_with_bias.parameters()) == 5 * 3 * 2 + 5 * 2 + 3 * 2 + 2


def test_nn_linear_init_is_uniform_within_one_over_root_d_model():
    """The page: nn.Linear's weights start uniform in +-1/sqrt(d_model)."""
    d_model = 256
    layer = seeded_layer(d_model, 200)
    w = layer.w_q.weight.detach()
    bound = 1 / math.sqrt(d_model)
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.99 * bound  # it reaches the edges ...
    assert abs(w.var().item() - bound**2 / 3) < 0.05 * bound**2 / 3  # ... uniformly


@pytest.mark.parametrize("name", list(INIT_SCHEMES))
def test_init_schemes_draw_at_their_stated_scale(name):
    """Each scheme's weights have the standard deviation its formula says, and the
    scaled scores the spread d_model * std**2 (within sampling error)."""
    std, make = INIT_SCHEMES[name]
    for d_model, d_k in ((64, 64), (96, 32)):
        with torch.random.fork_rng():
            torch.manual_seed(1)
            w_q, w_k = make(d_model, d_k)
        assert w_q.shape == w_k.shape == (d_model, d_k)
        assert not torch.equal(w_q, w_k)
        drawn, spread = score_spread(name, d_model, d_k, num_runs=40, seq_len=16, seed=2)
        assert abs(drawn / std(d_model) - 1) < 0.02
        assert abs(spread / (d_model * std(d_model) ** 2) - 1) < 0.1


def test_init_schemes_are_pytorchs_own():
    """nn.Linear: uniform in +-1/sqrt(fan_in); nn.MultiheadAttention: Xavier uniform
    over the whole (3D, D) in_proj_weight, bound sqrt(6 / (D + 3D))."""
    d_model = 96
    with torch.random.fork_rng():
        torch.manual_seed(0)
        linear = INIT_SCHEMES["nn.Linear default"][1](d_model, 32)[0]
        torch.manual_seed(0)
        mha = torch.nn.MultiheadAttention(d_model, 3).in_proj_weight.detach()
        torch.manual_seed(0)
        w_q, w_k = INIT_SCHEMES["nn.MultiheadAttention"][1](d_model, 32)
    assert linear.abs().max() <= 1 / math.sqrt(d_model)
    assert mha.abs().max() <= math.sqrt(6 / (4 * d_model))
    assert mha.abs().max() > 0.99 * math.sqrt(6 / (4 * d_model))
    assert torch.equal(w_q, mha[:32].T) and torch.equal(w_k, mha[96:128].T)


def test_score_spread_leaves_the_callers_generator_alone():
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    score_spread("nn.Linear default", 8, 8, num_runs=2)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_nn_linear_takes_no_generator():
    """The page's tip: nn.Linear draws from the global generator and has no argument
    that would take a torch.Generator (torch 2.13)."""
    import inspect

    assert "generator" not in inspect.signature(torch.nn.Linear).parameters
    with torch.random.fork_rng():
        torch.manual_seed(3)
        a = torch.nn.Linear(4, 4).weight
        torch.manual_seed(3)
        b = torch.nn.Linear(4, 4).weight
    assert torch.equal(a, b)


def test_layer_gradients_reach_every_projection():
    layer = seeded_layer(5, 4, 3)
    output, _ = layer(randn(2, 4, 5))
    output.pow(2).sum().backward()
    for p in layer.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", range(3))
def test_from_matrices_reproduces_the_article_recipe(seed):
    x, w_q, w_k, w_v = article_example(torch.Generator().manual_seed(seed))
    output, weights = article_attention(x, w_q, w_k, w_v)
    layer = SelfAttention.from_matrices(w_q, w_k, w_v)
    layer_output, layer_weights = layer(x)
    close(layer_output, output, atol=1e-5)
    close(layer_weights, weights)
    narrow = SelfAttention.from_matrices(w_q[:, :3], w_k[:, :3], w_v[:, :2])
    assert (narrow.d_model, narrow.d_k, narrow.d_v) == (5, 3, 2)
    close(narrow(x)[0], article_attention(x, w_q[:, :3], w_k[:, :3], w_v[:, :2])[0],
          atol=1e-5)


@pytest.mark.parametrize(
    "args, pattern",
    [
        ((0, 4), r"d_model must be a positive int, got 0"),
        ((-3, 4), r"d_model must be a positive int, got -3"),
        ((4.0, 4), r"d_model must be a positive int, got 4\.0"),
        ((True, 4), r"d_model must be a positive int, got True"),
        ((4, 0), r"d_k must be a positive int, got 0"),
        ((4, 3, 0), r"d_v must be a positive int, got 0"),
        ((4, 3, "2"), r"d_v must be a positive int, got '2'"),
    ],
)
def test_bad_sizes_are_a_clear_value_error(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        SelfAttention(*args)


@pytest.mark.parametrize(
    "x, pattern",
    [
        ([[1.0] * 5], r"x must be a torch.Tensor of shape \(\.\.\., T, d_model\), got list"),
        (torch.zeros(5), r"x must have shape \(\.\.\., T, d_model\), got shape \(5,\)"),
        (torch.zeros(1, 4, 5).double(), r"x must have the dtype of the layer's weights, "
         r"float32, got float64"),
        (torch.zeros(1, 4, 6), r"x must have shape \(\.\.\., T, d_model\) with d_model = 5 "
         r"as in the layer's weights of shape \(5, 5\), got shape \(1, 4, 6\)"),
        (torch.zeros(4, 5, 1), r"with d_model = 5 .*got shape \(4, 5, 1\)"),
    ],
)
def test_bad_input_is_a_clear_value_error(x, pattern):
    layer = seeded_layer(5, 5)
    with pytest.raises(ValueError, match=pattern):
        layer(x)


@pytest.mark.parametrize(
    "mats, pattern",
    [
        (("a", randn(5, 5), randn(5, 5)), r"w_q must be a torch.Tensor of shape "
         r"\(d_model, d_k\), got str"),
        ((randn(5, 5), randn(5), randn(5, 5)), r"w_k must have shape \(d_model, d_k\), "
         r"got shape \(5,\)"),
        ((randn(5, 5), randn(5, 5), randn(1, 5, 5)), r"w_v must have shape.*\(1, 5, 5\)"),
        ((randn(5, 4), randn(5, 3), randn(5, 5)), r"w_k must have shape \(d_model, d_k\) "
         r"with d_k = 4 as in w_q of shape \(5, 4\), got shape \(5, 3\)"),
        ((randn(5, 4), randn(5, 4), randn(6, 5)), r"w_v must have shape \(d_model, d_v\) "
         r"with d_model = 5 as in w_q of shape \(5, 4\), got shape \(6, 5\)"),
        ((randn(5, 4), randn(5, 4), randn(5, 5).double()), r"w_v must have the dtype of "
         r"w_q, float32, got float64"),
    ],
)
def test_bad_matrices_are_a_clear_value_error(mats, pattern):
    with pytest.raises(ValueError, match=pattern):
        SelfAttention.from_matrices(*mats)


@settings(max_examples=30, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    seq_len=st.integers(1, 6),
    d_model=st.integers(1, 8),
    d_k=st.integers(1, 6),
    d_v=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_layer_properties(lead, seq_len, d_model, d_k, d_v, seed):
    """Any sizes: the layer equals PyTorch's function on its own q, k, v, and each
    sequence's result does not depend on the rest of the batch."""
    layer = seeded_layer(d_model, d_k, d_v, seed=seed)
    x = randn(*lead, seq_len, d_model, seed=seed)
    output, weights = layer(x)
    q, k, v = layer.qkv(x)
    close(output, F.scaled_dot_product_attention(q, k, v), atol=1e-5)
    assert torch.all(weights >= 0)
    flat_x, flat_out = x.reshape(-1, seq_len, d_model), output.reshape(-1, seq_len, d_v)
    for one_x, one_out in zip(flat_x, flat_out):
        close(layer(one_x)[0], one_out, atol=1e-5)


# ---------------------------------------------------------------------------
# Saturation: the measurement functions
# ---------------------------------------------------------------------------


def test_scores_by_init_are_what_the_recipe_and_the_layer_compute():
    """Run r of scaled_scores_by_init is the article's example drawn with seed + r,
    scored with its own matrices and with the r-th layer built after seeding."""
    seed, runs = 3, 4
    scores = scaled_scores_by_init(num_runs=runs, seq_len=4, d_model=5, seed=seed)
    assert list(scores) == INITS
    assert all(s.shape == (runs, 4, 4) for s in scores.values())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = [SelfAttention(5, 5) for _ in range(runs)]
    for run in range(runs):
        x, w_q, w_k, w_v = article_example(torch.Generator().manual_seed(seed + run))
        q, k = x @ w_q, x @ w_k
        close(scores["torch.randn"][run], (q @ k.mT / math.sqrt(5))[0], atol=1e-5)
        q, k, _ = layers[run].qkv(x)
        close(scores["nn.Linear"][run], (q @ k.mT / math.sqrt(5))[0].detach())
    # the same draws divided by sqrt(d_model): every score shrinks by d_model
    close(scores["torch.randn / sqrt(d_model)"], scores["torch.randn"] / 5, atol=1e-5)


def test_scores_by_init_leaves_the_callers_generator_alone():
    torch.manual_seed(123)
    expected = torch.randn(3)
    torch.manual_seed(123)
    scaled_scores_by_init(num_runs=2)
    assert torch.equal(torch.randn(3), expected)


def test_saturation_stats_of_even_and_one_hot_rows():
    even = saturation_stats(torch.zeros(2, 4, 4))
    assert even["score std"] == 0
    assert even["max weight"] == pytest.approx(0.25)
    assert even["entropy"] == pytest.approx(2.0)
    assert even["saturated"] == 0
    # ||diag(p) - p p^T||_F for p = 1/4 everywhere: sqrt(4 (3/16)^2 + 12 (1/16)^2)
    assert even["gradient"] == pytest.approx(math.sqrt(4 * 9 / 256 + 12 / 256))
    one_hot = saturation_stats(torch.eye(4).expand(3, 4, 4) * 100)
    assert one_hot["max weight"] == pytest.approx(1.0)
    assert one_hot["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert one_hot["saturated"] == 1.0
    assert one_hot["gradient"] == pytest.approx(0.0, abs=1e-6)


def test_the_gradient_stat_is_the_softmax_jacobian():
    scores = randn(3, 4, 4, seed=5) * 3
    norms = []
    for row in scores.reshape(-1, 4):
        jacobian = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, -1), row)
        norms.append(torch.linalg.matrix_norm(jacobian))
    assert saturation_stats(scores)["gradient"] == pytest.approx(
        torch.stack(norms).mean().item(), abs=1e-6
    )


# ---------------------------------------------------------------------------
# The page's numbers
# ---------------------------------------------------------------------------


@cache
def stats(d_model=5):
    scores = scaled_scores_by_init(num_runs=1000, seq_len=4, d_model=d_model, seed=0)
    return {name: saturation_stats(s) for name, s in scores.items()}


@pytest.fixture(scope="module")
def page():
    return read_page(PAGE)


def flat(text):
    return " ".join(prose(text).split())


def pct(value):
    return f"{value:.1%}"


def seeded_recipe():
    x, w_q, w_k, w_v = article_example(torch.Generator().manual_seed(0))
    return x, article_attention(x, w_q, w_k, w_v)


def test_page_runs_what_the_numbers_come_from(page):
    """The stated numbers are for these calls; if the page's code changes, so must
    the tests."""
    assert "article_example(generator)" in page
    assert "generator = torch.Generator().manual_seed(0)" in page
    assert "scaled_scores_by_init(num_runs=1000, seq_len=4, d_model=5, seed=0)" in page
    assert "scaled_scores_by_init(num_runs=1000, seq_len=4, d_model=64, seed=0)" in page
    assert "torch.manual_seed(0)  # nn.Linear" in page
    assert "SelfAttention(d_model=5, d_k=5)" in page


def test_intro_sizes(page):
    text = flat(page.split("## The article's recipe")[0])
    assert "one sequence of 4 tokens of width 5" in text
    x, w_q, *_ = article_example()
    assert x.shape == (1, 4, 5) and w_q.shape == (5, 5)
    recipe = flat(section(page, "The article's recipe"))
    assert "an input of shape $(1, 4, 5)$" in recipe
    assert "three $5 \\times 5$ matrices" in recipe
    assert "$\\sqrt{d_k} = \\sqrt{5}$" in recipe


def test_saturated_tokens_of_the_seeded_recipe(page):
    _, (_, weights) = seeded_recipe()
    text = flat(section(page, "The article's recipe"))
    m = re.search(r"tokens (\d) and (\d) put (\d+\.\d+) and (\d+\.\d+) of their weight", text)
    assert m, "the sentence about the saturated tokens is gone"
    i, j = int(m.group(1)) - 1, int(m.group(2)) - 1
    assert m.group(3) == f"{weights[0, i].max():.4f}"
    assert m.group(4) == f"{weights[0, j].max():.4f}"
    # they are the two rows with the largest maxima
    assert sorted(weights[0].max(-1).values.argsort()[-2:].tolist()) == [i, j]


def test_layer_weight_range(page):
    x, _ = seeded_recipe()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = SelfAttention(d_model=5, d_k=5)
    _, weights = layer(x)
    text = flat(section(page, "A reusable layer: `SelfAttention`"))
    m = re.search(r"every weight lies between (\d+\.\d+) and (\d+\.\d+)", text)
    assert m and m.group(1) == f"{weights.min():.4f}" and m.group(2) == f"{weights.max():.4f}"


def test_rough_count(page):
    text = flat(section(page, "Problem 2: the softmax starts saturated"))
    d_model = 5
    assert f"a sum of $d_\\text{{model}} = {d_model}$ products, has variance {d_model}" in text
    assert f"$5 \\times 5 \\times 5 = {d_model**3}$" in text
    assert f"brings that down to {d_model**3 // d_model}, a standard deviation of about " \
           f"{math.isqrt(d_model**3 // d_model)}" in text
    assert f"$e^5 \\approx {math.exp(5):.0f}$" in text
    # the rough count is close to what is measured: within 10%
    assert abs(stats()["torch.randn"]["score std"] - 5) < 0.5


def test_measured_numbers_in_prose(page):
    s = stats()
    raw, lin = s["torch.randn"], s["nn.Linear"]
    even = saturation_stats(torch.zeros(1, 4, 4))
    text = flat(section(page, "Problem 2: the softmax starts saturated"))
    expected = [
        "Over 1000 runs, the article's weights give scaled scores with a standard "
        f"deviation of {raw['score std']:.2f}",
        f"largest weight averages {raw['max weight']:.3f}, when {even['max weight']:.2f} "
        "would mean an even spread",
        f"and {pct(raw['saturated'])} of all rows put more than 0.99 on a single key",
        f"entropy averages {raw['entropy']:.2f} bits out of {even['entropy']:.0f}",
        f"gradient averages {raw['gradient']:.3f}, about half of the "
        f"{even['gradient']:.3f} of an even row",
        f"standard deviation of {lin['score std']:.2f}, a largest weight of "
        f"{lin['max weight']:.3f} on average, {lin['entropy']:.2f} bits of entropy, no "
        f"saturated row at all and a gradient of {lin['gradient']:.3f}",
        "(2 bits for 4 equal weights",
    ]
    for sentence in expected:
        assert sentence in text, sentence
    assert 0.4 < raw["gradient"] / even["gradient"] < 0.6  # "about half"
    assert lin["saturated"] == 0  # "no saturated row at all"
    assert math.log2(4) == 2


def test_comparison_table(page):
    s = stats()
    raw, lin = s["torch.randn"], s["nn.Linear"]
    (table,) = tables(section(page, "Side by side"))
    rows = {row[0]: row[1:] for row in table[1:]}
    assert rows["spread of the scaled scores"] == [f"{raw['score std']:.2f}",
                                                   f"{lin['score std']:.2f}"]
    assert rows["largest weight of a row, on average"] == [f"{raw['max weight']:.3f}",
                                                           f"{lin['max weight']:.3f}"]
    assert rows["rows with more than 0.99 on one key"] == [pct(raw["saturated"]),
                                                           pct(lin["saturated"])]
    layer = seeded_layer(5, 5)
    n_params = len(list(layer.parameters()))
    n_numbers = sum(p.numel() for p in layer.parameters())
    assert rows["trainable, saved with the model"][1] == (
        f"yes: {n_params} parameters, {n_numbers} numbers"
    )
    assert "over 1000 runs" in flat(section(page, "Side by side"))
    # "a RuntimeError from the matrix product, about mat1 and mat2": the article's
    # recipe multiplies plain tensors (article_attention checks its arguments first)
    x, w_q, w_k, w_v = article_example(torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        torch.zeros(1, 4, 6) @ w_q
    with pytest.raises(ValueError, match=r"w_q must have shape \(d_model, d_k\) with "
                                         r"d_model = 6 as in x"):
        article_attention(torch.zeros(1, 4, 6), w_q, w_k, w_v)


def test_init_scale_section(page):
    """The numbers of "Which scale layers start from" are the formulas' and the
    measured ones; GPT-2's N(0, 0.02) is cited."""
    text = flat(section(page, "Which scale layers start from"))
    assert "($d_\\text{model} = 768$, $d_k = 64$)" in text
    assert "call(" not in text
    std = {name: f(768) for name, (f, _) in INIT_SCHEMES.items()}
    assert math.isclose(std["nn.Linear default"], 1 / math.sqrt(3 * 768))
    assert math.isclose(std["nn.MultiheadAttention"], 1 / math.sqrt(2 * 768))
    assert "a standard deviation of $1/\\sqrt{3 d_\\text{model}}$, so the spread is about 1/3" in text
    assert "a standard deviation of $1/\\sqrt{2 d_\\text{model}}$, so the spread is about 1/2" in text
    assert std["GPT-2, N(0, 0.02)"] == 0.02 and "from $N(0, 0.02)$ whatever the width" in text
    assert "*Improving Language Understanding by Generative Pre-Training*, 2018, section 4.1" in text
    # "Only the weights divided by sqrt(d_model) give a spread of 1 at every width"
    spreads = {name: (5 * f(5) ** 2, 768 * f(768) ** 2) for name, (f, _) in INIT_SCHEMES.items()}
    assert [n for n, s in spreads.items() if s == pytest.approx((1, 1))] == [
        "torch.randn / sqrt(d_model)"]
    gpt2 = spreads["GPT-2, N(0, 0.02)"]
    assert gpt2[1] > 100 * gpt2[0]  # "grows with the width"


def test_check_yourself_numbers(page):
    s = stats(64)
    raw, scaled, lin = (s[name] for name in INITS)
    start = page.index('??? question "Check yourself')
    text = flat(page[start:page.index('??? example "All the code')])
    expected = [
        "With $d_\\text{model} = 64$, an entry of $q$ sums 64 products",
        "Over 1000 runs of 4 tokens of width 64",
        f"standard deviation of {raw['score std']:.2f}, a row's largest weight averages "
        f"{raw['max weight']:.3f} and {pct(raw['saturated'])} of the rows are saturated",
        f"keep the spread at {scaled['score std']:.2f}, and `nn.Linear` at "
        f"{lin['score std']:.2f}, whatever the width",
    ]
    for sentence in expected:
        assert sentence in text, sentence
    # "more": wider is worse with unscaled weights, and no worse with the others
    narrow = stats()
    assert raw["max weight"] > narrow["torch.randn"]["max weight"]
    assert raw["saturated"] > narrow["torch.randn"]["saturated"]
    for name in INITS[1:]:
        assert abs(s[name]["score std"] - narrow[name]["score std"]) < 0.1


def test_every_number_in_the_prose_is_accounted_for(page):
    """A new number in the prose needs a check above; these are the ones there are."""
    text = prose(page.split('??? example "All the code')[0])
    text = re.sub(r"^\|.*\|$", "", text, flags=re.M)  # the table: checked above
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)  # the figure's alt text
    text = re.sub(r"`[^`]*`", "", text)  # code: torch.randn(5, 5), torch.manual_seed(0)
    s, wide = stats(), stats(64)
    raw, lin = s["torch.randn"], s["nn.Linear"]
    even = saturation_stats(torch.zeros(1, 4, 4))
    checked = {
        4, 5, 1, 0.9962, 0.9990, 0.2095, 0.2920, 125, 25, 148, 1000, 0.99,
        float(f"{raw['score std']:.2f}"), float(f"{raw['max weight']:.3f}"), 0.25,
        float(f"{raw['saturated'] * 100:.1f}"), float(f"{raw['entropy']:.2f}"), 2,
        float(f"{raw['gradient']:.3f}"), float(f"{even['gradient']:.3f}"), float(f"{lin['score std']:.2f}"),
        float(f"{lin['max weight']:.3f}"), float(f"{lin['entropy']:.2f}"),
        float(f"{lin['gradient']:.3f}"), 64, float(f"{wide['torch.randn']['score std']:.2f}"),
        float(f"{wide['torch.randn']['max weight']:.3f}"),
        float(f"{wide['torch.randn']['saturated'] * 100:.1f}"),
        float(f"{wide['torch.randn / sqrt(d_model)']['score std']:.2f}"),
        float(f"{wide['nn.Linear']['score std']:.2f}"),
    }
    by_definition = {0, 3}  # "0 for one-hot", problem numbers 1-3, "tokens 3 and 4"
    # "Which scale layers start from": widths, 1/3, 1/2, N(0, 0.02), the citation
    by_definition |= {768, 64, 2, 0.02, 2018, 4.1}
    found = set(numbers(text.replace("%", "")))
    assert found <= checked | by_definition, sorted(found - checked - by_definition)



@pytest.mark.parametrize("dtype, tol", [(torch.float16, 1e-3), (torch.bfloat16, 1e-2),
                                        (torch.float32, 1e-5)])
def test_saturation_stats_in_each_dtype_match_float64_at_the_stated_accuracy(dtype, tol):
    """The docstring's claim, on scores far from the 0.99 threshold of "saturated"."""
    scores = scaled_scores_by_init(num_runs=50)["torch.randn"].to(dtype)  # (50, 4, 4)
    got, exact = saturation_stats(scores), saturation_stats(scores.double())
    for key in got:
        assert math.isclose(got[key], exact[key], rel_tol=tol, abs_tol=tol), key


# A refused call changes nothing: the layer, the input, the caller's generator

SELF_ATTENTION_ERRORS = {
    "x-list": ([[1.0] * 5], {}),
    "x-width": (torch.zeros(1, 4, 6), {}),
    "x-dtype": (torch.zeros(1, 4, 5, dtype=torch.float64), {}),
    "x-device": (torch.zeros(1, 4, 5, device="meta"), {}),
    "mask-float": (torch.zeros(1, 4, 5), {"mask": torch.zeros(4, 4)}),
    "mask-and-causal": (torch.zeros(1, 4, 5),
                        {"mask": torch.ones(4, 4, dtype=torch.bool), "is_causal": True}),
    "is_causal": (torch.zeros(1, 4, 5), {"is_causal": "no"}),
}


@pytest.mark.parametrize("case", sorted(SELF_ATTENTION_ERRORS))
def test_a_refused_forward_changes_nothing(case):
    x, kwargs = SELF_ATTENTION_ERRORS[case]
    layer = seeded_layer(5, 5)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    x_before = x.clone() if isinstance(x, torch.Tensor) else x
    with pytest.raises(ValueError, match=r" must "):
        layer(x, **kwargs)
    assert all(torch.equal(v, state[k]) for k, v in layer.state_dict().items())
    assert all(p.grad is None for p in layer.parameters())
    if isinstance(x, torch.Tensor) and x.device.type != "meta":
        assert torch.equal(x, x_before)


@pytest.mark.parametrize("kwargs", [{"seq_len": 0}, {"d_model": 2.0},
                                    {"weight_scale": float("nan")}, {"generator": 3}])
def test_a_refused_article_example_draws_nothing(kwargs):
    generator = torch.Generator().manual_seed(0)
    state, global_state = generator.get_state(), torch.get_rng_state()
    with pytest.raises(ValueError, match=r" must "):
        article_example(**{"generator": generator, **kwargs})
    assert torch.equal(generator.get_state(), state)
    assert torch.equal(torch.get_rng_state(), global_state)


@pytest.mark.parametrize("args", [(0, 4), (5, True), (5, 4, 3.0), (5, 4, 3, "no")])
def test_bad_sizes_and_bias_are_refused(args):
    with pytest.raises(ValueError, match=r"^(d_model|d_k|d_v|bias) must "):
        SelfAttention(*args)


def test_from_matrices_keeps_the_matrices_dtype():
    """It used to copy float64 matrices into a float32 layer, silently."""
    w = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    layer = SelfAttention.from_matrices(w, w, w)
    assert layer.w_q.weight.dtype == torch.float64
    assert torch.equal(layer.w_q.weight, w.T)


@pytest.mark.parametrize("args, pattern", [
    (("torch.rand", 5, 5), r"name must be one of torch\.randn \(the article\), .*got "
                           r"'torch\.rand'"),
    (("nn.Linear default", 0, 5), r"d_model must be a positive int, got 0"),
    (("nn.MultiheadAttention", 6, 4), r"d_k must divide d_model, .*got d_model=6 and "
                                      r"d_k=4"),
    (("GPT-2, N(0, 0.02)", 4, 2, 1, 1), r"at least two scores .*got num_runs=1 and "
                                        r"seq_len=1"),
])
def test_score_spread_refuses_what_has_no_spread(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        score_spread(*args)
