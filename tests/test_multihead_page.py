"""docs/multi-head.md: every number its prose states is the number the code computes,
and the figure it shows (snippets/multihead.py, GENERATED) is drawn from that code."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from snippets.attention import attention_scores, attention_weights, scale_scores
from snippets.multihead import (
    GENERATED,
    MultiHeadAttention,
    _luminance,
    heads_heatmap_svg,
    seeded_head_weights,
    split_heads,
)
from tests.pages import numbers, prose, read_page, section

PAGE = read_page("multi-head.md")
FLAT = " ".join(prose(PAGE).split())


def flat(text: str) -> str:
    return " ".join(prose(text).split())


def page_example():
    """The page's module example, rebuilt the way its code builds it."""
    m = re.search(r"B, T, D, H = (\d+), (\d+), (\d+), (\d+)\s+# the sizes", PAGE)
    assert m, "the module example's sizes are gone from the page"
    batch, seq_len, embed_dim, num_heads = map(int, m.groups())
    assert "torch.manual_seed(0)\nmha = MultiHeadAttention(D, H)" in PAGE
    assert "x = torch.randn(B, T, D)                 # (2, 5, 8)" in PAGE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MultiHeadAttention(embed_dim, num_heads)
        x = torch.randn(batch, seq_len, embed_dim)
    with torch.no_grad():
        _, weights = model(x, need_weights=True)
    return (batch, seq_len, embed_dim, num_heads), model, x, weights


@pytest.fixture(scope="module")
def example():
    return page_example()


# ---- the from-scratch trace ----------------------------------------------------------


def test_trace_sizes_in_the_prose_are_the_code_sizes(example):
    (batch, seq_len, embed_dim, num_heads), *_ = example
    m = re.search(r"B, T, D, H = (\d+), (\d+), (\d+), (\d+)\s+# batch, tokens", PAGE)
    assert tuple(map(int, m.groups())) == (batch, seq_len, embed_dim, num_heads)
    head_dim = embed_dim // num_heads
    text = flat(section(PAGE, "From scratch, one shape at a time"))
    assert (f"a batch of **{batch}** sequences of **{seq_len}** tokens, model width "
            f"**{embed_dim}**, **{num_heads}** heads of width **{head_dim}**") in text
    # "Head 1 ... from columns 4 to 7"; the code comment says the same
    assert f"from columns {head_dim} to {2 * head_dim - 1} of the three" in text
    assert f"# head 1's columns: {', '.join(map(str, range(head_dim, 2 * head_dim)))}" in PAGE


def test_head_from_its_own_columns_is_the_batched_head():
    """The page's claim, on other sizes: head h of split_heads(x @ W_q) is x @ W_q^(h)."""
    g = torch.Generator().manual_seed(0)
    x, w_q = torch.randn(3, 4, 12, generator=g), torch.randn(12, 12, generator=g)
    heads = split_heads(x @ w_q, 3)  # (B, H, T, Dh)
    for h in range(3):
        cols = slice(4 * h, 4 * (h + 1))
        torch.testing.assert_close(heads[:, h], x @ w_q[:, cols])


# ---- what H heads cost ------------------------------------------------------------------


def flops(embed_dim, num_heads, x):
    layer = MultiHeadAttention(embed_dim, num_heads)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _, weights = layer(x, need_weights=True)
    return counter.get_total_flops(), weights[0].numel()


def test_cost_sentence(example):
    (batch, seq_len, embed_dim, _), _, x, _ = example
    counts = {h: flops(embed_dim, h, x) for h in (1, 2, 4, 8)}
    (total,) = {f for f, _ in counts.values()}  # the same for every H
    # 2 FLOPs per multiply-add: projections 4 D^2 per token, scores + sum 2 T D per token
    assert total == 2 * batch * seq_len * (4 * embed_dim**2 + 2 * seq_len * embed_dim)
    sizes = [n for _, n in counts.values()]
    assert sizes == [h * seq_len**2 for h in (1, 2, 4, 8)]
    text = flat(section(PAGE, "What H heads cost"))
    assert f"The count is {total} FLOPs (2 per multiply-add) for every number of heads" in text
    assert "$H \\cdot T^2$ = " + ", ".join(map(str, sizes)) + "." in text
    m = re.search(r"at \$T = (\d+)\$ tokens, one layer's (\d+) heads hold "
                  r"\$(\d+) \\cdot (\d+)\^2\$, about (\d+) million weights", text)
    t, h, h2, t2, millions = map(int, m.groups())
    assert (h, t) == (h2, t2) and round(h * t**2 / 1e6) == millions


# ---- each head scales by its own width ------------------------------------------------


def test_scaling_numbers():
    text = flat(section(PAGE, "Each head scales by its own width"))
    m = re.search(r"\$D = (\d+)\$, \$H = (\d+)\$, \$D_h = (\d+)\$, and (\d+) tokens", text)
    embed_dim, num_heads, head_dim, seq_len = map(int, m.groups())
    assert embed_dim // num_heads == head_dim
    assert f"q = torch.randn({num_heads}, {seq_len}, {head_dim})" in PAGE
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        q = torch.randn(num_heads, seq_len, head_dim)
        k = torch.randn(num_heads, seq_len, head_dim)
    scores = attention_scores(q, k)
    stats = {}
    for width in (head_dim, embed_dim):
        scaled = scale_scores(scores, width)
        top = attention_weights(scaled).max(dim=-1).values.mean()
        stats[width] = (f"{scaled.std():.4f}", f"{top:.4f}")
    (std_h, top_h), (std_d, top_d) = stats[head_dim], stats[embed_dim]
    assert f"a standard deviation near 1 ({std_h})" in text
    assert f"a row's largest weight is {top_h} on average" in text
    assert f"the spread drops to {std_d}" in text
    assert f"$1/\\sqrt{{{num_heads}}} \\approx {1 / math.sqrt(num_heads):.4f}$" in text
    assert f"the largest weight to {top_d}, much nearer the uniform $1/T = {1 / seq_len}$" in text
    # the claims behind the sentence: sqrt(Dh) keeps the spread near 1, sqrt(D) shrinks
    # it by about sqrt(H) and flattens the rows
    assert abs(float(std_h) - 1) < 0.05
    assert abs(float(std_d) / float(std_h) - 1 / math.sqrt(num_heads)) < 1e-3
    assert float(top_d) < float(top_h)


def test_module_scales_each_head_by_root_head_dim():
    """What the section says of MultiHeadAttention, checked on its weights."""
    torch.manual_seed(3)
    model = MultiHeadAttention(12, 3)
    x = torch.randn(1, 4, 12)
    _, weights = model(x, need_weights=True)
    q, k, _ = model.qkv_proj(x).chunk(3, dim=-1)
    q, k = split_heads(q, 3), split_heads(k, 3)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    torch.testing.assert_close(weights, expected)


# ---- different heads, different weights ------------------------------------------------


def test_seeded_head_weights_are_the_pages_example(example):
    _, _, _, weights = example
    state = torch.random.get_rng_state()
    torch.testing.assert_close(seeded_head_weights(), weights[0], atol=0, rtol=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # caller's RNG untouched


def test_heads_prose(example):
    (_, seq_len, _, num_heads), _, _, weights = example
    w = weights[0]  # (H, T, T), the first sequence
    best = w.argmax(-1)  # (H, T)
    assert num_heads == 2 and bool((best[0] != best[1]).all())  # "a different key"
    text = flat(section(PAGE, "Different heads, different weights"))
    assert (f"for each of the {seq_len} queries, head 0 and head 1 put their largest "
            "weight on a different key") in text
    assert f"lies between {w.min():.4f} and {w.max():.4f}, around $1/T = {1 / seq_len}$" in text
    assert "tokens 0-4" in PAGE and seq_len == 5


ALT = re.compile(r"!\[([^\]]+)\]\(figures/multihead-heads\.svg\)")


def test_figure_alt_text_says_what_it_shows(example):
    (_, seq_len, embed_dim, num_heads), _, _, weights = example
    (alt,) = ALT.findall(PAGE)
    w = weights[0]
    best = w.argmax(-1).tolist()
    assert f"one per head, of the {seq_len} by {seq_len} attention weights" in alt
    assert f"MultiHeadAttention({embed_dim}, {num_heads})" in alt
    assert f"the weights lie between {w.min():.2f} and {w.max():.2f}" in alt
    assert f"close to the uniform {1 / seq_len:.2f}" in alt
    assert (f"Head 0 outlines keys {', '.join(map(str, best[0]))} in rows 0 to "
            f"{seq_len - 1} and head 1 outlines keys {', '.join(map(str, best[1]))}") in alt
    assert "a different key in every row" in alt and all(
        a != b for a, b in zip(*best))


def test_figure_is_generated_light_and_stable():
    assert GENERATED == {"figures/multihead-heads.svg": heads_heatmap_svg}
    svg = heads_heatmap_svg()
    assert svg.startswith("<?xml") and "<svg" in svg and svg.rstrip().endswith("</svg>")
    first_fill = re.search(r"fill:\s*(#[0-9a-f]{6})", svg).group(1)
    assert first_fill == "#ffffff"  # the first thing drawn is the white background
    assert "<text" not in svg  # text drawn as paths: no font is loaded
    assert heads_heatmap_svg() == svg  # no date, stable ids: the same bytes every build


def test_the_build_hook_finds_the_figure():
    from hooks.generated import generators

    assert generators()["figures/multihead-heads.svg"] is heads_heatmap_svg


def test_luminance_picks_the_readable_text_colour():
    assert _luminance((1.0, 1.0, 1.0, 1.0)) == pytest.approx(1.0)
    assert _luminance((0.0, 0.0, 0.0, 1.0)) == 0.0
    assert _luminance((0.03, 0.19, 0.42, 1.0)) < 0.18  # dark blue: white text


# ---- matching torch.nn.MultiheadAttention ----------------------------------------------


def test_check_yourself_rows():
    start = PAGE.index('??? question "Check yourself')
    text = flat(PAGE[start:PAGE.index('??? example "All the code')])
    m = re.search(r"with D = (\d+) and H = (\d+), which rows", text)
    embed_dim, num_heads = map(int, m.groups())
    head_dim = embed_dim // num_heads
    key_rows = (embed_dim, 2 * embed_dim - 1)
    head1 = (embed_dim + head_dim, embed_dim + 2 * head_dim - 1)
    assert f"rows $D$ to $2D - 1$, {key_rows[0]} to {key_rows[1]}" in text
    assert f"$D_h = {head_dim}$ rows" in text
    assert f"that is **{head1[0]} to {head1[1]}** (with entries {head1[0]} to {head1[1]}" in text
    # and those rows are head 1's keys inside MultiHeadAttention.from_torch
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_bias.normal_()
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(2, 5, embed_dim)
    with torch.no_grad():
        rows = slice(head1[0], head1[1] + 1)
        by_rows = x @ ref.in_proj_weight[rows].T + ref.in_proj_bias[rows]
        _, k, _ = ours.qkv_proj(x).chunk(3, dim=-1)
    torch.testing.assert_close(by_rows, split_heads(k, num_heads)[:, 1], atol=1e-6, rtol=0)


def test_padding_example_sentence():
    m = re.search(r"keep = torch\.tensor\(\[\[([^\]]*)\],\s*\[([^\]]*)\]\]\)", PAGE)
    second = [t.strip() == "True" for t in m.group(2).split(",")]
    real, padding = sum(second), len(second) - sum(second)
    assert second == sorted(second, reverse=True)  # the padding is at the end
    text = flat(section(PAGE, "The same outputs, with and without masks"))
    assert (f"the second sequence has {real} real tokens and {padding} padding tokens "
            "at the end") in text


def test_fast_path_and_benchmark_are_named():
    text = flat(section(PAGE, "The module"))
    assert "default `need_weights=False` it is PyTorch's fused kernel" in text
    assert "[Efficient attention](efficient.md) measures" in text


# ---- nothing unchecked -------------------------------------------------------------


def test_every_number_in_the_prose_is_accounted_for(example):
    """A new number in the prose needs a check above; this lists the ones there are."""
    (batch, seq_len, embed_dim, num_heads), _, _, weights = example
    text = prose(PAGE.split('??? example "All the code')[0])
    text = re.sub(r"\$\$.*?\$\$", "", text, flags=re.S)  # display formulas
    text = re.sub(r"`[^`]*`", "", text)  # code names
    text = text.replace("GPT-2-small", "GPT-small")  # a model's name
    text = re.sub(r"et al\., \*[^*]*\*, 2019", "", text)  # the two citations
    sizes = {batch, seq_len, embed_dim, num_heads, embed_dim // num_heads}
    w = weights[0]
    figure = {round(w.min().item(), 2), round(w.max().item(), 2), 1 / seq_len,
              *w.argmax(-1).flatten().tolist()}
    checked = {
        *sizes, 7,  # columns 4 to 7
        6720, 25, 50, 100, 200, 4096, 32, 537,  # what H heads cost
        768, 12, 64, 10, 1.0084, 0.3342, 0.2911, 0.2887, 0.154, 0.1,  # scaling
        0.0954, 0.3148,  # the heads' range
        3, 15, 12,  # padding: 3 real tokens; check yourself: rows 8 to 15, 12 to 15
        *figure,
    }
    by_definition = {0, 1, -1, 3}  # head 0/1, "near 1", (i+1)D_h - 1, 3D
    found = set(numbers(text))
    assert found <= {float(n) for n in checked | by_definition}, sorted(
        found - {float(n) for n in checked | by_definition})
