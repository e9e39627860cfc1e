"""What the benchmark runs: the sizes of a full and a ``--quick`` run, and the methods
it compares, each with the call it times."""

from __future__ import annotations

import inspect
from pathlib import Path

from snippets.efficient import tiled_attention

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results.json"
SCHEMA_VERSION = 1
TILED_DEFAULT_BLOCK = (
    inspect.signature(tiled_attention).parameters["block_size"].default)
TILED_LARGE_BLOCK = 256

FULL = {
    "sweep": {"B": 1, "H": 8, "head_dim": 64,
              "T": [128, 256, 512, 1024, 2048, 4096, 8192],
              "seconds_per_point": 8.0, "min_repeats": 3, "max_repeats": 15},
    "mha": {"B": 8, "T": 512, "d_model": 512, "H": 8, "repeats": 15},
    "matmul_n": 2048,
    "naive_max_gib": 8.0,
}
QUICK = {
    "sweep": {"B": 1, "H": 2, "head_dim": 16, "T": [64, 256],
              "seconds_per_point": 0.05, "min_repeats": 2, "max_repeats": 3},
    "mha": {"B": 2, "T": 32, "d_model": 32, "H": 2, "repeats": 3},
    "matmul_n": 128,
    "naive_max_gib": 8.0,
}

METHODS = {
    "naive": "snippets.attention.scaled_dot_product_attention(q, k, v, "
             "is_causal=c): the (T, T) weights are built and returned",
    "sdpa": "torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=c)",
    "tiled": f"snippets.efficient.tiled_attention(q, k, v, "
             f"block_size={TILED_DEFAULT_BLOCK}, is_causal=c) (the default block)",
    "tiled_block_256": f"snippets.efficient.tiled_attention(q, k, v, "
                       f"block_size={TILED_LARGE_BLOCK}, is_causal=c)",
    "multihead": "snippets.multi_head.MultiHeadAttention(d_model, H)(x, is_causal=c, "
                 "need_weights=False), eval mode; includes the projections",
    "torch_mha": "torch.nn.MultiheadAttention(d_model, H, batch_first=True)(x, x, x, "
                 "need_weights=False) or, causal, (x, x, x, attn_mask="
                 "torch.ones(T, T, dtype=torch.bool).triu(1), is_causal=True, "
                 "need_weights=False), eval mode; includes the projections",
}
MODES = {"full": False, "causal": True}
