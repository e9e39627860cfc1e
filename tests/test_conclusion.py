"""docs/conclusion.md: the summary table's shapes are the shapes the code produces, the
page links every page of the site, and its numbers are computed."""

from __future__ import annotations

import re

import pytest
import torch

from snippets.attention import (
    attention_scores,
    attention_weights,
    project,
    scale_scores,
    scaled_dot_product_attention,
    weighted_sum,
)
from snippets.multi_head import MultiHeadAttention, merge_heads, split_heads
from tests.harness import DOCS
from tests.pages import numbers, prose, read_page, section, tables

PAGE = read_page("conclusion.md")
SIZE_NAMES = {"T": "T", r"d_\text{model}": "d_model", "d_k": "d_k", "d_v": "d_v", "H": "H"}


def flat(text: str) -> str:
    return " ".join(prose(text).split())


def table():
    (found,) = tables(section(PAGE, "The formulas and shapes in one table"))
    header, *rows = found
    return header, rows


def table_sizes() -> dict[str, int]:
    header, _ = table()
    pairs = re.findall(r"\$(T|d_\\text\{model\}|d_k|d_v|H) = (\d+)\$", header[3])
    sizes = {SIZE_NAMES[name]: int(n) for name, n in pairs}
    assert set(sizes) == set(SIZE_NAMES.values()), header[3]
    return sizes


def shapes_from_code(T, d_model, d_k, d_v, H):
    """The shape of every tensor in the table, from the site's code at these sizes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, d_model, generator=g)
    w_q, w_k = torch.randn(d_model, d_k, generator=g), torch.randn(d_model, d_k, generator=g)
    w_v = torch.randn(d_model, d_v, generator=g)
    q, k, v = project(x, w_q, w_k, w_v)
    scores = attention_scores(q, k)
    scaled = scale_scores(scores, d_k)
    weights = attention_weights(scaled)
    output = weighted_sum(weights, v)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mha = MultiHeadAttention(d_model, H)
    with torch.no_grad():
        q_h, k_h, v_h = (split_heads(t, H) for t in mha.qkv_proj(x[None]).chunk(3, dim=-1))
        heads, head_weights = scaled_dot_product_attention(q_h, k_h, v_h)
        concat = merge_heads(heads)
        mh_output = mha.out_proj(concat)
        torch.testing.assert_close(mh_output, mha(x[None])[0], atol=1e-6, rtol=0)
        _, module_weights = mha(x[None], need_weights=True)
    torch.testing.assert_close(module_weights, head_weights, atol=1e-6, rtol=0)
    tensors = {
        "x": x, "q": q, "k": k, "v": v, "scores": scores, "scaled": scaled,
        "weights": weights, "output": output, "head": heads[0, 0],
        "head weights": head_weights[0], "concat": concat[0],
        "multi-head output": mh_output[0],
    }
    return {name: tuple(t.shape) for name, t in tensors.items()}


def symbolic(cell: str, sizes: dict[str, int]) -> tuple[int, ...]:
    """``$(T, H \\cdot D_h)$`` -> (5, 12) for the given sizes."""
    inner = cell.strip().strip("$").strip("()")
    values = dict(sizes, D_h=sizes["d_model"] // sizes["H"])
    out = []
    for part in inner.split(","):
        factors = [f.strip() for f in part.split(r"\cdot")]
        n = 1
        for f in factors:
            n *= values[SIZE_NAMES.get(f, f)]
        out.append(n)
    return tuple(out)


def test_code_on_the_page_uses_the_table_sizes():
    sizes = table_sizes()
    m = re.search(r"T, d_model, d_k, d_v, H = (\d+), (\d+), (\d+), (\d+), (\d+)", PAGE)
    assert m and tuple(map(int, m.groups())) == tuple(
        sizes[n] for n in ("T", "d_model", "d_k", "d_v", "H"))
    # "all different so that no two can be confused" (H * D_h = d_model by definition)
    distinct = [*sizes.values(), sizes["d_model"] // sizes["H"]]
    assert len(set(distinct)) == len(distinct)
    assert "all different so that no two can be confused" in flat(PAGE)


def test_every_row_of_the_table_is_the_shape_the_code_gives():
    sizes = table_sizes()
    actual = shapes_from_code(**sizes)
    header, rows = table()
    assert header[:3] == ["tensor", "formula", "shape"]
    seen = []
    for name_cell, _formula, shape_cell, example in rows:
        name = name_cell.strip("`")
        written = tuple(int(n) for n in example.strip("()").split(","))
        assert written == actual[name], (name, written, actual[name])
        assert symbolic(shape_cell, sizes) == actual[name], (name, shape_cell)
        seen.append(name)
    assert seen == list(actual)  # every tensor, in the order of the computation


@pytest.mark.parametrize("sizes", [
    {"T": 1, "d_model": 4, "d_k": 7, "d_v": 5, "H": 2},
    {"T": 9, "d_model": 6, "d_k": 2, "d_v": 8, "H": 6},
])
def test_the_symbolic_shapes_hold_at_other_sizes(sizes):
    """The table's shape column is a rule, not a coincidence of one example."""
    actual = shapes_from_code(**sizes)
    _, rows = table()
    for name_cell, _, shape_cell, _ in rows:
        assert symbolic(shape_cell, sizes) == actual[name_cell.strip("`")]


def linked_targets(text: str) -> list[str]:
    return [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)]


def site_pages() -> set[str]:
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md")}
    notebooks = {p.relative_to(DOCS).as_posix() for p in (DOCS / "notebooks").glob("*.py")}
    return (pages | notebooks) - {"conclusion.md"}


def test_the_page_links_every_page_of_the_site():
    assert set(linked_targets(prose(PAGE))) >= site_pages()


def test_every_page_section_lists_each_page_once():
    listed = linked_targets(section(PAGE, "Every page of the site"))
    assert sorted(listed) == sorted(site_pages())


def test_check_yourself():
    start = PAGE.index('??? question "Check yourself')
    text = flat(PAGE[start:PAGE.index('??? example "All the code')])
    m = re.search(r"d_model = (\d+) and (\d+) heads\. For (\d+) tokens", text)
    d_model, num_heads, seq_len = map(int, m.groups())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = MultiHeadAttention(d_model, num_heads)
        x = torch.randn(1, seq_len, d_model)
    with torch.no_grad():
        _, weights = layer(x, need_weights=True)
    head_dim = layer.head_dim
    assert f"$D_h = {d_model} / {num_heads} = {head_dim}$" in text
    assert f"$(T, T) = ({seq_len}, {seq_len})$" in text
    assert tuple(weights[0, 0].shape) == (seq_len, seq_len)
    total = weights[0].numel()
    assert f"$8 \\cdot 10 \\cdot 10 = {total}$ weights per sequence" in text
    assert (num_heads, seq_len) == (8, 10) and total == num_heads * seq_len**2


def test_every_number_in_the_prose_is_accounted_for():
    """A new number in the prose needs a check above; this lists the ones there are."""
    text = prose(PAGE.split('??? example "All the code')[0])
    text = re.sub(r"^\|.*\|$", "", text, flags=re.M)  # the table: checked above
    text = re.sub(r"`[^`]*`", "", text)  # code names
    text = text.replace("(2017), section 3.1", "")  # a citation
    text = text.replace("torch 2.13", "torch")  # the version, checked below
    sizes = table_sizes()
    checked = {*sizes.values(), 512, 8, 10, 64, 800}  # table header, check yourself
    by_definition = {1}  # "rows sum to 1"
    found = set(numbers(text))
    assert found <= {float(n) for n in checked | by_definition}, sorted(found)


def test_multihead_attention_calls_multi_head_attention_forward():
    """The page: torch.nn.MultiheadAttention calls F.multi_head_attention_forward
    (torch 2.13) when its fused inference path does not apply, as in training mode."""
    from unittest import mock

    import torch.nn.functional as F

    assert torch.__version__.startswith("2.13")
    text = " ".join(prose(section(PAGE, "Next steps")).split())
    assert "function `torch.nn.MultiheadAttention` calls (in torch 2.13" in text
    layer = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(1, 3, 8)
    with mock.patch.object(F, "multi_head_attention_forward",
                           wraps=F.multi_head_attention_forward) as spy:
        layer(x, x, x)
    assert spy.call_count == 1
