"""snippets/computation.py: the NumPy twins of the five steps, and docs/computation.md.

NumPy runs in float64, PyTorch (snippets/attention.py) in float32 on float32 copies of
the same inputs, so they are compared with rtol=1e-5, atol=1e-6: float32 keeps about
7 significant digits and the values here are of order 1.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from snippets.attention import (
    attention_scores,
    attention_weights,
    project,
    scale_scores,
    weighted_sum,
)
from snippets.computation import (
    example_inputs,
    np_attention_scores,
    np_attention_weights,
    np_project,
    np_scale_scores,
    np_self_attention,
    np_weighted_sum,
)
from tests.pages import numbers, prose, read_page, section, tables

PAGE = "computation.md"
RTOL, ATOL = 1e-5, 1e-6
STEP_NAMES = ("q", "k", "v", "scores", "scaled", "weights", "output")


def numpy_steps(x, w_q, w_k, w_v):
    q, k, v = np_project(x, w_q, w_k, w_v)
    scores = np_attention_scores(q, k)
    scaled = np_scale_scores(scores, q.shape[-1])
    weights = np_attention_weights(scaled)
    output = np_weighted_sum(weights, v)
    return dict(zip(STEP_NAMES, (q, k, v, scores, scaled, weights, output)))


def torch_steps(x, w_q, w_k, w_v):
    x, w_q, w_k, w_v = (torch.tensor(a, dtype=torch.float32) for a in (x, w_q, w_k, w_v))
    q, k, v = project(x, w_q, w_k, w_v)
    scores = attention_scores(q, k)
    scaled = scale_scores(scores, q.shape[-1])
    weights = attention_weights(scaled)
    output = weighted_sum(weights, v)
    return dict(zip(STEP_NAMES, (q, k, v, scores, scaled, weights, output)))


def assert_steps_agree(np_steps, pt_steps):
    """float32 rounding errors grow with the size of the numbers summed, so the
    absolute tolerance grows with the largest intermediate value once that exceeds 1."""
    atol = ATOL * max(1.0, *(float(np.abs(a).max()) for a in np_steps.values()))
    for name in STEP_NAMES:
        a, b = np_steps[name], pt_steps[name]
        assert a.dtype == np.float64 and b.dtype == torch.float32, name
        assert a.shape == tuple(b.shape), name
        np.testing.assert_allclose(b.numpy(), a, rtol=RTOL, atol=atol, err_msg=name)


# ---------------------------------------------------------------------------
# The code: NumPy agrees with PyTorch at every step
# ---------------------------------------------------------------------------

DIMS = [  # batch, seq_len, d_model, d_k, d_v
    (2, 3, 6, 4, 5),  # the page's example
    (1, 4, 5, 5, 5),  # the article's sizes
    (3, 7, 16, 8, 2),
    (1, 1, 3, 2, 1),  # one token: its weight must be exactly 1
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dims", DIMS, ids=lambda d: "B{}-T{}-D{}-dk{}-dv{}".format(*d))
def test_numpy_and_pytorch_agree_at_every_step(dims, seed):
    inputs = example_inputs(*dims, seed=seed)
    np_steps, pt_steps = numpy_steps(*inputs), torch_steps(*inputs)
    assert_steps_agree(np_steps, pt_steps)
    batch, seq_len, _, d_k, d_v = dims
    assert np_steps["q"].shape == np_steps["k"].shape == (batch, seq_len, d_k)
    assert np_steps["output"].shape == (batch, seq_len, d_v)
    np.testing.assert_allclose(np_steps["weights"].sum(-1), 1.0, rtol=0, atol=1e-12)
    # ... and both equal what people would otherwise use.
    ref = F.scaled_dot_product_attention(pt_steps["q"], pt_steps["k"], pt_steps["v"])
    np.testing.assert_allclose(ref.numpy(), np_steps["output"], rtol=RTOL, atol=ATOL)
    out, weights = np_self_attention(*inputs)
    np.testing.assert_array_equal(out, np_steps["output"])
    np.testing.assert_array_equal(weights, np_steps["weights"])


@settings(max_examples=40, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    seq_len=st.integers(1, 6),
    d_model=st.integers(1, 8),
    d_k=st.integers(1, 6),
    d_v=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    spread=st.floats(0.1, 5.0),
)
def test_properties(lead, seq_len, d_model, d_k, d_v, seed, spread):
    """Any number of leading axes (none included): NumPy == PyTorch, rows of weights
    are distributions, and each sequence's result does not depend on the others."""
    x, w_q, w_k, w_v = example_inputs(1, seq_len, d_model, d_k, d_v, seed=seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, seq_len, d_model)) * spread
    np_steps, pt_steps = numpy_steps(x, w_q, w_k, w_v), torch_steps(x, w_q, w_k, w_v)
    assert_steps_agree(np_steps, pt_steps)
    weights = np_steps["weights"]
    assert weights.shape == (*lead, seq_len, seq_len)
    assert np.all(weights >= 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=0, atol=1e-12)
    flat = x.reshape(-1, seq_len, d_model)
    outs = np_steps["output"].reshape(-1, seq_len, d_v)
    for one_x, one_out in zip(flat, outs):
        alone, _ = np_self_attention(one_x, w_q, w_k, w_v)  # (T, d_model): no batch
        np.testing.assert_allclose(alone, one_out, rtol=1e-12, atol=1e-12)


def test_softmax_is_stable_and_equals_the_plain_formula():
    scores = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0],
                       [0.5, -0.25, 2.0]])
    weights = np_attention_weights(scores)
    assert np.all(np.isfinite(weights))
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=0, atol=1e-15)
    # shift invariance: the big rows equal the small row [0, 1, 2] (or reversed)
    small = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    np.testing.assert_allclose(weights[0], small, rtol=1e-14)
    np.testing.assert_allclose(weights[1], small[::-1], rtol=1e-14)
    plain = np.exp(scores[2]) / np.exp(scores[2]).sum()
    np.testing.assert_allclose(weights[2], plain, rtol=1e-14)
    torch_weights = torch.softmax(torch.tensor(scores), dim=-1).numpy()  # float64
    np.testing.assert_allclose(weights, torch_weights, rtol=1e-14)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(scores[0]) / np.exp(scores[0]).sum()
    assert np.all(np.isnan(naive))  # what the page's warning shows


def test_scores_transpose_only_the_last_two_axes():
    q = np.arange(24.0).reshape(2, 3, 4)
    k = np.arange(24.0, 48.0).reshape(2, 3, 4)
    scores = np_attention_scores(q, k)
    for b in range(2):
        np.testing.assert_array_equal(scores[b], q[b] @ k[b].T)
    # the page's warning: .T reverses every axis, in NumPy and (deprecated) in torch
    assert k.T.shape == (4, 3, 2) and k.mT.shape == (2, 4, 3)
    with pytest.warns(UserWarning, match="deprecated"):
        assert torch.tensor(k).T.shape == (4, 3, 2)
    assert torch.tensor(k).mT.shape == (2, 4, 3)


def test_scale_divides_by_root_dk():
    assert np_scale_scores(np.array([8.0]), 16)[0] == 2.0


def test_example_inputs_are_seeded_and_scaled():
    a, b = example_inputs(seed=3), example_inputs(seed=3)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(example_inputs(seed=4)[0], a[0])
    x, w_q, w_k, w_v = example_inputs(batch=1, seq_len=2, d_model=400, d_k=300, d_v=200)
    assert x.shape == (1, 2, 400) and w_v.shape == (400, 200)
    assert x.dtype == w_q.dtype == np.float64
    # N(0, 1/d_model) entries: the standard deviation is close to 1/sqrt(400) = 0.05
    for w in (w_q, w_k, w_v):
        assert abs(w.std() - 0.05) < 0.002


# ---------------------------------------------------------------------------
# The page: its shape tables and the numbers in its prose
# ---------------------------------------------------------------------------

STEP_SECTIONS = [
    "Step 1: project",
    "Step 2: scores",
    "Step 3: scale",
    "Step 4: softmax",
    "Step 5: weighted sum",
]
HEADER = re.compile(
    r"with B=(\d+), T=(\d+), d_model=(\d+), d_k=(\d+), d_v=(\d+)"
)


@pytest.fixture(scope="module")
def page():
    return read_page(PAGE)


def page_dims(page):
    """The example's sizes as the page's setup code passes them to example_inputs."""
    m = re.search(
        r"example_inputs\(\s*batch=(\d+), seq_len=(\d+), d_model=(\d+), d_k=(\d+), "
        r"d_v=(\d+), seed=(\d+)\s*\)",
        page,
    )
    assert m, "the page's setup call to example_inputs was not found"
    *dims, seed = map(int, m.groups())
    return tuple(dims), seed


def page_example(page):
    dims, seed = page_dims(page)
    inputs = example_inputs(*dims, seed=seed)
    return dims, inputs, numpy_steps(*inputs), torch_steps(*inputs)


def parse_shape(cell):
    return tuple(p.strip() for p in cell.strip("`()").split(",") if p.strip())


def test_shape_tables_match_the_code(page):
    dims, inputs, np_steps, pt_steps = page_example(page)
    sizes = dict(zip(("B", "T", "d_model", "d_k", "d_v"), dims))
    actual = {"x": inputs[0].shape, "w_q": inputs[1].shape, "w_k": inputs[2].shape,
              "w_v": inputs[3].shape, "k transposed": np_steps["k"].shape[:-2]
              + np_steps["k"].shape[:-3:-1]}
    for name in STEP_NAMES:
        actual[name] = np_steps[name].shape
        assert tuple(pt_steps[name].shape) == actual[name]
    seen = set()
    for heading in STEP_SECTIONS:
        found = tables(section(page, heading))
        assert len(found) == 1, heading
        header, *rows = found[0]
        assert header[:2] == ["tensor", "shape"]
        assert tuple(map(int, HEADER.search(header[2]).groups())) == dims
        assert rows, heading
        for name_cell, symbolic, example in rows:
            name = name_cell.replace("`", "")
            symbols = parse_shape(symbolic)
            from_symbols = tuple(sizes[s] for s in symbols)
            written = tuple(int(n) for n in parse_shape(example))
            assert written == from_symbols == actual[name], (heading, name)
            seen.add(name)
    assert seen == set(actual)  # every tensor of the five steps has its shape shown


def test_the_setup_prints_what_the_page_says(page):
    """The example's sizes in the prose are the ones the code uses."""
    dims, _ = page_dims(page)
    running = section(page, "The running example")
    stated = re.findall(r"\$(B|T|d_\\text\{model\}|d_k|d_v) = (\d+)\$", running)
    assert [int(n) for _, n in stated] == list(dims)
    assert len(set(dims)) == len(dims)  # "every size is different on purpose"


def test_weights_range_in_the_analogy(page):
    _, _, np_steps, _ = page_example(page)
    text = prose(section(page, "Where the library picture breaks"))
    m = re.search(r"smallest of the (\d+) weights is (\d+\.\d+) and the largest is (\d+\.\d+)",
                  " ".join(text.split()))
    assert m, "the sentence with the weights' range is gone"
    weights = np_steps["weights"]
    assert int(m.group(1)) == weights.size
    assert m.group(2) == f"{weights.min():.4f}"
    assert m.group(3) == f"{weights.max():.4f}"
    assert 0 < weights.min() and weights.max() < 1


def test_scale_sentence(page):
    dims, _ = page_dims(page)
    text = prose(section(page, "Step 3: scale"))
    m = re.search(r"Here \$d_k = (\d+)\$, so every score is halved", text)
    assert m and int(m.group(1)) == dims[3] and math.sqrt(dims[3]) == 2


def test_overflow_thresholds(page):
    text = " ".join(prose(section(page, "Step 4: softmax")).split())
    m = re.search(r"passes about (\d+) in float64 \(about (\d+) in float32\)", text)
    assert m, "the overflow sentence is gone"
    assert int(m.group(1)) == int(math.log(np.finfo(np.float64).max))  # 709.78
    assert int(m.group(2)) == int(math.log(np.finfo(np.float32).max))  # 88.72
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isinf(np.exp(np.float64(int(m.group(1)) + 1)))
        assert np.isfinite(np.exp(np.float64(int(m.group(1)))))
        assert np.isinf(np.exp(np.float32(int(m.group(2)) + 1)))
        assert np.isfinite(np.exp(np.float32(int(m.group(2)))))


def test_torch_transposes_every_axis_of_a_batch_with_a_warning(page):
    """The warning box: on more than two axes, k.T reverses all of them, in NumPy and
    (deprecated, with a warning) in torch 2.13."""
    text = " ".join(prose(section(page, "Step 2: scores")).split())
    assert "PyTorch 2.13 does the same, with a deprecation warning" in text
    assert torch.__version__.startswith("2.13")
    assert np.zeros((2, 3, 4)).T.shape == (4, 3, 2)
    # torch warns once per process, so ask a fresh interpreter
    code = ("import warnings, torch\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    shape = tuple(torch.zeros(2, 3, 4).T.shape)\n"
            "print(shape, any('deprecated' in str(x.message) for x in w))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "(4, 3, 2) True"


def test_float32_digits(page):
    text = " ".join(prose(section(page, "NumPy and PyTorch agree")).split())
    m = re.search(r"keeps about (\d+) significant digits", text)
    assert m and int(m.group(1)) == round(-math.log10(np.finfo(np.float32).eps))


def test_check_yourself_answer(page):
    dims, inputs, np_steps, _ = page_example(page)
    start = page.index('??? question "Check yourself')
    text = " ".join(prose(page[start:page.index('??? example "All the code')]).split())
    m = re.search(r"each of the \$T = (\d+)\$ tokens, (\d+\.\d+) each", text)
    assert m and int(m.group(1)) == dims[1]
    q = np_steps["q"].copy()
    q[0, 0] = 0.0
    weights = np_attention_weights(np_scale_scores(np_attention_scores(q, np_steps["k"]),
                                                   q.shape[-1]))
    assert m.group(2) == f"{weights[0, 0, 0]:.4f}" == f"{1 / dims[1]:.4f}"
    np.testing.assert_allclose(weights[0, 0], 1 / dims[1], rtol=1e-15)
    out = np_weighted_sum(weights, np_steps["v"])
    np.testing.assert_allclose(out[0, 0], np_steps["v"][0].mean(axis=0), rtol=1e-12)


def test_every_number_in_the_prose_is_accounted_for(page):
    """A new number in the prose needs a check above; this lists the ones there are."""
    dims, _ = page_dims(page)
    text = prose(page.split('??? example "All the code')[0])
    text = re.sub(r"^\|.*\|$", "", text, flags=re.M)  # tables: checked above
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)  # display formulas
    text = re.sub(r"`[^`]*`", "", text)  # code names such as `..._np`, `(B, T, d_k)`
    checked = {*map(float, dims), 18.0, 0.1104, 0.6979, 709.0, 88.0, 7.0, 0.3333,
               2.13}  # torch's version, in the k.T warning
    by_definition = {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}  # e^0 = 1, "sum to 1", step numbers
    allowed = checked | by_definition
    found = set(numbers(text))
    assert found <= allowed, sorted(found - allowed)


def test_the_twins_keep_float32_in_float32():
    """NumPy 2 promotes float32 / np.float64 to float64; a Python float keeps it."""
    x, w_q, w_k, w_v = (a.astype(np.float32) for a in example_inputs())
    q, k, v = np_project(x, w_q, w_k, w_v)
    scaled = np_scale_scores(np_attention_scores(q, k), 4)
    assert scaled.dtype == np.float32
    output, weights = np_self_attention(x, w_q, w_k, w_v)
    assert output.dtype == weights.dtype == np.float32


def test_the_softmax_twin_takes_an_empty_row_like_torch():
    empty = np.zeros((2, 0))
    assert np_attention_weights(empty).shape == (2, 0)
    assert np_self_attention(np.zeros((1, 0, 3)), *example_inputs(d_model=3)[1:])[0].shape \
        == (1, 0, 5)


@pytest.mark.parametrize("call, pattern", [
    (lambda: np_project(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros((4, 2)),
                        np.zeros((4, 2))), r"w_q must have shape \(d_model, d_k\) with "
     r"d_model = 3 as in x"),
    (lambda: np_attention_scores(np.zeros((2, 3)), np.zeros((2, 3), dtype=np.float32)),
     r"k must have the dtype of q, float64, got float32"),
    (lambda: np_attention_weights(np.zeros(3, dtype=int)), r"scores must have dtype "),
    (lambda: np_weighted_sum([[1.0]], np.zeros((1, 1))), r"weights must be a "
     r"numpy.ndarray"),
    (lambda: example_inputs(batch=0), r"batch must be a positive int, got 0"),
])
def test_the_numpy_twins_refuse_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
