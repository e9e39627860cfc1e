"""snippets/softmax_stability.py, and the numbers docs/softmax-stability.md states about it."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from figures.softmax_stability import dropout_row_sums_svg
from snippets.softmax_stability import (
    FLOAT_BITS,
    attention_dropout,
    dropout_average,
    log_softmax,
    logsumexp,
    naive_softmax,
    overflow_threshold,
    stable_softmax,
)
from tests.pages import numbers, prose, read_page, section, tables

PAGE = "softmax-stability.md"
DTYPES = list(FLOAT_BITS)
SIGMAS = 4  # the tolerance of the statistical tests, in standard errors


def next_up(x: float, dtype) -> float:
    """The next number of ``dtype`` above x."""
    t = torch.tensor(x, dtype=dtype)
    return torch.nextafter(t, torch.tensor(math.inf, dtype=dtype)).item()


def exp_in(x: float, dtype) -> float:
    return torch.exp(torch.tensor(x, dtype=dtype)).item()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- the overflow threshold ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_threshold_is_the_last_finite_exp(dtype):
    x = overflow_threshold(dtype)
    assert torch.tensor(x, dtype=dtype).item() == x  # a number of the type itself
    assert math.isfinite(exp_in(x, dtype))
    assert exp_in(next_up(x, dtype), dtype) == math.inf
    # vectorised exp (long tensors take another code path) agrees at the edge
    edge = torch.full((1000,), x, dtype=dtype)
    assert torch.isfinite(torch.exp(edge)).all()
    assert torch.isinf(torch.exp(torch.nextafter(edge, edge + 1))).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_threshold_is_within_one_step_of_log_max(dtype):
    """Independent check: the answer is log(finfo.max), up to one step of the type."""
    log_max = math.log(torch.finfo(dtype).max)
    x = overflow_threshold(dtype)
    assert x <= log_max < next_up(next_up(x, dtype), dtype)


def test_float16_and_float32_thresholds_are_the_known_ones():
    """The values the page reports (each is 1 step below log(max) rounded)."""
    assert overflow_threshold(torch.float16) == 11.0859375
    assert overflow_threshold(torch.float32) == pytest.approx(88.7228317, abs=1e-7)


@pytest.mark.parametrize("dtype", [torch.int32, "float32", None, torch.complex64])
def test_threshold_rejects_other_types(dtype):
    with pytest.raises(ValueError, match=r"dtype must be one of torch.float16.*got"):
        overflow_threshold(dtype)


# --- naive vs stable softmax ---------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_naive_softmax_is_fine_at_the_threshold_and_nan_one_step_above(dtype):
    x = overflow_threshold(dtype)
    at = torch.tensor([x, 0.0, -2.0], dtype=dtype)
    above = torch.tensor([next_up(x, dtype), 0.0, -2.0], dtype=dtype)
    assert torch.isfinite(naive_softmax(at)).all()
    torch.testing.assert_close(naive_softmax(at), stable_softmax(at))
    weights = naive_softmax(above)
    assert torch.isnan(weights[0]) and torch.all(weights[1:] == 0)
    assert torch.isfinite(stable_softmax(above)).all()
    torch.testing.assert_close(stable_softmax(above), torch.softmax(above, dim=-1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=str)
def test_a_row_sum_overflows_below_the_threshold_and_gives_zeros(dtype):
    x = overflow_threshold(dtype)
    scores = torch.tensor([x, x - 1], dtype=dtype)
    assert torch.all(naive_softmax(scores) == 0)  # finite / inf: silently zero
    torch.testing.assert_close(
        stable_softmax(scores), torch.tensor([0.7311, 0.2689], dtype=dtype),
        atol=1e-3, rtol=0,
    )


def test_naive_softmax_underflows_to_nan_for_very_negative_rows():
    scores = torch.tensor([-200.0, -201.0])  # exp underflows to 0 in float32
    assert torch.isnan(naive_softmax(scores)).all()
    torch.testing.assert_close(stable_softmax(scores), torch.softmax(scores, -1))


rows = st.lists(st.floats(-700, 700), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(row=rows)
def test_naive_and_stable_agree_in_exact_enough_arithmetic(row):
    """In float64 and |x| <= 700 the naive formula never overflows, and then the
    two are the same function (the algebra of the page), to rounding."""
    x = torch.tensor(row, dtype=torch.float64)
    naive = naive_softmax(x)
    assert torch.isfinite(naive).all()
    torch.testing.assert_close(stable_softmax(x), naive, rtol=1e-12, atol=1e-300)


@settings(max_examples=200, deadline=None)
@given(row=rows, shift=st.floats(-1000, 1000))
def test_adding_a_constant_changes_nothing(row, shift):
    x = torch.tensor(row, dtype=torch.float64)
    torch.testing.assert_close(stable_softmax(x + shift), stable_softmax(x),
                               rtol=1e-9, atol=1e-300)


@settings(max_examples=100, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1.0, 30.0, 1e3, 1e5]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    data=st.data(),
)
def test_stable_softmax_equals_torch_softmax(shape, seed, scale, dtype, data):
    """On any float32/float64 scores, including far past the thresholds."""
    x = (randn(*shape, seed=seed) * scale).to(dtype)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    weights = stable_softmax(x, dim=dim)
    torch.testing.assert_close(weights, torch.softmax(x, dim=dim))
    torch.testing.assert_close(weights.sum(dim), torch.ones_like(weights.sum(dim)))


def test_float16_stable_softmax_equals_torch_softmax():
    x = randn(6, 7) * 40
    for dim in (0, 1):
        torch.testing.assert_close(
            stable_softmax(x.half(), dim=dim), torch.softmax(x.half(), dim=dim),
            atol=1e-3, rtol=1e-3,
        )


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: naive_softmax([1.0, 2.0]), r"x must be a torch.Tensor of shape \(\.\.\., n\), got list"),
        (lambda: stable_softmax(torch.tensor([1, 2])), r"x must have dtype float16, .*got int64"),
        (lambda: stable_softmax(torch.zeros(2, 3), dim=2),
         r"dim must be an int from -2 to 1 \(x has shape \(2, 3\)\), got 2"),
        (lambda: logsumexp(torch.tensor(1.0)), r"x must have shape \(\.\.\., n\), got shape \(\)"),
        (lambda: log_softmax(torch.zeros(3), dim=-2), r"dim must be an int from -1 to 0 .*got -2"),
        (lambda: stable_softmax(torch.zeros(2, 0)), r"x must have at least one entry along dim=-1, got shape \(2, 0\)"),
        (lambda: logsumexp(torch.zeros(2, 0)), r"x must have at least one entry along dim=-1"),
        (lambda: log_softmax(torch.zeros(0, 2), dim=0), r"x must have at least one entry along dim=0"),
        (lambda: naive_softmax(torch.zeros(2), dim=True), r"dim must be an int .*got True"),
        (lambda: logsumexp(torch.zeros(2), keepdim=1), r"keepdim must be True or False, got 1"),
    ],
)
def test_bad_scores_are_a_clear_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# --- log-sum-exp and log-softmax -----------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1.0, 50.0, 1e4]),
    keepdim=st.booleans(),
    data=st.data(),
)
def test_logsumexp_and_log_softmax_equal_torch(shape, seed, scale, keepdim, data):
    x = randn(*shape, seed=seed) * scale
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    # x - logsumexp(x) cancels two numbers of size |x|: the error is a few float32
    # ulps of |x|, not of the (possibly tiny) result.
    atol = 8 * torch.finfo(torch.float32).eps * max(x.abs().max().item(), 1.0)
    torch.testing.assert_close(
        logsumexp(x, dim=dim, keepdim=keepdim), torch.logsumexp(x, dim=dim, keepdim=keepdim),
        atol=atol, rtol=1.3e-6,
    )
    torch.testing.assert_close(log_softmax(x, dim=dim), torch.log_softmax(x, dim=dim),
                               atol=atol, rtol=1.3e-6)
    assert torch.isfinite(log_softmax(x, dim=dim)).all()


def test_log_softmax_stays_finite_where_log_of_softmax_is_minus_inf():
    scores = torch.tensor([0.0, -120.0])
    assert torch.log(stable_softmax(scores))[1] == -math.inf  # underflow
    assert torch.log(torch.softmax(scores, -1))[1] == -math.inf
    assert log_softmax(scores).tolist() == [0.0, -120.0]
    torch.testing.assert_close(log_softmax(scores), torch.log_softmax(scores, -1))
    big = torch.tensor([1000.0, 999.0])
    assert torch.log(torch.exp(big).sum()).item() == math.inf
    assert logsumexp(big).item() == pytest.approx(1000 + math.log1p(math.exp(-1)))


@pytest.mark.parametrize(
    "row", [[-math.inf, -math.inf], [math.inf, 0.0], [-math.inf, 3.0], [math.inf, math.inf]]
)
def test_infinite_scores_are_handled_like_torch(row):
    x = torch.tensor(row)
    torch.testing.assert_close(logsumexp(x), torch.logsumexp(x, -1), equal_nan=True)
    torch.testing.assert_close(stable_softmax(x), torch.softmax(x, -1), equal_nan=True)


# --- dropout -------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_attention_dropout_makes_the_draws_of_torch_dropout(p):
    weights = torch.softmax(randn(3, 5, 5), dim=-1)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        expected = F.dropout(weights, p=p, training=True)
        torch.manual_seed(7)
        got = attention_dropout(weights, p)
    assert torch.equal(got, expected)
    generator = torch.Generator().manual_seed(3)
    dropped = attention_dropout(weights, p, generator=generator)
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], weights[kept] / (1 - p))


def test_attention_dropout_in_eval_mode_is_the_identity():
    weights = torch.softmax(randn(4, 4), dim=-1)
    assert attention_dropout(weights, 0.5, training=False) is weights
    assert torch.equal(F.dropout(weights, 0.5, training=False), weights)


@pytest.mark.parametrize("p", [1, 1.0, -0.1, 1.5, math.nan, True, "0.1", None])
def test_attention_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\), got"):
        attention_dropout(torch.ones(2, 2), p)


@pytest.mark.parametrize("num_masks", [0, -3, 2.5, True, "10"])
def test_dropout_average_rejects_bad_num_masks(num_masks):
    with pytest.raises(ValueError, match=r"num_masks must be a positive int, got"):
        dropout_average(torch.ones(2, 2), 0.1, num_masks)


@pytest.mark.parametrize("p, seed", [(0.1, 0), (0.25, 1), (0.5, 2), (0.75, 3)])
def test_dropout_keeps_the_expected_weights_and_row_sums(p, seed):
    """Averaged over many masks, each weight and each row sum is within SIGMAS
    standard errors of the value without dropout, while single masks are not."""
    weights = torch.softmax(randn(2, 5, 6, seed=seed) * 2, dim=-1)
    num_masks = 20_000
    generator = torch.Generator().manual_seed(seed)
    mean, standard_error = dropout_average(weights, p, num_masks, generator=generator)
    assert torch.all((mean - weights).abs() <= SIGMAS * standard_error)
    row_se = (weights**2).sum(-1).sqrt() * math.sqrt(p / ((1 - p) * num_masks))
    assert torch.all((mean.sum(-1) - 1).abs() <= SIGMAS * row_se)
    single = attention_dropout(weights, p, generator=generator)
    assert not torch.allclose(single.sum(-1), torch.ones(2, 5))


def test_dropout_standard_error_formula_matches_the_spread():
    """The standard error of the page is the sample spread of one draw / sqrt(N)."""
    weights = torch.softmax(randn(4, 4), dim=-1)
    p, num_masks = 0.3, 40_000
    generator = torch.Generator().manual_seed(11)
    draws = attention_dropout(weights.expand(num_masks, 4, 4), p, generator=generator)
    _, standard_error = dropout_average(weights, p, num_masks)
    torch.testing.assert_close(
        draws.std(dim=0) / math.sqrt(num_masks), standard_error, rtol=0.03, atol=0
    )


def test_sdpa_applies_the_same_dropout_inside():
    q, k, v = randn(3, 2, 5, 8).unbind(0)
    with torch.random.fork_rng():
        torch.manual_seed(6)
        fused = F.scaled_dot_product_attention(q, k, v, dropout_p=0.25)
        torch.manual_seed(6)
        weights = stable_softmax(q @ k.transpose(-2, -1) / math.sqrt(8))
        by_hand = F.dropout(weights, p=0.25, training=True) @ v
    torch.testing.assert_close(fused, by_hand, atol=1e-6, rtol=0)
    assert not torch.allclose(fused, F.scaled_dot_product_attention(q, k, v))


# --- the numbers on the page ---------------------------------------------------


@pytest.fixture(scope="module")
def page():
    return read_page(PAGE)


def code_value(page: str, name: str) -> float:
    """The number assigned to ``name`` in a code block of the page."""
    (value,) = set(re.findall(rf"^ *{name} = ([\d_.]+)\s*(?:#.*)?$", page, re.M))
    return float(value.replace("_", ""))


def test_threshold_table(page):
    (table,) = tables(section(page, "Where the exponential overflows"))
    header, *rows = table
    assert [r[0] for r in rows] == ["float16", "bfloat16", "float32", "float64"]
    for (name, largest, log_max, x, above), dtype in zip(rows, DTYPES):
        finfo_max = torch.finfo(dtype).max
        expected = f"{finfo_max:.0f}" if finfo_max < 1e5 else f"{finfo_max:.4e}"
        assert largest == expected
        assert log_max == f"{math.log(finfo_max):.4f}"
        assert float(x) == overflow_threshold(dtype)
        assert float(above) == next_up(overflow_threshold(dtype), dtype)


def test_the_three_remarks_under_the_table(page):
    text = prose(section(page, "Where the exponential overflows"))
    remark = re.search(r"overflows at about 11\.\*\*(.*?)\n- ", text, re.S).group(1)
    d_k = 64
    std = math.sqrt(d_k)  # unit-variance entries: the dot product's variance is d_k
    threshold = overflow_threshold(torch.float16)
    above = 0.5 * math.erfc(threshold / std / math.sqrt(2))
    assert numbers(remark) == [d_k, std, round(100 * above), threshold]
    # the normal approximation is right here: simulated dot products agree
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 200_000, d_k, generator=generator)
    simulated = ((q * k).sum(-1) > threshold).float().mean().item()
    assert round(100 * simulated) == round(100 * above)
    assert "11.0859375" in text and round(threshold) == 11
    bf16 = re.search(r"float32's range\*\*(.*?)\n- ", text, re.S).group(1)
    x = overflow_threshold(torch.bfloat16)
    assert numbers(bf16) == [x, next_up(x, torch.bfloat16) - x]
    rounding = re.search(r"not the answer\.\*\*(.*)", text, re.S).group(1)
    rounded = [
        torch.tensor(math.log(torch.finfo(d).max), dtype=d).item()
        for d in (torch.float16, torch.float32)
    ]
    assert numbers(rounding)[:2] == rounded
    for value, dtype in zip(rounded, (torch.float16, torch.float32)):
        assert exp_in(value, dtype) == math.inf  # the rounded log already overflows
        assert value == next_up(overflow_threshold(dtype), dtype)  # one step above


def test_underflow_numbers(page):
    text = prose(section(page, "Log-sum-exp and log-softmax"))
    sentence = re.search(r"Two float32 scores.*?as 0\.", text, re.S).group(0)
    gap = 120
    assert numbers(sentence) == [
        gap, -gap,
        float(f"{math.exp(-gap):.1e}"),
        float(f"{torch.finfo(torch.float32).smallest_normal * 2**-23:.1e}"),
        0,
    ]
    assert math.exp(-gap) < torch.finfo(torch.float32).smallest_normal * 2**-23 / 2
    assert "$-120$, the exact answer" in text
    assert log_softmax(torch.tensor([0.0, -120.0]))[1].item() == -gap
    # "it returns the finite loss 120": cross_entropy is -log_softmax at the target
    loss = F.cross_entropy(torch.tensor([[0.0, -120.0]]), torch.tensor([1]))
    assert loss.item() == gap and f"finite loss {gap} printed last" in " ".join(text.split())


def test_dropout_numbers(page):
    text = prose(section(page, "Dropout on the attention weights"))
    p = code_value(page, "p")
    assert f"$p = {p}$" in text
    with torch.random.fork_rng():
        torch.manual_seed(0)
        weights = stable_softmax(torch.randn(4, 4))
        torch.manual_seed(4)
        dropped = F.dropout(weights, p=p, training=True)
    sums = dropped.sum(-1)
    full = re.search(r"loses nothing sums to \$1/\(1 - p\)\$ = ([\d.]+)", text).group(1)
    assert float(full) == round(1 / (1 - p), 4)
    assert any(abs(s - 1 / (1 - p)) < 1e-6 for s in sums.tolist())  # shown on the page
    assert (sums < 0.75).any()  # "a row that loses a large weight sums to much less"

    num_masks = int(code_value(page, "num_masks"))
    generator = torch.Generator().manual_seed(2)
    mean, standard_error = dropout_average(weights, p, num_masks, generator=generator)
    z = ((mean - weights) / standard_error).abs().max().item()
    sentence = re.search(r"Over (\d+) masks, no mean is more than ([\d.]+) standard "
                         r"errors from its weight, well\s+inside the (\d+) standard", text)
    assert int(sentence.group(1)) == num_masks
    assert float(sentence.group(2)) == round(z, 4)
    assert int(sentence.group(3)) == SIGMAS and z < SIGMAS


def test_dropout_figure_numbers(page):
    import inspect

    defaults = {
        name: param.default
        for name, param in inspect.signature(dropout_row_sums_svg).parameters.items()
    }
    text = prose(section(page, "Dropout on the attention weights"))
    figure = re.search(r"The\s+picture shows.*?\n\n!\[(.*?)\]", text, re.S)
    said, alt = figure.group(0), figure.group(1)
    assert "one row of 8 weights with $p = 0.1$" in said.replace("\n", " ")
    assert defaults["p"] == 0.1
    assert numbers(alt) == [8, defaults["p"], defaults["num_masks"], 1, 1]
    # the histogram's row has 8 weights: the figure code says so
    assert "torch.randn(8, generator=generator)" in inspect.getsource(dropout_row_sums_svg)
    pile = re.search(r"pile up at \$1/\(1 - p\)\$ ≈ ([\d.]+)", said).group(1)
    assert float(pile) == round(1 / (1 - defaults["p"]), 2)


def test_check_yourself_numbers(page):
    start = page.index('??? question "Check yourself')
    question = prose(page[start:page.index('??? example "All the code')])
    scores = torch.tensor([11.0, 10.5], dtype=torch.float16)
    exps = torch.exp(scores)
    exact = [math.exp(11.0), math.exp(10.5)]
    assert numbers(question)[:3] == [11.0, 10.5, overflow_threshold(torch.float16)]
    said = re.search(r"\\approx\$ (\d+) and \$e\^\{10\.5\} \\approx\$ (\d+), which\s+"
                     r"float16 stores as (\d+) and (\d+)\), but their sum, about (\d+), "
                     r"is larger than\s+(\d+), the largest float16", question)
    assert [int(g) for g in said.groups()] == [
        round(exact[0]), round(exact[1]), *[int(e) for e in exps.tolist()],
        round(sum(exact)), int(torch.finfo(torch.float16).max),
    ]
    assert all(x < overflow_threshold(torch.float16) for x in scores.tolist())
    assert exps.sum().item() == math.inf and torch.all(naive_softmax(scores) == 0)


def test_every_number_in_the_prose_is_one_the_tests_check(page):
    """A number added to the prose without a test fails here."""
    checked = {
        # inputs, stated as such on the page or in its code
        0, 1, 2, 4, 8, 16, 32, 64, 120, -120, 0.1, 0.25, 10.5, 11.0, -0.5, 0.5,
        4000, 20000,
        # cited: Srivastava et al., 2014; the 0.1 of attn_pdrop and
        # attention_probs_dropout_prob is in the inputs above
        2014,
        # computed, each asserted above
        65504, 11.0899, 88.7189, 88.7228, 709.7827, 3.3895e38, 3.4028e38, float("inf"),
        1.3333, 1.9107, 1.11, 7.7e-53, 1.4e-45,
        59874, 36316, 59872, 36320, 96190,
    }
    for dtype in DTYPES:
        x = overflow_threshold(dtype)
        checked |= {x, next_up(x, dtype)}
    unknown = sorted(set(numbers(prose(page))) - checked)
    assert not unknown, f"numbers on the page that no test checks: {unknown}"


@pytest.mark.parametrize("call", [
    lambda g: attention_dropout(torch.ones(2, 2), 1.0, generator=g),
    lambda g: attention_dropout(torch.ones(2, 2), 0.5, training="yes", generator=g),
    lambda g: attention_dropout([1.0], 0.5, generator=g),
    lambda g: dropout_average(torch.ones(2, 2), 0.5, 0, generator=g),
    lambda g: dropout_average(torch.ones(2, 2), -0.5, 3, generator=g),
])
def test_a_refused_dropout_draws_nothing(call):
    """The generator is the caller's state: a refused call leaves it where it was."""
    generator = torch.Generator().manual_seed(0)
    state, global_state = generator.get_state(), torch.get_rng_state()
    with pytest.raises(ValueError, match=r" must "):
        call(generator)
    assert torch.equal(generator.get_state(), state)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_attention_dropout_refuses_a_generator_that_is_not_one():
    with pytest.raises(ValueError, match=r"generator must be None or a torch.Generator, "
                                         r"got int"):
        attention_dropout(torch.ones(2), 0.5, generator=3)


def test_overflow_threshold_refuses_other_dtypes():
    with pytest.raises(ValueError, match=r"dtype must be one of torch.float16, "
                                         r"torch.bfloat16, torch.float32, torch.float64, "
                                         r"got torch.int32"):
        overflow_threshold(torch.int32)
