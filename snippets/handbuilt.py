"""A hand-built attention head for "The cat sat on the mat."

The page ``docs/index.md`` shows this file. Nothing here is learned: every embedding
and every entry of W_q, W_k and W_v is chosen by hand, so that the reason behind each
attention weight can be read off the matrices. ``handbuilt_attention`` returns the
head's tokens and weights for the figure and the explorer to reuse.
"""

# --8<-- [start:imports]
import torch
# --8<-- [end:imports]

# Outside any section, so that a page can include attention.py's sections instead.
from snippets.attention import project, scaled_dot_product_attention

__all__ = [
    "SENTENCE",
    "FEATURES",
    "LEXICON",
    "tokenize",
    "embed",
    "head_matrices",
    "handbuilt_head",
    "handbuilt_attention",
    "handbuilt_heatmap_svg",
    "GENERATED",
]


# --8<-- [start:tokenize]
SENTENCE = "The cat sat on the mat."


def tokenize(sentence):
    """Lower-case words, punctuation dropped: "The cat sat." -> ["the", "cat", "sat"].

    A real tokenizer keeps "The" and "the" apart and makes "." a token of its own;
    here both would only add rows that the hand-built head has nothing to say about.
    """
    if not isinstance(sentence, str):
        raise ValueError(f"sentence must be a str, got {type(sentence).__name__}")
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
    unknown = [t for t in tokens if t not in LEXICON]
    if unknown or not tokens:
        raise ValueError(
            f"tokens must be a non-empty list of words from LEXICON "
            f"({', '.join(LEXICON)}), got {tokens!r}"
        )
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
    tokens = tokenize(sentence)
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


def handbuilt_heatmap_svg():
    """The hand-built head's weights as an SVG heatmap, drawn on a white card so it
    reads the same in the site's light and dark schemes. Made at build time."""
    import io

    import matplotlib
    import matplotlib.patches

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokens, weights = handbuilt_attention()
    w = weights.numpy()
    style = {"svg.hashsalt": "handbuilt-heatmap", "svg.fonttype": "path",
             "font.size": 11, "text.color": "#1a1a1a", "axes.labelcolor": "#1a1a1a",
             "xtick.color": "#1a1a1a", "ytick.color": "#1a1a1a"}
    with matplotlib.rc_context(style):
        fig, ax = plt.subplots(figsize=(5.6, 4.8), facecolor="white")
        ax.set_facecolor("white")
        image = ax.imshow(w, cmap="Blues", vmin=0.0, vmax=1.0)
        sat = tokens.index("sat")  # outline the row the page talks about
        ax.add_patch(matplotlib.patches.Rectangle(
            (-0.5, sat - 0.5), len(tokens), 1, fill=False, edgecolor="#b2182b", lw=2.5))
        for i in range(len(tokens)):
            for j in range(len(tokens)):
                dark_cell = w[i, j] > 0.5
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center",
                        color="white" if dark_cell else "#1a1a1a")
        ax.set_xticks(range(len(tokens)), tokens)
        ax.set_yticks(range(len(tokens)), tokens)
        ax.set_xlabel("key: the token attended to")
        ax.set_ylabel("query: the token attending")
        ax.set_title("Hand-built head on \u201cThe cat sat on the mat.\u201d")
        fig.colorbar(image, ax=ax, label="attention weight", fraction=0.046)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata={"Date": None}, facecolor="white")
        plt.close(fig)
    return buffer.getvalue()


GENERATED = {"figures/handbuilt-heatmap.svg": handbuilt_heatmap_svg}
