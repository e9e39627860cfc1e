"""snippets/scaling.py and the numbers on docs/scaling.md."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snippets.attention import attention_weights
from snippets.scaling import (
    D_K_VALUES,
    format_table,
    measure_scaling,
    sample_scores,
    softmax_jacobian_norm,
)
from tests.pages import numbers, prose, read_page, section

PAGE = prose(read_page("scaling.md"))


@pytest.fixture(scope="module")
def results():
    return measure_scaling()


def r3(x):
    """A value as the page writes it, to 3 decimals."""
    return round(x, 3)


# ---------------------------------------------------------------- the trends


def test_the_widths_are_powers_of_two_from_4_to_1024(results):
    assert results["d_k"] == [4, 8, 16, 32, 64, 128, 256, 512, 1024] == list(D_K_VALUES)
    assert results["num_keys"] == 16


def test_unscaled_spread_grows_like_root_dk_and_scaled_stays_at_1(results):
    for d_k, std, scaled in zip(results["d_k"], results["std_unscaled"],
                                results["std_scaled"]):
        assert std / math.sqrt(d_k) == pytest.approx(1, rel=0.05)
        assert scaled == pytest.approx(1, rel=0.05)
        assert scaled == pytest.approx(std / math.sqrt(d_k), rel=1e-5)


def test_unscaled_softmax_saturates_and_scaled_does_not(results):
    unscaled, scaled = results["max_weight_unscaled"], results["max_weight_scaled"]
    assert all(a < b for a, b in zip(unscaled, unscaled[1:]))  # rises with d_k
    assert unscaled[-1] > 0.9
    uniform = 1 / results["num_keys"]
    assert all(uniform < w < 0.3 for w in scaled)
    assert all(u > s for u, s in zip(unscaled, scaled))


def test_unscaled_gradient_shrinks_and_scaled_does_not(results):
    unscaled, scaled = results["grad_unscaled"], results["grad_scaled"]
    assert all(a > b for a, b in zip(unscaled, unscaled[1:]))  # falls with d_k
    assert unscaled[-1] < unscaled[0] / 5
    assert results["grad_median_unscaled"][-1] < 1e-4
    mean = sum(scaled) / len(scaled)
    assert all(g == pytest.approx(mean, rel=0.05) for g in scaled)
    assert results["grad_median_scaled"][-1] == pytest.approx(mean, rel=0.05)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_trends_do_not_depend_on_the_seed(seed):
    other = measure_scaling(seed=seed)
    assert all(s / math.sqrt(d) == pytest.approx(1, rel=0.05)
               for d, s in zip(other["d_k"], other["std_unscaled"]))
    assert other["max_weight_unscaled"][-1] > 0.9 > 0.3 > max(other["max_weight_scaled"])
    grads = other["grad_unscaled"]
    assert all(a > b for a, b in zip(grads, grads[1:]))


# ---------------------------------------------------------------- the pieces


def test_sample_scores_shapes_seed_and_scaling():
    unscaled, scaled = sample_scores((4, 16), num_keys=8, num_groups=3,
                                     queries_per_group=5)
    assert unscaled.shape == scaled.shape == (2, 15, 8)
    torch.testing.assert_close(scaled[0], unscaled[0] / 2)
    torch.testing.assert_close(scaled[1], unscaled[1] / 4)
    again, _ = sample_scores((4, 16), num_keys=8, num_groups=3, queries_per_group=5)
    assert torch.equal(again, unscaled)
    other, _ = sample_scores((4, 16), num_keys=8, num_groups=3, queries_per_group=5,
                             seed=1)
    assert not torch.equal(other, unscaled)


def test_sample_scores_are_dot_products_of_the_first_dk_coordinates():
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 8, generator=generator)  # same draws as sample_scores
    k = torch.randn(2, 4, 8, generator=generator)
    unscaled, _ = sample_scores((2, 8), num_keys=4, num_groups=2, queries_per_group=3)
    expected = torch.einsum("gqd,gkd->gqk", q[..., :2], k[..., :2]).reshape(6, 4)
    torch.testing.assert_close(unscaled[0], expected)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"d_k_values": ()}, r"d_k_values must be a non-empty list of positive ints, "
         r"got \(\)"),
        ({"d_k_values": (4, 0)}, r"d_k_values\[1\] must be a positive int, got 0"),
        ({"d_k_values": (4.0,)}, r"d_k_values\[0\] must be a positive int, got 4.0"),
        ({"d_k_values": (True,)}, r"d_k_values\[0\] must be a positive int, got True"),
        ({"d_k_values": 4}, r"d_k_values must be a list of positive ints, got int"),
        ({"d_k_values": (4,), "num_keys": 1}, r"num_keys must be an int >= 2, got 1"),
        ({"d_k_values": (4,), "num_groups": 0}, r"num_groups must be a positive int"),
        ({"d_k_values": (4,), "seed": -1}, r"seed must be an int from 0 to 9223372036854775807, got -1"),
    ],
)
def test_sample_scores_rejects_bad_input(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        sample_scores(**kwargs)


def autograd_jacobian_norm(scores):
    jac = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, dim=-1), scores)
    return torch.linalg.matrix_norm(jac).item()


@settings(max_examples=40, deadline=None)
@given(row=st.lists(st.floats(-30, 30), min_size=2, max_size=12))
def test_jacobian_norm_matches_autograd(row):
    scores = torch.tensor(row, dtype=torch.float64)
    ours = softmax_jacobian_norm(torch.softmax(scores, dim=-1)).item()
    assert ours == pytest.approx(autograd_jacobian_norm(scores), rel=1e-9, abs=1e-15)


def test_jacobian_norm_batches():
    scores = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0))
    norms = softmax_jacobian_norm(torch.softmax(scores, dim=-1))
    assert norms.shape == (3, 2)
    assert norms[1, 0].item() == pytest.approx(autograd_jacobian_norm(scores[1, 0]),
                                                rel=1e-5)


def test_jacobian_norm_stays_accurate_when_the_softmax_saturates():
    """In float32, with one weight close to 1, the norm keeps its small value (the
    closed form sum p^2 - 2 sum p^3 + (sum p^2)^2 rounds it away)."""
    scores = torch.tensor([12.0, 0.0, -1.0, 0.5])
    weights = torch.softmax(scores, dim=-1)
    reference = autograd_jacobian_norm(scores.double())
    assert 1e-6 < reference < 1e-4
    assert softmax_jacobian_norm(weights).item() == pytest.approx(reference, rel=1e-2)
    p2, p3 = (weights**2).sum(), (weights**3).sum()
    closed_form = (p2 - 2 * p3 + p2**2).clamp_min(0).sqrt().item()
    assert closed_form != pytest.approx(reference, rel=0.1)


def test_a_uniform_and_a_one_hot_softmax():
    t = 16
    uniform = softmax_jacobian_norm(torch.full((t,), 1 / t)).item()
    assert uniform == pytest.approx(math.sqrt((t - 1) / t**2), rel=1e-6)
    one_hot = torch.zeros(t)
    one_hot[3] = 1
    assert softmax_jacobian_norm(one_hot).item() == 0


def test_format_table_prints_every_measurement(results):
    lines = format_table(results).splitlines()
    assert len(lines) == 2 + len(results["d_k"])
    columns = ["std_unscaled", "std_scaled", "max_weight_unscaled", "max_weight_scaled",
               "grad_unscaled", "grad_scaled"]
    for i, line in enumerate(lines[2:]):
        values = [float(x) for x in line.split()]
        assert values == [results["d_k"][i], *(r3(results[c][i]) for c in columns)]
    assert max(len(line) for line in lines) <= 88


# ---------------------------------------------------------------- the page's numbers


def test_intro_numbers():
    assert numbers(PAGE.split("\n## ", 1)[0]) == [min(D_K_VALUES), max(D_K_VALUES)]


def test_derivation_numbers():
    """The derivation's constants; and E[q_i^2 k_i^2] = 1 and Var(q.k) = d_k hold
    on samples."""
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 200_000, 8, generator=generator, dtype=torch.float64)
    assert (q[:, 0] ** 2 * k[:, 0] ** 2).mean().item() == pytest.approx(1, rel=0.02)
    assert (q * k).sum(-1).var().item() == pytest.approx(8, rel=0.02)
    assert numbers(section(PAGE, "Where √d_k comes from")) == [
        0, 1,  # entries with mean 0 and variance 1
        0, 2, 2, 2, 2, 1,  # each product: mean 0, E[q^2 k^2] = E[q^2] E[k^2] = 1
        1, 1,  # the sum from i = 1; std(q.k / sqrt(d_k)) = 1
        1,  # "brings it back to 1"
        0, 1,  # "mean 0 and variance 1 are enough"
    ]


def test_saturation_numbers():
    assert round(math.exp(10)) == 22026
    assert math.sqrt(max(D_K_VALUES)) == 32
    assert numbers(section(PAGE, "Why a wide spread hurts")) == [
        10, 10, round(math.exp(10)), math.sqrt(max(D_K_VALUES)), 1, 0, 0]


def test_measured_numbers(results):
    d_k = results["d_k"]
    first, last = d_k[0], d_k[-1]
    std_u, std_s = results["std_unscaled"], results["std_scaled"]
    max_u, max_s = results["max_weight_unscaled"], results["max_weight_scaled"]
    grad_u, grad_s = results["grad_unscaled"], results["grad_scaled"]
    median_u = results["grad_median_unscaled"]
    unscaled, _ = sample_scores(D_K_VALUES)
    groups, queries, keys = 64, unscaled.shape[1] // 64, unscaled.shape[2]
    within = max(abs(s - 1) for s in std_s) * 100
    uniform = 1 / results["num_keys"]
    times = max(s / uniform for s in max_s)
    shrink = grad_u[0] / grad_u[-1]
    median_last = float(f"{median_u[-1]:.5f}")
    median_ratio = median_u[0] / median_u[-1]
    head = 64  # BERT-base's head width: 768 wide, 12 heads (cited on the page)
    crossing = next(d for d, u, s in zip(d_k, grad_u, grad_s) if u < s)
    assert crossing == 16 and all(u < s for u, s in zip(grad_u[2:], grad_s[2:]))
    assert median_ratio > 10000
    expected_setup = [groups, keys, queries, groups * queries, keys, first, last]
    expected_findings = [
        last, r3(std_u[-1]), last, math.sqrt(last),
        r3(min(std_s)), r3(max(std_s)), round(within, 1),
        keys, r3(max_u[0]), first, r3(max_u[-1]), last,
        r3(min(max_s)), r3(max(max_s)), round(times), uniform,
        r3(grad_u[0]), first, r3(grad_u[-1]), last, round(shrink),
        last, median_last, 10000, first, r3(min(grad_s)), r3(max(grad_s)),
        first, round(std_u[0]), r3(max_u[0]), r3(max_s[0]),
        r3(grad_u[0]), r3(grad_s[0]), crossing,
        1,  # the documented default scale 1/sqrt(E)
        head, 768, 12, 2019, 3, 2,  # BERT-base (Devlin et al., 2019, section 3); GPT-2
        r3(max_u[d_k.index(head)]), r3(max_s[d_k.index(head)]),
    ]
    assert numbers(section(PAGE, "What the numbers say")) == expected_findings
    assert numbers(section(PAGE, "Measured")) == expected_setup + expected_findings


def test_figure_alt_text_numbers(results):
    d_k = results["d_k"]
    std_u = results["std_unscaled"]
    max_u, max_s = results["max_weight_unscaled"], results["max_weight_scaled"]
    grad_u, grad_s = results["grad_unscaled"], results["grad_scaled"]
    assert results["grad_median_unscaled"][-1] < 0.0001
    assert all(round(s, 1) == 1 for s in results["std_scaled"])
    assert all(round(g, 1) == 0.3 for g in grad_s)
    assert numbers(section(PAGE, "The picture")) == [
        d_k[0], d_k[-1], round(std_u[0]), round(std_u[-1]), 1,
        round(max_u[0], 2), round(max_u[-1], 2), round(min(max_s), 2), round(max(max_s), 2),
        round(grad_u[0], 2), round(grad_u[-1], 2), 0.0001, 0.3,
    ]


def test_check_yourself_numbers():
    d_k, keys = 256, 16
    unscaled, _ = sample_scores((d_k,), num_keys=keys)
    over = unscaled / d_k
    spread = round(over.std().item(), 4)
    largest = round(attention_weights(over).amax(dim=-1).mean().item(), 4)
    assert spread == round(math.sqrt(d_k) / d_k, 4) == 0.0625
    uniform = 1 / keys
    assert largest - uniform < 0.01
    assert numbers(section(PAGE, "Check yourself")) == [
        1, d_k, spread, keys, largest, uniform, 1]


# ---------------------------------------------------------------- the classic mistake

RAW = read_page("scaling.md")


def test_dividing_by_root_d_model_is_not_dividing_by_root_d_k():
    """The failing-on-purpose block: one head's scores divided by sqrt(d_model)
    instead of sqrt(d_k) have a spread sqrt(H) times smaller and a much flatter
    softmax. The mistaken version really differs from the correct one."""
    d_model, heads = 768, 12
    d_k = d_model // heads
    unscaled, _ = sample_scores((d_k,))
    right, wrong = unscaled / math.sqrt(d_k), unscaled / math.sqrt(d_model)
    assert not torch.allclose(right, wrong)
    assert (right.std() / wrong.std()).item() == pytest.approx(math.sqrt(heads))
    top_right = attention_weights(right).amax(dim=-1).mean().item()
    top_wrong = attention_weights(wrong).amax(dim=-1).mean().item()
    uniform = 1 / unscaled.shape[-1]
    assert top_wrong - uniform < 0.05 < top_right - top_wrong  # near uniform: flat
    assert "d_model, num_heads = 768, 12" in RAW
    assert numbers(section(PAGE, "A classic mistake: dividing by √d_model")) == [
        1, heads, round(wrong.std().item(), 4), 1,  # 1/sqrt(12) ≈ 0.2887 instead of 1
        unscaled.shape[-1], round(top_right, 4), round(top_wrong, 4), uniform,
    ]


# ---------------------------------------------------------------- real initialisations

def test_initialisation_recipes_are_the_ones_the_page_names():
    """nn.Linear: U(-1/sqrt(d), 1/sqrt(d)), std 1/sqrt(3 d); nn.MultiheadAttention:
    Xavier-uniform on its (3 d, d) in_proj_weight, std 1/sqrt(2 d)."""
    d = 768
    torch.manual_seed(0)
    linear = torch.nn.Linear(d, d).weight
    assert linear.abs().max().item() <= 1 / math.sqrt(d)
    assert linear.std().item() == pytest.approx(1 / math.sqrt(3 * d), rel=0.01)
    w_in = torch.nn.MultiheadAttention(d, 12).in_proj_weight
    assert w_in.shape == (3 * d, d)
    assert w_in.std().item() == pytest.approx(1 / math.sqrt(2 * d), rel=0.01)


def test_real_initialisation_spreads_match_the_formula():
    """The printed spreads are d_model * sigma_w^2 of each recipe, within sampling
    error, and the prose states the formula's values."""
    d_model = 768
    predicted = {
        "unit variance (above)": 1.0,
        "nn.Linear default": 1 / 3,
        "nn.MultiheadAttention": 1 / 2,
        "GPT, N(0, 0.02)": d_model * 0.02**2,
    }
    printed = dict(re.findall(r"^(\S.+?)\s+spread of scaled scores ([\d.]+)$", RAW, re.M))
    assert set(printed) == set(predicted)
    for name, value in predicted.items():
        assert float(printed[name]) == pytest.approx(value, rel=0.03), name
    text = section(PAGE, "What real initialisations give")
    assert f"{d_model * 0.02**2:.3f}" in text
    assert numbers(text) == [
        1, 1, 3,  # nn.Linear: uniform within 1/sqrt(d_model), std 1/sqrt(3 d_model)
        3, 1, 2,  # nn.MultiheadAttention: (3 d_model, d_model), std 1/sqrt(2 d_model)
        0.02, 2018, 4.1, 0.02, 2,  # GPT (Radford et al., 2018, 4.1); GPT-2's config
        2, 2, 2,  # sigma_w^2, three times
        1, 3, 1, 2,  # "1/3 for nn.Linear, 1/2 for nn.MultiheadAttention"
        d_model, 0.02, 2, round(d_model * 0.02**2, 3),  # 768 * 0.02^2 = 0.307
    ]
