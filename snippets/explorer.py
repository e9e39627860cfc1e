"""The data behind the attention explorer (docs/explorer.md), made at build time.

For each sentence the explorer shows the attention weights of several heads:
the hand-built head of ``snippets.attention``, and every head of one randomly
initialised, untrained ``MultiHeadAttention`` layer applied to random embeddings
of the same tokens. ``explorer_json`` is the file the widget fetches;
``figures/explorer.py`` has the build add it to the site, so the page can never show
numbers the code does not produce.
"""

# --8<-- [start:imports]
import json

import torch
# --8<-- [end:imports]

# Outside any section, so that a page can include these modules' sections instead.
from snippets.attention import LEXICON, handbuilt_attention
from snippets.checks import (
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


def explorer_data(sentences=EXPLORER_SENTENCES, d_model=8, num_heads=4, seed=0):
    """What the explorer shows: for each sentence, its tokens and the (T, T)
    weights of every head, as lists of floats rounded to 4 decimals."""
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
    return {"sentences": found}
# --8<-- [end:explorer-data]


# --8<-- [start:explorer-json]
def explorer_json():
    """``explorer_data()`` as JSON: sorted keys, no spaces, so every build writes the
    same bytes."""
    return json.dumps(explorer_data(), sort_keys=True, separators=(",", ":")) + "\n"
# --8<-- [end:explorer-json]
