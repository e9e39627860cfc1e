"""snippets/explorer.py: the data the attention explorer shows, and the page's claims.

The JSON must be what the code computes: the hand-built head's weights are
``handbuilt_attention()`` rounded, each other head is one head of the untrained
``MultiHeadAttention`` (checked against ``torch.nn.MultiheadAttention`` given the same
weights), every row sums to 1 up to rounding, the heads differ, and two builds write
the same bytes. The numbers docs/explorer.md states are read from the page and
compared with the data.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest
import torch

from figures.explorer import GENERATED
from snippets.explorer import (
    EXPLORER_SENTENCES,
    explorer_data,
    explorer_json,
    rounded,
    untrained_head_weights,
    untrained_layer,
)
from snippets.attention import LEXICON, handbuilt_attention
from snippets.multi_head import MultiHeadAttention
from tests.conftest import ROOT
from tests.pages import numbers, prose, read_page, section

HALF_ULP = 0.00005  # the most that rounding to 4 decimals moves a weight


def flat(text):
    """Text with every run of whitespace made one space, so rewrapping is harmless."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def data():
    return explorer_data()


def all_weights(data, heads=slice(None)):
    return [
        w
        for s in data["sentences"]
        for head in s["heads"][heads]
        for row in head["weights"]
        for w in row
    ]


def test_shape_of_the_data(data):
    assert [s["id"] for s in data["sentences"]] == list(EXPLORER_SENTENCES)
    for s in data["sentences"]:
        assert s["title"] == EXPLORER_SENTENCES[s["id"]]
        t = len(s["tokens"])
        assert [h["name"] for h in s["heads"]] == [
            "hand-built head", "head 1", "head 2", "head 3", "head 4"
        ]
        for head in s["heads"]:
            assert set(head) == {"name", "note", "weights"}
            assert len(head["weights"]) == t
            assert all(len(row) == t for row in head["weights"])
            assert all(isinstance(w, float) for row in head["weights"] for w in row)
        assert "untrained" in s["heads"][1]["note"]


def test_rounded_keeps_four_decimals():
    weights = torch.tensor([[0.123456, 0.876544], [1 / 3, 2 / 3]])
    assert rounded(weights) == [[0.1235, 0.8765], [0.3333, 0.6667]]


def test_hand_built_head_is_handbuilt_attention_rounded(data):
    for s in data["sentences"]:
        tokens, weights = handbuilt_attention(s["title"])
        assert s["tokens"] == tokens
        got = torch.tensor(s["heads"][0]["weights"], dtype=torch.float64)
        assert got.tolist() == [[round(float(w), 4) for w in row] for row in weights]
        assert (got - weights.double()).abs().max() <= HALF_ULP


def test_the_sentence_the_page_is_about_comes_first(data):
    first = data["sentences"][0]
    assert first["title"] == "The cat sat on the mat."
    assert first["tokens"] == ["the", "cat", "sat", "on", "the", "mat"]


def torch_reference_weights(tokens, d_model=8, num_heads=4, seed=0):
    """The per-head weights from torch.nn.MultiheadAttention with the untrained
    layer's parameters copied in: an independent computation of the same thing."""
    layer, table = untrained_layer(d_model, num_heads, seed)
    ref = torch.nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(layer.qkv_proj.weight)
        ref.in_proj_bias.copy_(layer.qkv_proj.bias)
        ref.out_proj.weight.copy_(layer.out_proj.weight)
        ref.out_proj.bias.copy_(layer.out_proj.bias)
        x = torch.stack([table[t] for t in tokens]).unsqueeze(0)  # (1, T, D)
        _, weights = ref(x, x, x, need_weights=True, average_attn_weights=False)
    return weights[0]  # (H, T, T)


def test_each_untrained_head_is_one_head_of_the_layer(data):
    for s in data["sentences"]:
        expected = untrained_head_weights(s["tokens"])  # (H, T, T)
        reference = torch_reference_weights(s["tokens"])
        torch.testing.assert_close(expected, reference, atol=1e-6, rtol=0)
        assert len(s["heads"]) == 1 + expected.shape[0]
        for head, weights, ref in zip(s["heads"][1:], expected, reference):
            got = torch.tensor(head["weights"], dtype=torch.float64)
            assert got.tolist() == rounded(weights)
            assert (got - ref.double()).abs().max() <= HALF_ULP + 1e-6


def test_untrained_layer_is_pytorch_initialisation_of_multihead_attention():
    layer, table = untrained_layer(8, 4, seed=0)
    assert isinstance(layer, MultiHeadAttention)
    assert (layer.embed_dim, layer.num_heads, layer.head_dim) == (8, 4, 2)
    assert list(table) == list(LEXICON)
    assert all(v.shape == (8,) for v in table.values())
    # nn.Linear's default initialisation: uniform in +-1/sqrt(fan_in)
    assert layer.qkv_proj.weight.abs().max() <= 8 ** -0.5


def test_every_row_sums_to_one_within_rounding(data):
    for s in data["sentences"]:
        t = len(s["tokens"])
        for head in s["heads"]:
            for row in head["weights"]:
                assert all(w >= 0 for w in row)
                assert abs(sum(row) - 1) <= t * HALF_ULP + 1e-9, (s["id"], head["name"])


def test_the_heads_differ(data):
    for s in data["sentences"]:
        for a, b in itertools.combinations(s["heads"], 2):
            diff = (torch.tensor(a["weights"]) - torch.tensor(b["weights"])).abs().max()
            assert diff > 0.01, (s["id"], a["name"], b["name"])


def test_no_head_sees_word_order(data):
    """What the page says: the two "the" get the same weight in every row, and in the
    second sentence (cat and mat swapped) every weight moves with its word."""
    first, swapped = data["sentences"]
    order = [0, 5, 2, 3, 4, 1]  # cat (1) and mat (5) swapped
    assert swapped["tokens"] == [first["tokens"][i] for i in order]
    for a, b in zip(first["heads"], swapped["heads"]):
        w1, w2 = torch.tensor(a["weights"]), torch.tensor(b["weights"])
        assert torch.equal(w1[:, 0], w1[:, 4]) and torch.equal(w1[0], w1[4])
        torch.testing.assert_close(w2, w1[order][:, order], atol=1e-4, rtol=0)


def test_the_seed_chooses_the_layer():
    tokens = ["the", "cat", "sat"]
    assert torch.equal(untrained_head_weights(tokens), untrained_head_weights(tokens))
    assert not torch.equal(untrained_head_weights(tokens),
                           untrained_head_weights(tokens, seed=1))
    assert untrained_head_weights(tokens, d_model=6, num_heads=3).shape == (3, 3, 3)


def test_the_callers_random_state_is_left_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    untrained_layer()
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("tokens", [["the", "unicorn"], []])
def test_unknown_or_no_tokens_are_refused(tokens):
    with pytest.raises(ValueError, match=r"tokens must be a non-empty list of words "
                                         r"from \(the, a, cat.*got \[") as info:
        untrained_head_weights(tokens)
    assert repr(tokens) in str(info.value)


def test_json_is_the_data_and_the_same_bytes_every_time(data):
    torch.manual_seed(1)
    first = explorer_json()
    torch.manual_seed(2)
    torch.randn(10)
    second = explorer_json()
    assert first == second
    assert json.loads(first) == data
    resorted = json.dumps(json.loads(first), sort_keys=True, separators=(",", ":"))
    assert first == resorted + "\n"
    assert len(first.encode()) < 10_000, "keep the widget's data small"


def test_the_site_loads_the_widget():
    config = (ROOT / "mkdocs.yml").read_text()
    for key, path in (("extra_javascript", "javascripts/explorer.js"),
                      ("extra_css", "stylesheets/explorer.css")):
        listed = rf"(?m)^{key}:\n(?:  - .*\n)*  - {re.escape(path)}$"
        assert re.search(listed, config), f"mkdocs.yml must list {path} in {key}"
    assert (ROOT / "docs" / "javascripts" / "explorer.js").is_file()
    assert (ROOT / "docs" / "stylesheets" / "explorer.css").is_file()


# The page: what it says must be what the data holds.

PAGE = "explorer.md"


def test_the_page_embeds_the_widget_with_the_generated_file(data):
    text = read_page(PAGE)
    divs = re.findall(r'<div class="attention-explorer"([^>]*)>', text)
    assert divs, "the page must embed the explorer"
    for attrs in divs:
        src = re.search(r'data-src="([^"]+)"', attrs).group(1)
        # docs/explorer.md is served at /explorer/, so its "../" is the site root
        assert src.startswith("../") and src[3:] in GENERATED
        token = re.search(r'data-token="([^"]+)"', attrs)
        if token:
            assert token.group(1) in data["sentences"][0]["tokens"]
        sentence = re.search(r'data-sentence="([^"]+)"', attrs)
        if sentence:
            assert sentence.group(1) in EXPLORER_SENTENCES
        head = re.search(r'data-head="([^"]+)"', attrs)
        if head:
            assert head.group(1) in [h["name"] for h in data["sentences"][0]["heads"]]


def test_the_page_names_the_sentence_ids_and_heads_that_exist(data):
    embed = section(read_page(PAGE), "Embed it on another page")
    ids = re.search(r"`data-sentence` \(`([^`]+)` or `([^`]+)`\)", embed)
    assert ids and list(ids.groups()) == list(EXPLORER_SENTENCES)
    names = [h["name"] for h in data["sentences"][0]["heads"]]
    examples = re.findall(
        r'data-sentence="([^"]+)" data-head="([^"]+)" data-token="([^"]+)"', embed
    )
    assert examples, "the page shows an example element with every attribute"
    for sentence_id, head, token in examples:
        assert sentence_id in EXPLORER_SENTENCES and head in names
        index = list(EXPLORER_SENTENCES).index(sentence_id)
        assert token in data["sentences"][index]["tokens"]


def test_the_sat_row_numbers_in_the_prose(data):
    first = data["sentences"][0]
    tokens, hand = first["tokens"], first["heads"][0]["weights"]
    row = dict(zip(tokens, hand[tokens.index("sat")]))
    heads = flat(prose(section(read_page(PAGE), "What the heads are")))
    assert f"**sat** gives **cat** {row['cat']:.4f}" in heads
    assert f"**mat** {row['mat']:.4f} of its attention" in heads
    assert f"each **the** only {row['the']:.4f}" in heads
    usage = flat(prose(section(read_page(PAGE), "How to use it")))
    shown = ", ".join(f"{t} {w:.4f}" for t, w in list(zip(tokens, hand[2]))[:2])
    assert f'"sat attends to: {shown}, ...' in usage


def test_the_untrained_range_in_the_warning(data):
    heads = flat(section(read_page(PAGE), "What the heads are"))
    untrained = all_weights(data, slice(1, None))
    stated = re.search(r"every weight lies between (\d\.\d+) and (\d\.\d+), around "
                       r"the even\s+(\d\.\d+)", heads)
    assert stated, "the warning must state the untrained weights' range"
    low, high, even = map(float, stated.groups())
    assert low == min(untrained) and high == max(untrained)
    t = len(data["sentences"][0]["tokens"])
    assert even == round(1 / t, 4)
    # and it is "almost evenly" only because it is far from the hand-built head
    assert max(all_weights(data, slice(0, 1))) > 2 * high


def test_the_counts_in_the_prose(data):
    text = flat(prose(read_page(PAGE)))
    first = data["sentences"][0]
    t = len(first["tokens"])
    assert all(len(s["tokens"]) == t for s in data["sentences"])
    assert f"With the {t} tokens of these sentences" in text
    assert f"$1/{t} \\approx {1 / t:.4f}$" in text
    num_heads = len(first["heads"]) - 1
    layer, _ = untrained_layer()
    assert (layer.num_heads, layer.embed_dim) == (num_heads, 8)
    assert f"`MultiHeadAttention({layer.embed_dim}, {num_heads})`" in text
    assert f"**head 1** to **head {num_heads}**" in text
    assert f"{layer.embed_dim}-wide random" in text
    in_words = ["zero", "one", "two", "three", "four"][num_heads]
    assert f"across the {in_words} heads and" in text
    assert len(data["sentences"]) == 2 and "two sentences" in text


def test_the_check_yourself_answer(data):
    swapped = data["sentences"][1]
    row = swapped["heads"][0]["weights"][swapped["tokens"].index("sat")]
    best = swapped["tokens"][row.index(max(row))]
    text = read_page(PAGE)
    question = flat(text[text.index('??? question "Check yourself'):])
    assert swapped["title"] == "The mat sat on the cat." and best == "cat"
    assert f"**{best}** again, with the same {max(row):.4f}" in question
    first = data["sentences"][0]
    assert max(row) == first["heads"][0]["weights"][2][first["tokens"].index("cat")]


def test_the_rounded_row_sum_in_the_prose(data):
    first = data["sentences"][0]
    row = first["heads"][0]["weights"][first["tokens"].index("sat")]
    text = flat(prose(section(read_page(PAGE), "The numbers come from code")))
    assert round(sum(row), 4) != 1
    assert f"The row of the hand-built head adds up to {sum(row):.4f}, not 1" in text
    assert f"each of its {len(row)} weights" in text.replace("six", "6")


def row_sums(data):
    return {
        round(sum(row), 4)
        for s in data["sentences"] for head in s["heads"] for row in head["weights"]
    }


def test_every_decimal_in_the_prose_is_a_weight_of_the_data(data):
    """A number with decimals that the page states must be one the explorer shows
    (or the sum of one of its rows)."""
    shown = {round(w, 4) for w in all_weights(data)} | row_sums(data)
    shown.add(round(1 / 6, 4))
    stated = [n for n in numbers(prose(read_page(PAGE))) if n != int(n)]
    assert stated, "the page states weights"
    assert [n for n in stated if n not in shown] == []


@pytest.mark.parametrize("call, pattern", [
    (lambda: untrained_layer(8, 3), r"d_model must be divisible by num_heads, got "
     r"d_model=8 and num_heads=3"),
    (lambda: untrained_layer(8, 4, seed=-1), r"seed must be an int from 0 to"),
    (lambda: explorer_data({"zebra": "The zebra sat."}),
     r"sentences\['zebra'\]: sentence must be a non-empty list of words from"),
    (lambda: explorer_data({"number": 7}), r"sentences\['number'\]: sentence must be a "
     r"str, got int"),
    (lambda: explorer_data(["The cat sat."]), r"sentences must be a dict of id -> "
     r"sentence, got list"),
    (lambda: rounded(torch.zeros(2, 3)), r"weights must have shape \(T, T\) with T = 2"),
    (lambda: rounded(torch.zeros(2, 2, device="meta")), r"weights must hold values"),
])
def test_bad_input_is_a_clear_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_a_refused_call_leaves_the_random_state_alone():
    state = torch.get_rng_state()
    with pytest.raises(ValueError):
        untrained_layer(8, 3)
    assert torch.equal(torch.get_rng_state(), state)
