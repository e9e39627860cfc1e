"""One case of the sweep: a method at one sequence length, with its inputs made and
kept alive, as a callable of no arguments."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import TILED_DEFAULT_BLOCK, TILED_LARGE_BLOCK
from snippets.attention import scaled_dot_product_attention as naive_attention
from snippets.efficient import tiled_attention
from snippets.multi_head import MultiHeadAttention


def _meminfo_bytes(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def naive_skip_reason(cfg, t, max_gib):
    """The naive version holds up to three (B, H, T, T) float32 tensors at once."""
    need = 3 * cfg["B"] * cfg["H"] * t * t * 4
    available = _meminfo_bytes("MemAvailable")
    limit = min(max_gib * 2**30, 0.6 * available) if available else max_gib * 2**30
    if need > limit:
        return (f"skipped: needs about {need / 2**30:.1f} GiB for 3 (B, H, T, T) "
                f"float32 tensors, limit {limit / 2**30:.1f} GiB")
    return None


def make_case(method, cfg, t, causal, modules, seed=0):
    """(inputs kept alive, callable) for one method at T = t."""
    g = torch.Generator().manual_seed(seed)
    b, h, hd = cfg["B"], cfg["H"], cfg["head_dim"]
    if method in ("multihead", "torch_mha"):
        x = torch.randn(b, t, h * hd, generator=g)  # (B, T, D)
        ours, ref = modules
        if method == "multihead":
            return (x,), lambda: ours(x, is_causal=causal, need_weights=False)
        if not causal:
            return (x,), lambda: ref(x, x, x, need_weights=False)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)  # True = blocked
        return (x, mask), lambda: ref(x, x, x, attn_mask=mask, is_causal=True,
                                      need_weights=False)
    q, k, v = (torch.randn(b, h, t, hd, generator=g) for _ in range(3))  # (B,H,T,hd)
    calls = {
        "naive": lambda: naive_attention(q, k, v, is_causal=causal),
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
        "tiled": lambda: tiled_attention(q, k, v, TILED_DEFAULT_BLOCK, causal),
        "tiled_block_256": lambda: tiled_attention(q, k, v, TILED_LARGE_BLOCK, causal),
    }
    return (q, k, v), calls[method]


def make_modules(d_model, heads, seed=0):
    """torch.nn.MultiheadAttention (batch_first, eval) and our copy of it."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = nn.MultiheadAttention(d_model, heads, batch_first=True).eval()
    return MultiHeadAttention.from_torch(ref).eval(), ref
