"""snippets/position.py, and the numbers docs/position.md states about it."""

from __future__ import annotations

import inspect
import itertools
import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from figures.position import rope_relative_svg, sinusoidal_svg
from snippets.position import (
    apply_rope,
    permutation_gap,
    position_angles,
    rope_score,
    rope_self_attention,
    self_attention,
    sinusoidal_positions,
)
from tests.pages import numbers, prose, read_page, section

PAGE = "position.md"
EQUAL = 1e-5  # a gap below this is rounding: the layer is equivariant
BROKEN = 1e-2  # a gap above this is not rounding


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def page_setup():
    """The tokens, weights and permutation of the page's first example."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        T, d_model, head_dim = 5, 4, 4
        x = torch.randn(1, T, d_model)
        w_q = torch.randn(d_model, head_dim) / d_model**0.5
        w_k = torch.randn(d_model, head_dim) / d_model**0.5
        w_v = torch.randn(d_model, head_dim) / d_model**0.5
    return x, w_q, w_k, w_v, torch.tensor([3, 0, 4, 1, 2])


ALL_PERMS = [list(p) for p in itertools.permutations(range(5)) if list(p) != [0, 1, 2, 3, 4]]


# --- permutation equivariance --------------------------------------------------


def test_self_attention_is_projections_then_torch_attention():
    x, w_q, w_k, w_v = randn(2, 6, 5), randn(5, 3, seed=1), randn(5, 3, seed=2), randn(5, 4, seed=3)
    for causal in (False, True):
        expected = F.scaled_dot_product_attention(x @ w_q, x @ w_k, x @ w_v, is_causal=causal)
        torch.testing.assert_close(
            self_attention(x, w_q, w_k, w_v, is_causal=causal), expected, atol=1e-6, rtol=0
        )


@settings(max_examples=60, deadline=None)
@given(
    perm=st.integers(1, 8).flatmap(lambda t: st.permutations(list(range(t)))),
    batch=st.lists(st.integers(1, 3), max_size=2),
    d_model=st.integers(1, 6),
    head_dim=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_self_attention_is_permutation_equivariant(perm, batch, d_model, head_dim, seed):
    """Shuffling the tokens shuffles the output the same way: permute, run,
    un-permute gives the original output, for any permutation."""
    x = randn(*batch, len(perm), d_model, seed=seed)
    w_q, w_k = randn(d_model, head_dim, seed=seed + 1), randn(d_model, head_dim, seed=seed + 2)
    w_v = randn(d_model, 3, seed=seed + 3)

    def layer(x):
        return self_attention(x, w_q, w_k, w_v)

    assert permutation_gap(layer, x, perm) < EQUAL
    # the same, written out: the output of the shuffled input is the shuffled output
    torch.testing.assert_close(layer(x[..., perm, :]), layer(x)[..., perm, :],
                               atol=EQUAL, rtol=0)


def test_permutation_gap_sees_a_layer_that_uses_position():
    x = randn(1, 4, 3)
    ramp = torch.arange(4.0)[:, None]  # (T, 1): depends on the row, not the token

    def layer(x):
        return x + ramp

    assert permutation_gap(layer, x, [0, 1, 2, 3]) == 0
    assert permutation_gap(layer, x, [1, 0, 2, 3]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "perm, pattern",
    [
        ([0, 1, 2], r"perm must be a permutation of 0..3 \(x has shape \(1, 4, 3\), so T = 4\), got \[0, 1, 2\]"),
        ([0, 1, 1, 3], r"got \[0, 1, 1, 3\]"),
        ([1, 2, 3, 4], r"got \[1, 2, 3, 4\]"),
        ([[0, 1], [2, 3]], r"got \[\[0, 1\], \[2, 3\]\]"),
    ],
)
def test_permutation_gap_rejects_what_is_not_a_permutation(perm, pattern):
    with pytest.raises(ValueError, match=pattern):
        permutation_gap(lambda x: x, randn(1, 4, 3), perm)


def test_dog_bites_man_gives_the_same_word_vectors():
    x, w_q, w_k, w_v, _ = page_setup()
    words = {"dog": randn(4, seed=1), "bites": randn(4, seed=2), "man": randn(4, seed=3)}
    first = torch.stack([words[w] for w in ("dog", "bites", "man")])[None]
    second = torch.stack([words[w] for w in ("man", "bites", "dog")])[None]
    out1, out2 = self_attention(first, w_q, w_k, w_v)[0], self_attention(second, w_q, w_k, w_v)[0]
    torch.testing.assert_close(out1, out2[[2, 1, 0]], atol=1e-6, rtol=0)


def test_a_causal_mask_breaks_equivariance_for_every_permutation():
    x, w_q, w_k, w_v, _ = page_setup()

    def causal(x):
        return self_attention(x, w_q, w_k, w_v, is_causal=True)

    assert min(permutation_gap(causal, x, p) for p in ALL_PERMS) > BROKEN


# --- sinusoidal positions ------------------------------------------------------


@pytest.mark.parametrize("T, d_model", [(1, 2), (7, 6), (50, 64)])
def test_sinusoidal_positions_follow_the_paper(T, d_model):
    """Against the formula of Vaswani et al. written out with math.sin/cos."""
    table = sinusoidal_positions(T, d_model)
    assert table.shape == (T, d_model) and table.dtype == torch.float32
    for pos in range(T):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # each row has length sqrt(d_model / 2): one (sin, cos) pair of length 1 per i
    torch.testing.assert_close(table.norm(dim=-1), torch.full((T,), math.sqrt(d_model / 2)))
    assert table.abs().max() <= 1


def test_sinusoidal_rows_are_all_different():
    table = sinusoidal_positions(200, 16)
    distances = torch.cdist(table, table) + torch.eye(200)
    assert distances.min() > 0.1


def test_sinusoidal_positions_break_equivariance_for_every_permutation():
    x, w_q, w_k, w_v, _ = page_setup()

    def layer(x):
        return self_attention(x + sinusoidal_positions(x.shape[-2], 4), w_q, w_k, w_v)

    assert min(permutation_gap(layer, x, p) for p in ALL_PERMS) > BROKEN


@pytest.mark.parametrize(
    "args, pattern",
    [
        ((-1, 4), r"T must be a non-negative int, got -1"),
        ((2.0, 4), r"T must be a non-negative int, got 2.0"),
        ((True, 4), r"T must be a non-negative int, got True"),
        ((3, 5), r"d_model must be a positive even int, got 5"),
        ((3, 0), r"d_model must be a positive even int, got 0"),
        ((3, True), r"d_model must be a positive even int, got True"),
    ],
)
def test_sinusoidal_positions_reject_bad_sizes(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        sinusoidal_positions(*args)


def test_position_angles_are_pos_times_theta():
    angles = position_angles(torch.tensor([0, 1, 3]), 8, base=100.0)
    theta = torch.tensor([100.0 ** (-2 * i / 8) for i in range(4)], dtype=torch.float64)
    torch.testing.assert_close(angles, torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)[:, None] * theta)


# --- RoPE ----------------------------------------------------------------------


def rope_complex(x, positions, base=10000.0):
    """Reference: pairs (2i, 2i+1) as complex numbers, times e^{i pos theta_i}
    (how Meta's original Llama code writes it)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.as_tensor(positions, dtype=torch.float64)[..., None] * theta
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).flatten(-2).to(x.dtype)


def rope_rotate_half(x, positions, base=10000.0):
    """The other convention (GPT-NeoX, Hugging Face Llama): dimension i is paired
    with i + d/2."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.as_tensor(positions, dtype=torch.float64)[..., None] * theta
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    first, second = x[..., : d // 2], x[..., d // 2:]
    rotate_half = torch.cat((-second, first), dim=-1)
    return (x.double() * cos + rotate_half.double() * sin).to(x.dtype)


@pytest.mark.parametrize("shape", [(5, 8), (2, 3, 7, 16), (1, 2)])
def test_rope_matches_the_complex_number_form(shape):
    x = randn(*shape)
    positions = torch.arange(shape[-2]) * 7
    torch.testing.assert_close(apply_rope(x, positions), rope_complex(x, positions))
    torch.testing.assert_close(apply_rope(x), rope_complex(x, torch.arange(shape[-2])))


def test_rope_conventions_are_the_same_rotation_after_reordering_dimensions():
    x, d = randn(6, 8), 8
    to_half = [*range(0, d, 2), *range(1, d, 2)]  # (2i, 2i+1) -> (i, i + d/2)
    positions = torch.arange(6)
    torch.testing.assert_close(
        rope_rotate_half(x[:, to_half], positions), apply_rope(x, positions)[:, to_half]
    )
    # used without the reordering, the other convention gives other scores
    q, k = randn(1, d, seed=1), randn(1, d, seed=2)
    ours = apply_rope(q, [5]) @ apply_rope(k, [2]).T
    theirs = rope_rotate_half(q, [5]) @ rope_rotate_half(k, [2]).T
    assert abs(ours.item() - theirs.item()) > BROKEN


def test_rope_keeps_lengths_dtype_and_position_zero():
    x = randn(2, 9, 8)
    torch.testing.assert_close(apply_rope(x).norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(apply_rope(x, torch.zeros(9)), x)
    assert torch.equal(apply_rope(x)[:, 0], x[:, 0])
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        assert apply_rope(x.to(dtype)).dtype == dtype


def test_rope_positions_broadcast_per_batch_element():
    x = randn(2, 3, 4)
    positions = torch.tensor([[0, 1, 2], [10, 11, 12]])  # (B, T)
    out = apply_rope(x, positions)
    torch.testing.assert_close(out[1], apply_rope(x[1], [10, 11, 12]))


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(0, 2000), n=st.integers(0, 2000), shift=st.integers(0, 5000),
    half_dim=st.integers(1, 32), seed=st.integers(0, 2**16),
)
def test_rope_score_depends_only_on_the_relative_position(m, n, shift, half_dim, seed):
    q, k = randn(2 * half_dim, seed=seed), randn(2 * half_dim, seed=seed + 1)
    scale = q.norm() * k.norm()
    assert abs(rope_score(q, k, m + shift, n + shift) - rope_score(q, k, m, n)) <= 1e-5 * scale
    # and the score is the unrotated dot product of q with k rotated by n - m
    rotated_k = apply_rope(k[None], [n - m])[0]
    assert abs(rope_score(q, k, m, n) - q @ rotated_k) <= 1e-5 * scale


def test_rope_score_changes_with_the_relative_position():
    q, k = randn(8, seed=1), randn(8, seed=2)
    scores = [rope_score(q, k, 2 + offset, 2) for offset in range(-5, 6)]
    assert min(abs(a - b) for a, b in itertools.combinations(scores, 2)) > 1e-3


@pytest.mark.parametrize("offsets", [(0, 1, 10, 100, 1000), (3, 30, 300, 3000)])
def test_rope_shifts_leave_the_score_unchanged(offsets):
    q, k = randn(64, seed=3), randn(64, seed=4)
    scores = [rope_score(q, k, 7 + s, 4 + s) for s in offsets]
    assert max(scores) - min(scores) < 1e-5 * (q.norm() * k.norm()).item()


def test_rope_breaks_equivariance_for_every_permutation():
    x, w_q, w_k, w_v, _ = page_setup()

    def layer(x):
        return rope_self_attention(x, w_q, w_k, w_v)

    assert min(permutation_gap(layer, x, p) for p in ALL_PERMS) > BROKEN


def test_rope_self_attention_rotates_queries_and_keys_only():
    x, w_q, w_k, w_v = randn(2, 5, 6), randn(6, 4, seed=1), randn(6, 4, seed=2), randn(6, 3, seed=3)
    q, k = apply_rope(x @ w_q), apply_rope(x @ w_k)
    expected = F.scaled_dot_product_attention(q, k, x @ w_v)
    torch.testing.assert_close(rope_self_attention(x, w_q, w_k, w_v), expected,
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "x, positions, pattern",
    [
        (randn(3, 5), None, r"head_dim \(x.shape\[-1\]\) must be a positive even int, got 5"),
        (randn(4), None, r"x must have shape \(\.\.\., T, head_dim\), got shape \(4,\)"),
        (torch.ones(2, 4, dtype=torch.long), None, r"x must have dtype float16, .*got int64"),
        ([[1.0, 2.0]], None, r"x must be a torch.Tensor of shape .*got list"),
        (randn(3, 4), ["a", "b", "c"], r"positions must be real numbers .*got \['a', 'b', 'c'\]"),
        (randn(3, 4), [True, False, True], r"positions must be real numbers"),
        (randn(3, 4), [0, 1], r"positions must broadcast to x.shape\[:-1\] = \(3,\), got shape \(2,\)"),
        (randn(3, 4), torch.zeros(2, 3), r"positions must broadcast.*got shape \(2, 3\)"),
    ],
)
def test_apply_rope_rejects_bad_input(x, positions, pattern):
    with pytest.raises(ValueError, match=pattern):
        apply_rope(x, positions)


def defaults(func):
    return {k: p.default for k, p in inspect.signature(func).parameters.items()}


# --- the numbers on the page ---------------------------------------------------


@pytest.fixture(scope="module")
def page():
    return read_page(PAGE)


def test_relative_score_on_the_page(page):
    text = prose(section(page, "Rotary position embedding (RoPE)"))
    with torch.random.fork_rng():
        torch.manual_seed(1)
        q, k = torch.randn(8), torch.randn(8)
    shifts = (0, 1, 10, 100, 1000)
    assert "for shift in (0, 1, 10, 100, 1000):" in page
    assert "m, n = 5 + shift, 2 + shift" in page
    said = re.search(r"Put a query and a key (\d+) positions apart", text)
    assert int(said.group(1)) == 5 - 2
    scores = {round(rope_score(q, k, 5 + s, 2 + s), 4) for s in shifts}
    assert len(scores) == 1
    said = re.search(r"the same score, ([\d.]+), from position (\d+) to position (\d+)", text)
    assert float(said.group(1)) == scores.pop()
    assert [int(said.group(2)), int(said.group(3))] == [2, 2 + max(shifts)]


def test_rope_figure_numbers(page):
    d = defaults(rope_relative_svg)
    text = prose(section(page, "Rotary position embedding (RoPE)"))
    caption = re.search(r"The picture shows it for a (\d+)-wide vector", text)
    assert int(caption.group(1)) == d["head_dim"]
    alt = re.search(r"!\[(Line plot of the RoPE score.*?)\]", text).group(1)
    assert numbers(alt) == [d["head_dim"], -d["span"], d["span"], *d["key_positions"], 0]


def test_sinusoidal_numbers(page):
    text = prose(section(page, "Sinusoidal positions"))
    base = defaults(sinusoidal_positions)["base"]
    assert "\\text{base} = 10000" in text and base == 10000
    factor = re.search(r"about (\d+) for\s+\$d_\\text\{model\} = (\d+)\$", text)
    d_model = int(factor.group(2))
    assert int(factor.group(1)) == round(base ** ((d_model - 2) / d_model))
    theta = position_angles(torch.tensor([1.0]), d_model)[0]
    assert (theta[0] / theta[-1]).item() == pytest.approx(base ** ((d_model - 2) / d_model))
    d = defaults(sinusoidal_svg)
    said = re.search(r"For (\d+)\s+positions and (\d+) dimensions", text)
    assert [int(g) for g in said.groups()] == [d["T"], d["d_model"]]
    alt = re.search(r"!\[(Heatmap.*?)\]", text).group(1)
    table = sinusoidal_positions(d["T"], d["d_model"])
    assert numbers(alt) == [d["T"], d["d_model"], table.min().round().item(),
                            table.max().round().item()]
    # "the left columns change quickly ..., the right columns hardly change at all"
    steps = (table[1:] - table[:-1]).abs().mean(dim=0)
    assert steps[:4].min() > 0.3 and steps[-4:].max() < 0.01
    warning = re.search(r"entries between −1 and 1 and a fixed length", text)
    assert warning and table.abs().max() <= 1
    assert "$\\sqrt{d_\\text{model}/2}$" in text  # every row has this length
    lengths = torch.linalg.vector_norm(table, dim=-1)
    torch.testing.assert_close(lengths, torch.full_like(lengths, (d["d_model"] / 2) ** 0.5))


def test_learned_positions_section(page):
    """The example's table has max_positions rows and refuses one more; the section's
    other numbers are citations (sections, years, GPT-2's and BERT's table sizes)."""
    text = prose(section(page, "Learned position embeddings"))
    assert "max_positions = 8" in page
    table = torch.nn.Embedding(8, 4)
    table(torch.arange(8))
    with pytest.raises(IndexError, match="index out of range"):
        table(torch.arange(9))
    gpt_2 = 2  # the "2" of "GPT-2"
    cited = [2018, 4.1, gpt_2, 2019, 2.3, 2019, 3, 2, 2017, 3.5, 1024, gpt_2, 512]
    assert numbers(text) == cited


def test_check_yourself_numbers(page):
    start = page.index('??? question "Check yourself')
    question = prose(page[start:page.index('??? example "All the code')])
    pairs = [(7, 2), (105, 100), (2, 7)]
    assert numbers(question.split("\n", 1)[0]) == [v for pair in pairs for v in pair]
    assert "$m - n = 5$" in question and "$m - n = -5$" in question
    assert {m - n for m, n in pairs[:2]} == {5} and pairs[2][0] - pairs[2][1] == -5
    with torch.random.fork_rng():
        torch.manual_seed(1)
        q, k = torch.randn(8), torch.randn(8)
    scores = [rope_score(q, k, m, n) for m, n in pairs]
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    assert abs(scores[2] - scores[0]) > BROKEN
    # "except for special pairs (for instance q = k)"
    assert rope_score(q, q, 7, 2) == pytest.approx(rope_score(q, q, 2, 7), abs=1e-5)


def test_every_number_in_the_prose_is_one_the_tests_check(page):
    """A number added to the prose without a test fails here."""
    checked = {
        # formula constants, citation years and section numbers
        0, 1, 2, -1, -2, 2017, 2018, 2019, 2020, 2021, 2022, 2023,
        2.1, 2.2, 2.3, 3.4, 3.5, 4.1,
        # cited table sizes of GPT-2 and BERT (test_learned_positions_section)
        1024, 512,
        # checked above
        3, 5, -5, 7, 100, 105, 0.6012, 1002, 7499, 64, 10000, -40, 40, 1000,
    }
    unknown = sorted(set(numbers(prose(page))) - checked)
    assert not unknown, f"numbers on the page that no test checks: {unknown}"


@pytest.mark.parametrize("call, pattern", [
    (lambda: position_angles(torch.arange(3), 5), r"dim must be a positive even int, "
     r"got 5"),
    (lambda: position_angles(torch.arange(3), 4, base=0), r"base must be a number in "
     r"\(0, inf\), got 0"),
    (lambda: position_angles("abc", 4), r"positions must be real numbers"),
    (lambda: rope_score(torch.ones(3), torch.ones(3), 1, 0), r"head_dim = q.shape\[0\] "
     r"must be a positive even int, got 3"),
    (lambda: rope_score(torch.ones(4), torch.ones(4), 1.5, float("inf")),
     r"k_pos must be a number in \(-inf, inf\), got inf"),
    (lambda: permutation_gap(lambda t: t, torch.zeros(1, 3, 2), [0, 1, 1]),
     r"perm must be a permutation of 0..2"),
    (lambda: permutation_gap(lambda t: t[..., :1, :], torch.zeros(1, 3, 2), [0, 1, 2]),
     r"layer's output must have shape \(\.\.\., T, d_v\) with T = 3"),
])
def test_positions_refuse_bad_input(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_permutation_gap_of_no_tokens_is_zero():
    assert permutation_gap(lambda t: 2 * t, torch.zeros(2, 0, 4), []) == 0.0
