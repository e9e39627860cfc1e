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
# # Multi-head attention, step by step
#
# **Answers:** what does each step of a multi-head attention layer compute, tensor by
# tensor, and does it match `torch.nn.MultiheadAttention`?
#
# **Assumes:** [Multi-head attention](../../multi-head/); the symbols are in the
# [glossary](../../glossary/).
#
# This notebook takes one small, seeded multi-head attention layer apart and runs it
# one step at a time: the fused projection, the split into heads, each head's scores
# and weights, the merge and the output projection. Then it checks the result against
# the layer itself and against `torch.nn.MultiheadAttention`. The
# [Multi-head attention](../../multi-head/) page explains the why; here you can change
# the sizes and run it again. Every cell ran when this page was built, and the
# `assert` lines are checks that passed.
#
# Head $i$ is scaled dot-product attention with its own slice of the projections,
# and the layer concatenates the heads and mixes them with $W_o$:
#
# $$
# \text{head}_i = \operatorname{softmax}\!\left(\frac{Q_i K_i^\top}{\sqrt{D_h}}\right) V_i,
# \qquad
# \operatorname{MultiHead}(X) = \operatorname{Concat}(\text{head}_1, \ldots, \text{head}_H)\, W_o
# $$
#
# with $D$ the model width, $H$ the number of heads and $D_h = D / H$ the width of
# one head.

# %% [markdown]
# ## The code
#
# The attention steps and the multi-head layer, as tested in this site's `snippets`
# package (the download holds them inline, so it runs on its own).

# %%
--8<-- "snippets/attention.py:imports"
--8<-- "snippets/attention.py:scores"
--8<-- "snippets/attention.py:scale"
--8<-- "snippets/attention.py:softmax"
--8<-- "snippets/attention.py:weighted-sum"
--8<-- "snippets/checks.py:input-checks"
--8<-- "snippets/attention.py:causal-mask"
--8<-- "snippets/attention.py:sdpa"
--8<-- "snippets/multi_head.py:imports"
--8<-- "snippets/multi_head.py:split-heads"
--8<-- "snippets/multi_head.py:merge-heads"
--8<-- "snippets/multi_head.py:multihead-module"

# %% [markdown]
# A helper that draws one heatmap per head.

# %%
import matplotlib.pyplot as plt


def plot_heads(weights, title):
    """weights: (H, T, T) for one sequence; one panel per head, numbers in the cells."""
    num_heads, seq_len, _ = weights.shape
    fig, axes = plt.subplots(1, num_heads, figsize=(3.2 * num_heads, 3.2), squeeze=False)
    for h, ax in enumerate(axes[0]):
        ax.imshow(weights[h], cmap="Blues", vmin=0, vmax=1)
        for i in range(seq_len):
            for j in range(seq_len):
                w = weights[h, i, j].item()
                ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if w > 0.5 else "black")
        ax.set_title(f"head {h}")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


# %% [markdown]
# ## 1. The input and the layer
#
# A batch of $B = 2$ sequences of $T = 5$ tokens of width $D = 8$, and an untrained
# layer with $H = 2$ heads, so $D_h = 4$. The layer's weights come from the global
# random generator, so the seed comes first.

# %%
torch.manual_seed(0)
B, T, D, H = 2, 5, 8, 2
mha = MultiHeadAttention(D, H)
x = torch.randn(B, T, D)  # (B, T, D)
torch.set_printoptions(precision=4, sci_mode=False)
print("x", tuple(x.shape), " head_dim", mha.head_dim)
print("qkv_proj.weight", tuple(mha.qkv_proj.weight.shape),
      " out_proj.weight", tuple(mha.out_proj.weight.shape))

# %% [markdown]
# ## 2. One projection for q, k and v
#
# `qkv_proj` is one linear layer from $D$ to $3D$: its weight stacks the query, key and
# value projections as row blocks, and `chunk` cuts the output back into three.

# %%
qkv = mha.qkv_proj(x)  # (B, T, 3D)
q, k, v = qkv.chunk(3, dim=-1)  # (B, T, D) each
print("qkv", tuple(qkv.shape), "-> q, k, v", tuple(q.shape))

W, b = mha.qkv_proj.weight, mha.qkv_proj.bias  # (3D, D), (3D,)
assert torch.allclose(q, x @ W[:D].T + b[:D], atol=1e-6)  # rows 0..D-1: queries
assert torch.allclose(k, x @ W[D:2 * D].T + b[D:2 * D], atol=1e-6)  # keys
assert torch.allclose(v, x @ W[2 * D:].T + b[2 * D:], atol=1e-6)  # values

# %% [markdown]
# ## 3. Split into heads
#
# `split_heads` gives head $h$ features $hD_h$ to $(h+1)D_h - 1$ and moves the head
# index in front of the tokens. It is a view: nothing is copied.

# %%
q_h, k_h, v_h = (split_heads(t, H) for t in (q, k, v))  # (B, H, T, Dh) each
print("q", tuple(q.shape), "-> q_h", tuple(q_h.shape))
for h in range(H):
    cols = slice(h * mha.head_dim, (h + 1) * mha.head_dim)
    assert torch.equal(q_h[:, h], q[..., cols])  # head h = its own columns
assert q_h.data_ptr() == q.data_ptr()  # a view of q, not a copy

# %% [markdown]
# ## 4. Scores and weights, one matrix per head
#
# Every head scores its queries against its keys and scales by $1/\sqrt{D_h}$, its own
# width. The softmax turns each row into weights that sum to 1.

# %%
scores = attention_scores(q_h, k_h)  # (B, H, T, Dh) @ (B, H, Dh, T) -> (B, H, T, T)
weights = attention_weights(scale_scores(scores, mha.head_dim))  # (B, H, T, T)
print("scores", tuple(scores.shape), " weights", tuple(weights.shape))
for h in range(H):
    print(f"head {h}, sequence 0:")
    print(weights[0, h].detach())
assert torch.allclose(weights.sum(-1), torch.ones(B, H, T))
plot_heads(weights[0].detach(), "untrained heads, sequence 0")

# %% [markdown]
# The two heads put their largest weight on different keys, because their random
# projections differ; both are close to the uniform $1/T = 0.2$, because nothing has
# been learned.

# %%
best = weights[0].argmax(-1)  # (H, T): the most-attended key of every query
print("most-attended key, head by head:", best.tolist())
assert not torch.equal(best[0], best[1])

# %% [markdown]
# ## 5. Weighted sum, then merge
#
# Each head blends its value rows; `merge_heads` puts the heads side by side again,
# which is the concatenation of the formula.

# %%
heads = weighted_sum(weights, v_h)  # (B, H, T, T) @ (B, H, T, Dh) -> (B, H, T, Dh)
concat = merge_heads(heads)  # (B, T, D)
print("heads", tuple(heads.shape), "-> concat", tuple(concat.shape))
assert torch.equal(concat[..., :mha.head_dim], heads[:, 0])  # head 0 first
assert torch.equal(concat[..., mha.head_dim:2 * mha.head_dim], heads[:, 1])

# %% [markdown]
# ## 6. The output projection, and the layer itself
#
# `out_proj` is $W_o$. The steps above are exactly what the layer computes, on both of
# its paths: the from-scratch one that returns the weights and the fused
# `torch.nn.functional.scaled_dot_product_attention` one that does not.

# %%
out = mha.out_proj(concat)  # (B, T, D)
layer_out, layer_weights = mha(x, need_weights=True)
fast_out, _ = mha(x)
print("out", tuple(out.shape))
assert torch.allclose(out, layer_out, atol=1e-6)
assert torch.allclose(weights, layer_weights, atol=1e-6)
assert torch.allclose(out, fast_out, atol=1e-6)

# %% [markdown]
# ## 7. Against `torch.nn.MultiheadAttention`
#
# `from_torch` copies PyTorch's `in_proj_weight`, `in_proj_bias` and `out_proj` into a
# `MultiHeadAttention`. The biases are drawn at random, since PyTorch starts them at
# zero and a wrongly copied zero would go unnoticed. Mind the masks: in
# `torch.nn.MultiheadAttention` a True entry is **blocked**, in this code it **may
# attend**, so PyTorch gets `~mask`.

# %%
torch.manual_seed(1)
torch_mha = torch.nn.MultiheadAttention(D, H, batch_first=True)
with torch.no_grad():
    torch_mha.in_proj_bias.normal_()
    torch_mha.out_proj.bias.normal_()
torch_mha.eval()
ours = MultiHeadAttention.from_torch(torch_mha)

may_attend = causal_mask(T, T)  # (T, T), True = may attend
keep = torch.tensor([[True] * 5, [True, True, True, False, False]])  # (B, T) real tokens
with torch.no_grad():
    checks = {
        "no mask": (ours(x)[0], torch_mha(x, x, x, need_weights=False)[0]),
        "causal": (ours(x, is_causal=True)[0],
                   torch_mha(x, x, x, attn_mask=~may_attend, need_weights=False)[0]),
        "key padding": (ours(x, mask=keep[:, None, None, :])[0],
                        torch_mha(x, x, x, key_padding_mask=~keep, need_weights=False)[0]),
        "averaged weights": (ours(x, need_weights=True)[1].mean(dim=1),
                             torch_mha(x, x, x)[1]),
    }
for name, (a, b) in checks.items():
    diff = (a - b).abs().max().item()
    print(f"{name:<17} max |ours - torch| = {diff:.6f}")
    assert diff < 1e-6, name

# %% [markdown]
# ## Your turn
#
# The function below runs everything above for any number of heads, seed and mask,
# checks it against PyTorch and draws the heads. Two things to try:
#
# - change `num_heads` (it must divide $D$: try 1, 4 and 8, and 3 to see the error),
#   and watch each head's weights change as its width $D_h$ shrinks;
# - pass `causal=True`: every head's weights above the diagonal become 0, as no token
#   may look at the ones after it.

# %%
def run(num_heads=4, seed=0, causal=False, embed_dim=8, seq_len=5):
    torch.manual_seed(seed)
    layer = torch.nn.MultiheadAttention(embed_dim, num_heads, batch_first=True).eval()
    ours = MultiHeadAttention.from_torch(layer)
    x = torch.randn(1, seq_len, embed_dim)
    with torch.no_grad():
        out, weights = ours(x, is_causal=causal, need_weights=True)  # (1, H, T, T)
        blocked = ~causal_mask(seq_len, seq_len) if causal else None
        expected, _ = layer(x, x, x, attn_mask=blocked, need_weights=False)
    assert torch.allclose(out, expected, atol=1e-6)
    if causal:
        assert torch.all(weights[0].triu(1) == 0)  # nothing above the diagonal
    plot_heads(weights[0], f"{num_heads} heads of width {embed_dim // num_heads}"
               + (", causal" if causal else ""))
    return weights


w = run(num_heads=4, causal=True)
print("weights", tuple(w.shape))
