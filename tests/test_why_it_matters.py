"""snippets/why_it_matters.py: the measurements behind docs/why-it-matters.md, and the numbers
that page states."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from snippets.attention import project
from snippets.attention import handbuilt_attention
from snippets.why_it_matters import (
    MatmulDepth,
    attention_layer,
    dependency_graph,
    hops,
    influence,
    rnn,
    rnn_cell,
    rnn_step,
    score_matrix_size,
)
from tests.pages import prose, read_page, section, tables

PAGE = read_page("why-it-matters.md")
TEXT = " ".join(prose(PAGE).split())  # the prose, whitespace made single spaces
D = 8
SEVERAL_N = [2, 3, 5, 9, 12]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def weights():
    """The page's models: the same seeded draws, in the same order, as its code."""
    torch.manual_seed(0)
    w_x = torch.randn(D, D) / D**0.5
    w_h = torch.randn(D, D) / D**0.5
    w_q, w_k, w_v = (torch.randn(D, D) / D**0.5 for _ in range(3))
    return w_x, w_h, w_q, w_k, w_v


def graphs(x, w_x, w_h, w_q, w_k, w_v, is_causal=False):
    rnn_graph = dependency_graph(lambda h: rnn_step(h, x, w_x, w_h), rnn(x, w_x, w_h))
    att_graph = dependency_graph(
        lambda x: attention_layer(x, w_q, w_k, w_v, is_causal=is_causal)[0], x
    )
    return rnn_graph, att_graph


# ---- the two models ---------------------------------------------------------------


def test_rnn_matches_torch_rnn(weights):
    """h_t = tanh(x_t W_x + h_{t-1} W_h) is torch.nn.RNN without biases."""
    w_x, w_h, *_ = weights
    x = randn(7, D, seed=1)
    ref = torch.nn.RNN(D, D, bias=False, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(w_x.T)
        ref.weight_hh_l0.copy_(w_h.T)
        expected, _ = ref(x[None])
    torch.testing.assert_close(rnn(x, w_x, w_h), expected[0], atol=1e-6, rtol=1e-5)


def test_rnn_step_taken_t_times_is_the_loop(weights):
    w_x, w_h, *_ = weights
    x = randn(9, D, seed=2)
    states = torch.zeros(9, D)
    for s in range(1, 10):
        states = rnn_step(states, x, w_x, w_h)
        # after s steps, the first s positions are final
        assert torch.equal(states[:s], rnn(x, w_x, w_h)[:s])
    assert torch.equal(states, rnn(x, w_x, w_h))
    assert torch.equal(rnn_cell(torch.zeros(D), x[0], w_x, w_h), states[0])


def test_attention_layer_is_pytorch_attention_on_the_projections(weights):
    *_, w_q, w_k, w_v = weights
    x = randn(6, D, seed=3)
    for causal in (False, True):
        output, w = attention_layer(x, w_q, w_k, w_v, is_causal=causal)
        q, k, v = project(x, w_q, w_k, w_v)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.testing.assert_close(output, ref, atol=1e-6, rtol=1e-5)
        assert output.shape == (6, D) and w.shape == (6, 6)
        torch.testing.assert_close(w.sum(-1), torch.ones(6))


# ---- long-range dependencies --------------------------------------------------------


@pytest.mark.parametrize("n", SEVERAL_N)
def test_token_1_reaches_token_n_in_n_minus_1_rnn_steps_and_1_attention_step(n, weights):
    rnn_graph, att_graph = graphs(randn(n, D, seed=n), *weights)
    # the Jacobians say: an RNN step reads the left neighbour only, attention reads all
    assert torch.equal(rnn_graph, torch.ones(n - 1).diag(-1).bool())
    assert att_graph.all()
    assert hops(rnn_graph, 0, n - 1) == n - 1
    assert hops(att_graph, 0, n - 1) == 1
    assert [hops(rnn_graph, 0, j) for j in range(n)] == list(range(n))
    assert hops(rnn_graph, n - 1, 0) is None  # nothing flows backwards in an RNN


@pytest.mark.parametrize("n", SEVERAL_N)
def test_causal_attention_reaches_forward_in_one_step_never_backward(n, weights):
    _, causal = graphs(randn(n, D, seed=n), *weights, is_causal=True)
    assert torch.equal(causal, torch.ones(n, n, dtype=torch.bool).tril())
    assert hops(causal, 0, n - 1) == 1
    assert hops(causal, n - 1, 0) is None


def test_output_n_depends_on_input_1_after_one_attention_layer(weights):
    """The Jacobian test directly: d y_n / d x_1 is not zero after one layer, while
    one RNN step leaves position n blind to position 1."""
    w_x, w_h, w_q, w_k, w_v = weights
    x = randn(10, D, seed=4)
    assert influence(lambda x: attention_layer(x, w_q, w_k, w_v)[0], x) > 1e-3
    assert influence(lambda h: rnn_step(h, x, w_x, w_h), rnn(x, w_x, w_h)) == 0.0


def test_influence_is_the_norm_of_the_jacobian_block(weights):
    w_x, w_h, *_ = weights
    x = randn(5, D, seed=5).requires_grad_(True)
    last = rnn(x, w_x, w_h)[-1]
    rows = [torch.autograd.grad(last[i], x, retain_graph=True)[0][0] for i in range(D)]
    expected = torch.stack(rows).norm().item()
    assert influence(lambda x: rnn(x, w_x, w_h), x.detach()) == pytest.approx(expected)
    assert influence(lambda x: rnn(x, w_x, w_h), x.detach(), source=4, target=4) > 0


def test_hops_of_a_position_to_itself_is_zero():
    assert hops(torch.zeros(3, 3, dtype=torch.bool), 1, 1) == 0


def test_the_page_states_the_step_counts():
    assert "For $n$ tokens the RNN needs $n - 1$ steps and attention needs 1" in TEXT
    (rows,) = [re.findall(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s*$", block, re.M)
               for block in re.findall(r"```text\n n  RNN steps.*?```", PAGE, re.S)]
    assert [(int(n), int(r), int(a)) for n, r, a in rows] == [
        (n, n - 1, 1) for n in (2, 4, 8, 16)
    ]


def test_the_page_states_the_computed_influence(weights):
    w_x, w_h, w_q, w_k, w_v = weights
    torch.manual_seed(1)
    long_x = torch.randn(64, D)
    first, last = long_x[:2], long_x
    r2, r64 = (influence(lambda x: rnn(x, w_x, w_h), xn) for xn in (first, last))
    a2, a64 = (influence(lambda x: attention_layer(x, w_q, w_k, w_v)[0], xn)
               for xn in (first, last))
    assert (
        f"falls from {r2:.2e} to {r64:.2e} through the RNN, a factor of {r2 / r64:.1e}, "
        f"and from {a2:.2e} to {a64:.2e} through attention, a factor of {a2 / a64:.0f}"
    ) in TEXT
    assert r64 < torch.finfo(torch.float32).eps * 1e-6  # "far below what float32 resolves"
    # "a completely different first token ... does not change by a single bit"
    changed = long_x.clone()
    changed[0] = torch.randn(D)
    assert torch.equal(rnn(changed, w_x, w_h)[-1], rnn(long_x, w_x, w_h)[-1])
    moved = attention_layer(changed, w_q, w_k, w_v)[0][-1]
    assert not torch.equal(moved, attention_layer(long_x, w_q, w_k, w_v)[0][-1])


# ---- parallelism ----------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 4, 16, 64, 256])
def test_rnn_chain_is_n_attention_chain_is_3(n, weights):
    w_x, w_h, w_q, w_k, w_v = weights
    x = randn(n, D, seed=n)
    with MatmulDepth() as rnn_depth:
        states = rnn(x, w_x, w_h)
    with MatmulDepth() as attention_depth:
        output, _ = attention_layer(x, w_q, w_k, w_v)
    assert rnn_depth.longest == n and attention_depth.longest == 3
    assert states.shape == (n, D) and output.shape == (n, D)


def test_matmul_depth_counts_dependent_matmuls_only():
    a, b = randn(3, 3, seed=1), randn(3, 3, seed=2)
    with MatmulDepth() as depth:
        independent = [a @ b, torch.mm(b, a), torch.matmul(input=a, other=a)]
    assert depth.longest == 1
    with MatmulDepth() as depth:
        chained = torch.bmm((a @ b)[None], torch.stack(independent)[:1])  # waits for a@b
        torch.softmax(chained, dim=-1).matmul(b)  # non-matmuls add nothing
    assert depth.longest == 3
    with MatmulDepth() as depth:
        torch.tanh(a) + b
    assert depth.longest == 0


def test_the_page_states_the_chains():
    assert "The RNN's chain is $n$ long" in TEXT
    assert "Attention's chain is 3 long for every $n$" in TEXT
    (block,) = re.findall(r"```text\n   n  RNN chain.*?```", PAGE, re.S)
    rows = re.findall(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s", block, re.M)
    assert [tuple(map(int, r)) for r in rows] == [(n, n, 3) for n in (4, 16, 64, 256)]


# ---- dynamic weights ------------------------------------------------------------------

SENTENCES = ("The cat sat on the mat.", "The cat sat on the dog.")


def test_same_matrices_different_sentences_give_different_weights():
    (t1, w1), (t2, w2) = (handbuilt_attention(s) for s in SENTENCES)
    assert len(t1) == len(t2) == 6
    assert not torch.equal(w1, w2)
    for w in (w1, w2):
        torch.testing.assert_close(w.sum(-1), torch.ones(6))
    # the same pair, same positions, different weight: context decides
    assert w1[2, 1] > w2[2, 1]


def test_the_side_by_side_table_and_the_prose_are_computed():
    (t1, w1), (t2, w2) = (handbuilt_attention(s) for s in SENTENCES)
    body = section(PAGE, "Dynamic weights: same matrices, different sentences")
    (table,) = [t for t in tables(body) if t[0][:2] == ["key", "sentence 1"]]
    expected = [[str(j + 1), t1[j], f"{w1[2, j]:.4f}", t2[j], f"{w2[2, j]:.4f}"]
                for j in range(6)]
    assert table[1:] == expected
    assert f"falls from {w1[2, 1]:.4f} to {w2[2, 1]:.4f}" in TEXT
    on = t2.index("on")
    assert w2[on, 1] == w2[on, 5]
    assert f"between **cat** and **dog** ({w2[on, 1]:.4f} each)" in TEXT


# ---- the price ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_score_matrix_size_is_that_of_a_real_score_matrix(n, dtype):
    q = randn(n, 4).to(dtype)
    scores = q @ q.T  # (n, 4) @ (4, n) -> (n, n)
    assert score_matrix_size(n, dtype) == (scores.numel(), scores.numel() * scores.element_size())


def test_the_page_states_the_computed_cost():
    mib = 2**20
    big = score_matrix_size(131_072)[1]
    ratio = score_matrix_size(2 * 4_096)[1] / score_matrix_size(4_096)[1]
    assert ratio == 4
    assert f"Each doubling of $n$ multiplies the size by {ratio:.0f}" in TEXT
    assert f"would take {big // mib:,} MiB, that is {big // 2**30} GiB" in TEXT
    answer = " ".join(PAGE[PAGE.index('??? question "Check yourself'):].split())
    before, after = score_matrix_size(4_096)[1], score_matrix_size(8_192)[1]
    assert after / before == 4 and "Four times as much" in answer
    assert f"{before // mib} MiB before and {after // mib} MiB after" in answer
    assert f"from {4_096 - 1:,} steps to {8_192 - 1:,}" in answer  # n - 1, tested above


# ---- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: rnn(torch.zeros(3, 5), torch.zeros(8, 8), torch.zeros(8, 8)),
         r"w_x must have shape \(d_in, d_h\) with d_in = 5 as in x of shape \(3, 5\), "
         r"got shape \(8, 8\)"),
        (lambda: rnn(torch.zeros(8), torch.zeros(8, 8), torch.zeros(8, 8)),
         r"x must have shape \(T, d_in\), got shape \(8,\)"),
        (lambda: rnn([[0.0] * 8], torch.zeros(8, 8), torch.zeros(8, 8)),
         r"x must be a torch.Tensor of shape \(T, d_in\), got list"),
        (lambda: rnn(torch.zeros(3, 8), torch.zeros(8, 4), torch.zeros(8, 8)),
         r"w_h must have shape \(d_h, d_h\) with d_h = 4 as in w_x of shape \(8, 4\), "
         r"got shape \(8, 8\)"),
        (lambda: rnn(torch.zeros(3, 8), torch.zeros(8, 8), torch.zeros(8, 8).double()),
         r"w_h must have the dtype of x, float32, got float64"),
        (lambda: hops(torch.ones(3, 3, dtype=torch.bool), 0, 3),
         r"target must be an int from 0 to 2, got 3"),
        (lambda: hops(torch.ones(3, 3, dtype=torch.bool), -1, 2),
         r"source must be an int from 0 to 2, got -1"),
        (lambda: hops(torch.ones(3, 3), 0, 2), r"graph must have dtype bool, got float32"),
        (lambda: hops(torch.ones(3, 2, dtype=torch.bool), 0, 1),
         r"graph must have shape \(T, T\) with T = 3 as in graph"),
        (lambda: score_matrix_size(0), r"n must be a positive int, got 0"),
        (lambda: score_matrix_size(4, "float32"), r"dtype must be a torch.dtype, got str"),
        (lambda: score_matrix_size(2.5), r"got 2.5"),
        (lambda: score_matrix_size(True), r"got True"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_the_page_links_where_the_site_goes_deeper():
    deeper = section(PAGE, "Where the site goes deeper")
    for page in ("efficient.md", "masks.md", "scaling.md"):
        assert f"]({page})" in deeper  # that they resolve, the strict build checks


def test_rnn_of_no_tokens_has_no_states():
    assert rnn(torch.zeros(0, 3), torch.zeros(3, 2), torch.zeros(2, 2)).shape == (0, 2)


@pytest.mark.parametrize("call, pattern", [
    (lambda: dependency_graph(lambda x: x.sum(-1), torch.zeros(3, 2)),
     r"step's output must have shape \(T, d_out\), got shape \(3,\)"),
    (lambda: dependency_graph(3, torch.zeros(3, 2)), r"step must be a function, got int"),
    (lambda: influence(lambda x: x, torch.zeros(3, 2), source=3),
     r"source must be an int from -3 to 2, got 3"),
    (lambda: influence(lambda x: x, torch.zeros(3, 2, dtype=torch.float16)),
     r"x must have dtype float32 or float64, got float16"),
])
def test_reach_refuses_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()
