# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attention playground
#
# **Answers:** what happens to the hand-built head's weights when you change the
# sentence, the embeddings or the temperature of the softmax?
#
# **Assumes:** [What is self-attention](../../attention/), above all its
# [hand-built head](../../attention/#a-head-built-by-hand); the symbols are in the
# [glossary](../../glossary/).
#
# This notebook runs the [hand-built attention head](../../#a-head-built-by-hand) of the home page
# and lets you change what goes into it: the sentence, the embeddings and the
# *temperature* of the softmax. Download it (links above), open it in Jupyter and edit
# any cell. Every cell ran when this page was built, so the outputs below are what the
# code gives; the `assert` lines are checks that ran too.
#
# The weights are
#
# $$
# A = \operatorname{softmax}\!\left(\frac{QK^\top}{\tau\sqrt{d_k}}\right)
# $$
#
# where $\tau$ is the temperature: $\tau = 1$ is ordinary attention, $\tau < 1$ sharpens
# every row toward its largest score, $\tau > 1$ flattens it toward uniform.

# %% [markdown]
# ## The code
#
# The attention steps and the hand-built head, as tested in this site's `snippets`
# package (the download holds them inline, so it runs on its own).

# %%
--8<-- "snippets/attention.py:imports"
--8<-- "snippets/checks.py:input-checks"
--8<-- "snippets/attention.py:project"
--8<-- "snippets/attention.py:scores"
--8<-- "snippets/attention.py:scale"
--8<-- "snippets/attention.py:softmax"
--8<-- "snippets/attention.py:tokenize"
--8<-- "snippets/attention.py:embeddings"
--8<-- "snippets/attention.py:head-matrices"

# %% [markdown]
# A helper that runs the head with a temperature, and one that prints a row of
# weights and draws the whole matrix.

# %%
import matplotlib.pyplot as plt


def attend(sentence, temperature=1.0, lexicon=None):
    """Tokens and (T, T) weights of the hand-built head at the given temperature."""
    tokens = tokenize(sentence)
    table = LEXICON if lexicon is None else lexicon
    x = torch.tensor([table[t] for t in tokens])  # (T, 5)
    q, k, _ = project(x, *head_matrices())  # (T, 3) each
    scores = scale_scores(attention_scores(q, k), q.shape[-1])  # (T, T)
    return tokens, attention_weights(scores / temperature)  # (T, T)


def show_row(tokens, weights, word="sat"):
    i = tokens.index(word)
    cells = ", ".join(f"{t} {w:.4f}" for t, w in zip(tokens, weights[i].tolist()))
    print(f"{word} attends to: {cells}")


def heatmap(tokens, weights, title):
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.imshow(weights, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(tokens)):
        for j in range(len(tokens)):
            w = weights[i, j].item()
            ax.text(j, i, f"{w:.2f}", ha="center", va="center",
                    color="white" if w > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(tokens)), tokens)
    ax.set_yticks(range(len(tokens)), tokens)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(title)
    plt.show()


# %% [markdown]
# ## 1. The sentence of the article

# %%
tokens, weights = attend("The cat sat on the mat.")
show_row(tokens, weights)
heatmap(tokens, weights, "temperature 1")
sat = tokens.index("sat")
assert weights[sat, tokens.index("cat")] > weights[sat, tokens.index("the")]
assert weights[sat, tokens.index("mat")] > weights[sat, tokens.index("the")]

# %% [markdown]
# ## 2. Change the sentence
#
# Any sentence made of the words in `LEXICON` works. With "dog" in place of "cat" the
# weights are the same, because the two words have the same features: the head sees
# features, not spellings.

# %%
print(sorted(LEXICON))
dog_tokens, dog_weights = attend("A dog sat on the mat.")
show_row(dog_tokens, dog_weights)
assert torch.allclose(dog_weights, weights)

# %% [markdown]
# ## 3. Change the temperature
#
# The same scores, divided by a temperature before the softmax. Watch the largest
# weight in the row of "sat" grow as the temperature falls, and the row approach the
# uniform $1/T$ as it rises.

# %%
for temperature in (0.25, 0.5, 1.0, 2.0, 8.0):
    _, w = attend("The cat sat on the mat.", temperature)
    row = w[sat]
    print(f"temperature {temperature:4}: largest weight {row.max():.4f}, "
          f"smallest {row.min():.4f}")
cold = attend("The cat sat on the mat.", 0.25)[1][sat]
hot = attend("The cat sat on the mat.", 8.0)[1][sat]
assert cold.max() > weights[sat].max() > hot.max() > 1 / len(tokens)

# %% [markdown]
# ## 4. Change the embeddings
#
# Give "mat" the feature *animate* (a magic carpet, say). The verb's query asks for
# nouns and, a little, for animate ones, so "sat" now splits its attention evenly
# between "cat" and "mat".

# %%
magic = {word: list(features) for word, features in LEXICON.items()}
magic["mat"][FEATURES.index("animate")] = 1.0
m_tokens, m_weights = attend("The cat sat on the mat.", lexicon=magic)
show_row(m_tokens, m_weights)
heatmap(m_tokens, m_weights, "an animate mat")
assert torch.isclose(m_weights[sat, m_tokens.index("cat")],
                     m_weights[sat, m_tokens.index("mat")])

# %% [markdown]
# ## Your turn
#
# Things to try: add a word to `LEXICON` (a new verb, "ran"), set a row of `W_q` to
# zeros in `head_matrices` and see that token attend uniformly, or find the
# temperature at which "sat" gives "cat" more than 0.9 of its attention.
