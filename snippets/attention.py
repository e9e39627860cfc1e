"""Scaled dot-product attention, written out step by step.

The page ``docs/attention.md`` shows this file one section at a time. The five steps of
the article are the sections ``project``, ``scores``, ``scale``, ``softmax`` and
``weighted-sum``; ``scaled_dot_product_attention`` puts them together behind a
checked interface that the rest of the site builds on.
"""

# --8<-- [start:imports]
import math

import torch
# --8<-- [end:imports]

# Outside any section: the pages include snippets/checks.py's section instead.
from snippets.checks import (
    HALF,
    check_attention_inputs,
    check_device,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
    check_words,
)

__all__ = [
    "project",
    "attention_scores",
    "scale_scores",
    "attention_weights",
    "weighted_sum",
    "causal_mask",
    "scaled_dot_product_attention",
    "SENTENCE",
    "FEATURES",
    "LEXICON",
    "tokenize",
    "embed",
    "head_matrices",
    "handbuilt_head",
    "handbuilt_attention",
]


# --8<-- [start:project]
def project(x, w_q, w_k, w_v):
    """Step 1: project the embeddings into queries, keys and values.

    x: (..., T, d_model); w_q, w_k: (d_model, d_k); w_v: (d_model, d_v).
    Returns q, k: (..., T, d_k) and v: (..., T, d_v).
    Dtypes: float16, bfloat16, float32, float64, all four tensors alike; the numbers
    of torch.matmul in that dtype.
    """
    check_shapes(x=(x, "(..., T, d_model)"), w_q=(w_q, "(d_model, d_k)"),
                 w_k=(w_k, "(d_model, d_k)"), w_v=(w_v, "(d_model, d_v)"))
    q = x @ w_q  # (..., T, d_model) @ (d_model, d_k) -> (..., T, d_k)
    k = x @ w_k  # (..., T, d_model) @ (d_model, d_k) -> (..., T, d_k)
    v = x @ w_v  # (..., T, d_model) @ (d_model, d_v) -> (..., T, d_v)
    return q, k, v
# --8<-- [end:project]


# --8<-- [start:scores]
def attention_scores(q, k):
    """Step 2: score every query against every key with a dot product.

    q: (..., T_q, d_k), k: (..., T_k, d_k) -> scores: (..., T_q, T_k).
    Row i, column j says how well query i matches key j.
    Dtypes: float16, bfloat16, float32, float64, q and k alike; the numbers of
    torch.matmul in that dtype (in float16, scores past 65504 overflow to inf).
    """
    check_shapes(q=(q, "(..., T_q, d_k)"), k=(k, "(..., T_k, d_k)"))
    return q @ k.transpose(-2, -1)  # (..., T_q, d_k) @ (..., d_k, T_k)
# --8<-- [end:scores]


# --8<-- [start:scale]
def scale_scores(scores, d_k):
    """Step 3: divide by sqrt(d_k) so the scores' spread does not grow with d_k.

    Dtypes: float16, bfloat16, float32, float64; the numbers of torch's division.
    """
    check_tensor("scores", scores, "(...)")
    check_size("d_k", d_k)
    return scores / math.sqrt(d_k)  # same shape: (..., T_q, T_k)
# --8<-- [end:scale]


# --8<-- [start:softmax]
def attention_weights(scores):
    """Step 4: softmax over the keys, so each query's weights are >= 0 and sum to 1.

    Dtypes: float16, bfloat16, float32, float64; the numbers of torch.softmax.
    """
    check_tensor("scores", scores, "(..., T_k)")
    return torch.softmax(scores, dim=-1)  # (..., T_q, T_k), rows sum to 1
# --8<-- [end:softmax]


# --8<-- [start:weighted-sum]
def weighted_sum(weights, v):
    """Step 5: each output row is the weights' blend of the value rows.

    weights: (..., T_q, T_k), v: (..., T_k, d_v) -> output: (..., T_q, d_v).
    Dtypes: float16, bfloat16, float32, float64, both alike; the numbers of
    torch.matmul in that dtype.
    """
    check_shapes(weights=(weights, "(..., T_q, T_k)"), v=(v, "(..., T_k, d_v)"))
    return weights @ v
# --8<-- [end:weighted-sum]


# --8<-- [start:causal-mask]
def causal_mask(t_q, t_k, device=None):
    """Boolean (T_q, T_k) mask, True where query i may attend to key j (j <= i).

    Aligned to the upper left, like ``torch.nn.functional.scaled_dot_product_attention``
    with ``is_causal=True``. t_q, t_k: non-negative ints.
    """
    check_size("t_q", t_q, minimum=0)
    check_size("t_k", t_k, minimum=0)
    device = check_device("device", device)
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()
# --8<-- [end:causal-mask]


# --8<-- [start:sdpa]
def scaled_dot_product_attention(q, k, v, mask=None, is_causal=False):
    """softmax(q k^T / sqrt(d_k)) v, with the weights returned too.

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v); leading dimensions
    broadcast. ``mask`` is boolean, broadcastable to (..., T_q, T_k), True meaning
    "may attend" (the polarity of ``torch.nn.functional.scaled_dot_product_attention``).
    ``is_causal=True`` lets query i see keys 0..i only.

    Returns ``(output, weights)``: output (..., T_q, d_v), weights (..., T_q, T_k).
    A query that may attend to no key at all (every key masked, or every score
    -inf) gets a row of zero weights and a zero output, which is what PyTorch's
    function gives, instead of the NaN that a plain softmax over a row of -inf
    produces. A NaN in the inputs stays NaN.

    Dtypes: float16, bfloat16, float32, float64, q, k and v alike. float16 and
    bfloat16 are computed in float32 and rounded once at the end, because q k^T
    overflows float16 long before the scale brings it back: within 2e-3 of torch's
    function in float16, 2e-2 in bfloat16, 1e-4 in float32 and 1e-12 in float64.
    """
    check_attention_inputs(q, k, v, mask, is_causal)
    if q.dtype in HALF:  # compute in float32, round once
        out, weights = scaled_dot_product_attention(
            q.float(), k.float(), v.float(), mask, is_causal
        )
        return out.to(q.dtype), weights.to(q.dtype)
    if is_causal:
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    scores = scale_scores(attention_scores(q, k), q.shape[-1])  # (..., T_q, T_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # blocked keys get -inf
    weights = attention_weights(scores)  # (..., T_q, T_k)
    no_key = (scores == float("-inf")).all(dim=-1, keepdim=True)  # rows all -inf ...
    weights = weights.masked_fill(no_key, 0.0)  # ... are NaN: make them 0
    return weighted_sum(weights, v), weights  # (..., T_q, d_v), (..., T_q, T_k)
# --8<-- [end:sdpa]


# The hand-built head for "The cat sat on the mat." (the second half of the page).
# Nothing in it is learned: every embedding and every entry of W_q, W_k and W_v is
# chosen by hand, so that the reason behind each weight can be read off the matrices.


# --8<-- [start:tokenize]
SENTENCE = "The cat sat on the mat."


def tokenize(sentence):
    """Lower-case words, punctuation dropped: "The cat sat." -> ["the", "cat", "sat"].

    A real tokenizer keeps "The" and "the" apart and makes "." a token of its own;
    here both would only add rows that the hand-built head has nothing to say about.
    """
    check_type("sentence", sentence, str)
    words = sentence.lower().translate(str.maketrans("", "", ".,;:!?")).split()
    if not words:
        raise ValueError(f"sentence must contain at least one word, got {sentence!r}")
    return words
# --8<-- [end:tokenize]


# --8<-- [start:embeddings]
# One embedding dimension per feature: 1.0 if the word has it, else 0.0.
FEATURES = ["noun", "article", "verb", "preposition", "animate"]

LEXICON = {          # noun article verb  prep  animate
    "the":            [0.0, 1.0, 0.0, 0.0, 0.0],
    "a":              [0.0, 1.0, 0.0, 0.0, 0.0],
    "cat":            [1.0, 0.0, 0.0, 0.0, 1.0],
    "dog":            [1.0, 0.0, 0.0, 0.0, 1.0],
    "mat":            [1.0, 0.0, 0.0, 0.0, 0.0],
    "sat":            [0.0, 0.0, 1.0, 0.0, 0.0],
    "on":             [0.0, 0.0, 0.0, 1.0, 0.0],
}


def embed(tokens):
    """Look each token up in LEXICON: a list of T words -> x of shape (T, d_model=5)."""
    check_words("tokens", tokens, LEXICON)
    return torch.tensor([LEXICON[t] for t in tokens])  # (T, 5)
# --8<-- [end:embeddings]


# --8<-- [start:head-matrices]
def head_matrices():
    """W_q, W_k: (d_model=5, d_k=3); W_v: (5, 5). Rows follow FEATURES.

    A key says what a token offers, a query what it looks for, in the same three
    slots: (noun, animate, verb). Their dot product is large when they match.
    """
    w_q = torch.tensor([   # what a token with this feature looks for
        [0.0, 0.0, 2.0],   # noun: the verb it takes part in
        [0.0, 0.0, 0.0],   # article: nothing in particular
        [2.0, 1.0, 0.0],   # verb: nouns, animate ones (who did it) a little more
        [2.0, -1.0, 0.0],  # preposition: nouns, inanimate ones (a place) more
        [0.0, 0.0, 0.0],   # animate: adds nothing to the query
    ])
    w_k = torch.tensor([   # what a token with this feature offers
        [2.0, 0.0, 0.0],   # noun: "I am a noun"
        [0.0, 0.0, 0.0],   # article: nothing
        [0.0, 0.0, 2.0],   # verb: "I am a verb"
        [0.0, 0.0, 0.0],   # preposition: nothing
        [0.0, 1.0, 0.0],   # animate: "I am animate"
    ])
    w_v = torch.eye(5)     # a value passes the token's features on unchanged
    return w_q, w_k, w_v
# --8<-- [end:head-matrices]


# --8<-- [start:handbuilt-head]
def handbuilt_head(sentence=SENTENCE):
    """Run the hand-built head on a sentence of LEXICON words.

    Returns (tokens, output, weights): T words, output (T, 5) in FEATURES order
    (each row the weighted average of the features it attended to), weights (T, T).
    """
    tokens = check_words("sentence", tokenize(sentence), LEXICON)
    x = embed(tokens)                                # (T, 5)
    q, k, v = project(x, *head_matrices())           # (T, 3), (T, 3), (T, 5)
    output, weights = scaled_dot_product_attention(q, k, v)  # (T, 5), (T, T)
    return tokens, output, weights


def handbuilt_attention(sentence=SENTENCE):
    """(tokens, weights) of the hand-built head: weights[i, j] is how much token i
    attends to token j; each row sums to 1."""
    tokens, _, weights = handbuilt_head(sentence)
    return tokens, weights
# --8<-- [end:handbuilt-head]
