"""The data behind the attention explorer (docs/explorer.md), made at build time.

For each sentence the explorer shows the attention weights of several heads:
the hand-built head of ``snippets.attention``, and every head of one randomly
initialised, untrained ``MultiHeadAttention`` layer applied to random embeddings
of the same tokens. ``explorer_json`` is the file the widget fetches;
``figures/explorer.py`` has the build add it to the site, so the page can never show
numbers the code does not produce.

It also shows every head of a trained model, SmolLM2-135M-Instruct
(``snippets.smollm2``): ``smollm2_data`` runs the model on the same sentences and on
a repeated random sequence, and ``smollm2_json`` is one sentence's file, which the
widget fetches only when a reader picks the model. The build keeps the model's
results in a cache (``figures/explorer.py``), so it runs the model only when this
code or the model changes.
"""

# --8<-- [start:imports]
import json

import torch
# --8<-- [end:imports]

# Outside any section, so that a page can include these modules' sections instead.
from snippets.attention import LEXICON, handbuilt_attention
from snippets.checks import (
    check_choice,
    check_keys,
    check_seed,
    check_shapes,
    check_size,
    check_type,
    check_values,
    check_words,
)
from snippets.multi_head import MultiHeadAttention

__all__ = [
    "EXPLORER_SENTENCES",
    "untrained_layer",
    "untrained_head_weights",
    "rounded",
    "explorer_data",
    "explorer_json",
    "SMOLLM2",
    "REPEAT",
    "SMOLLM2_SENTENCES",
    "SMOLLM2_FILE",
    "repeated_token_ids",
    "readable_token",
    "packed",
    "smollm2_data",
    "smollm2_json",
]


# --8<-- [start:untrained-heads]
def untrained_layer(d_model=8, num_heads=4, seed=0):
    """A MultiHeadAttention with PyTorch's random initial weights, and a random
    d_model-wide embedding for every LEXICON word: nothing here has been trained.

    Seeded inside, in a forked random state, so the result is the same on every
    call and the caller's random numbers are left as they were.
    """
    check_seed("seed", seed)
    if check_size("d_model", d_model) % check_size("num_heads", num_heads):
        raise ValueError(f"d_model must be divisible by num_heads, got "
                         f"d_model={d_model} and num_heads={num_heads}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = MultiHeadAttention(d_model, num_heads)
        table = {word: torch.randn(d_model) for word in LEXICON}  # word -> (D,)
    return layer, table


def untrained_head_weights(tokens, d_model=8, num_heads=4, seed=0):
    """Each head's attention weights over ``tokens``: (H, T, T), rows sum to 1."""
    check_words("tokens", tokens, LEXICON)
    layer, table = untrained_layer(d_model, num_heads, seed)
    x = torch.stack([table[t] for t in tokens]).unsqueeze(0)  # (1, T, D)
    with torch.no_grad():
        _, weights = layer(x, need_weights=True)  # (1, H, T, T)
    return weights[0]  # (H, T, T)
# --8<-- [end:untrained-heads]


# --8<-- [start:explorer-data]
def rounded(weights):
    """A (T, T) tensor as T lists of T floats, each rounded to 4 decimals."""
    check_shapes(weights=(weights, "(T, T)"))
    check_values("weights", weights)
    return [[round(w, 4) for w in row] for row in weights.tolist()]


EXPLORER_SENTENCES = {  # id -> sentence; the explorer can show each of them
    "cat-sat": "The cat sat on the mat.",
    "mat-sat": "The mat sat on the cat.",
}
SMOLLM2 = "SmolLM2-135M-Instruct"  # the trained model of snippets/smollm2.py
REPEAT = 10  # SmolLM2 also reads REPEAT random tokens, then the same REPEAT again
SMOLLM2_SENTENCES = {  # id -> title; the sentences the explorer shows SmolLM2 on
    **EXPLORER_SENTENCES,
    "repeated": f"{REPEAT} random tokens, then the same {REPEAT} again",
}
SMOLLM2_FILE = "smollm2/{}.json"  # a sentence's file, beside the explorer's own


def explorer_data(sentences=EXPLORER_SENTENCES, d_model=8, num_heads=4, seed=0):
    """What the explorer shows: for each sentence, its tokens and the (T, T)
    weights of every head, as lists of floats rounded to 4 decimals; and the list
    of SmolLM2's files, one per sentence, with no weights in it."""
    check_type("sentences", sentences, dict, "a dict of id -> sentence")
    found = []
    for sentence_id, sentence in sentences.items():
        try:
            tokens, weights = handbuilt_attention(sentence)  # T words, (T, T)
        except ValueError as err:  # say which sentence it was
            raise ValueError(f"sentences[{sentence_id!r}]: {err}") from None
        heads = [{
            "name": "hand-built head",
            "note": "Every weight matrix chosen by hand (see the home page).",
            "weights": rounded(weights),
        }]
        untrained = untrained_head_weights(tokens, d_model, num_heads, seed)
        for h, head_weights in enumerate(untrained):  # (T, T) each
            heads.append({
                "name": f"head {h + 1}",
                "note": f"Head {h + 1} of {num_heads} of a randomly initialised, "
                        "untrained multi-head layer: its weights mean nothing yet.",
                "weights": rounded(head_weights),
            })
        found.append(
            {"id": sentence_id, "title": sentence, "tokens": tokens, "heads": heads}
        )
    smollm2 = [{"id": i, "title": title, "src": SMOLLM2_FILE.format(i)}
               for i, title in SMOLLM2_SENTENCES.items()]  # fetched when picked
    return {"sentences": found, "smollm2": {"name": SMOLLM2, "sentences": smollm2}}
# --8<-- [end:explorer-data]


# --8<-- [start:explorer-json]
def explorer_json():
    """``explorer_data()`` as JSON: sorted keys, no spaces, so every build writes the
    same bytes."""
    return json.dumps(explorer_data(), sort_keys=True, separators=(",", ":")) + "\n"
# --8<-- [end:explorer-json]


# --8<-- [start:real-model-tokens]
def repeated_token_ids(n=REPEAT, seed=0):
    """n random token ids from 1000 to 9999, then the same n again: (2n,).

    Seeded inside, in a forked random state, as on the real-model page, so every
    build reads the same sequence and the caller's random numbers are left alone.
    """
    check_size("n", n)
    check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        half = torch.randint(1000, 10000, (n,))  # (n,)
    return torch.cat((half, half))  # (2n,)


def readable_token(text):
    """A token's text as the explorer shows it: a space as ␣ and any other control
    character as its picture (a newline as ␊), so " cat" and "cat" look different."""
    check_type("text", text, str)
    return "".join(
        "␣" if ch == " "
        else chr(0x2400 + ord(ch)) if ord(ch) < 0x20  # ␀ to ␟
        else "␡" if ch == "\x7f"  # delete
        else ch
        for ch in text
    )
# --8<-- [end:real-model-tokens]


# --8<-- [start:real-model-data]
def packed(weights, digits=4):
    """A causal head's (T, T) weights as one flat list of whole numbers, in units of
    10**-digits: row i's first i + 1 weights (the keys that query i may see), row
    after row, T (T + 1) / 2 numbers in all. The zeros above the diagonal are left
    out; a weight there means the head was not causal, and is a ValueError."""
    check_shapes(weights=(weights, "(T, T)"))
    check_values("weights", weights)
    check_size("digits", digits, minimum=0, maximum=8)
    if not weights.isfinite().all():
        raise ValueError("weights must be finite, got NaN or infinity")
    above = weights.triu(diagonal=1).nonzero()  # (n, 2): (query, key) of each
    if len(above):
        i, j = above[0].tolist()
        raise ValueError(f"weights must be causal (zero above the diagonal), got "
                         f"{weights[i, j].item()} at query {i}, key {j}")
    scale = 10**digits
    return [round(round(w, digits) * scale)  # rounded as `rounded` does, then whole
            for i, row in enumerate(weights.tolist()) for w in row[: i + 1]]


def smollm2_data(model, digits=4):
    """What the explorer shows of SmolLM2: for each of SMOLLM2_SENTENCES, the token
    ids, their text and every layer's and head's weights, packed. ``model`` is the
    SmolLM2 of the real-model page, ``SmolLM2.from_gguf()``."""
    if not all(hasattr(model, name) for name in ("c", "encode", "tokens", "blk")):
        raise ValueError(f"model must be a SmolLM2, as SmolLM2.from_gguf() returns "
                         f"it, got {type(model).__name__}")
    check_size("digits", digits, minimum=0, maximum=8)
    found = []
    for sentence_id, title in SMOLLM2_SENTENCES.items():
        if sentence_id == "repeated":
            ids = repeated_token_ids()  # (2 REPEAT,)
        else:
            ids = model.encode(title)  # (T,)
        _, weights = model(ids)  # (L, H, T, T)
        found.append({
            "id": sentence_id,
            "title": title,
            "ids": ids.tolist(),
            "tokens": [readable_token(t) for t in model.tokens(ids)],
            "weights": [[packed(head, digits) for head in layer] for layer in weights],
        })
    c = model.c
    return {"layers": c.n_layers, "heads": c.n_heads, "kv_heads": c.n_kv_heads,
            "digits": digits, "sentences": found}


def smollm2_json(data, sentence_id):
    """One sentence of ``smollm2_data()`` as the file the explorer fetches: the
    model's sizes, the tokens and the weights, with no spaces."""
    check_keys("data", data, ["layers", "heads", "kv_heads", "digits", "sentences"])
    ids = [s["id"] for s in data["sentences"]]
    check_choice("sentence_id", sentence_id, ids)
    (sentence,) = [s for s in data["sentences"] if s["id"] == sentence_id]
    sizes = {key: data[key] for key in ("layers", "heads", "kv_heads", "digits")}
    return json.dumps(sizes | sentence, sort_keys=True, separators=(",", ":")) + "\n"
# --8<-- [end:real-model-data]
