"""The measurements: the attention sweep (time and memory of every method at every
T, full and causal), and MultiHeadAttention against torch.nn.MultiheadAttention with
the machine's matmul throughput alongside."""

from __future__ import annotations

import statistics

import torch

from bench.cases import make_case, make_modules, naive_skip_reason
from bench.config import METHODS, MODES
from bench.memory import run_memory_worker
from bench.timing import OthersLoad, round_robin, summary, timed, wait_for_quiet


def measure_sweep(cfg, naive_max_gib, budget, log):
    modules = make_modules(cfg["H"] * cfg["head_dim"], cfg["H"])
    results = {m: {mode: {} for mode in MODES} for m in METHODS}
    noise = {mode: {} for mode in MODES}
    memory_cases = []
    for t in cfg["T"]:
        skip = naive_skip_reason(cfg, t, naive_max_gib)
        for mode, causal in MODES.items():
            calls, kept = {}, []
            for method in METHODS:
                if method == "naive" and skip:
                    results[method][mode][str(t)] = {"skipped": skip}
                    continue
                inputs, fn = make_case(method, cfg, t, causal, modules)
                kept.append(inputs)
                calls[method] = fn
                memory_cases.append({"method": method, "T": t, "causal": causal})
            quiet, waited = wait_for_quiet(budget)
            with OthersLoad() as load:
                warm = {name: timed(fn) for name, fn in calls.items()}  # warm-up
                repeats = int(cfg["seconds_per_point"] / max(sum(warm.values()), 1e-9))
                repeats = min(max(repeats, cfg["min_repeats"]), cfg["max_repeats"])
                times = round_robin(calls, repeats)
            for method, ts in times.items():
                results[method][mode][str(t)] = {**summary(ts), "skipped": None}
            noise[mode][str(t)] = {"others_cpu_share_before": quiet, "waited_s": waited,
                                   "others_cpu_share_during": load.share}
            log(f"  T={t:>5} {mode:<6} {repeats} repeats, others used "
                f"{load.share} of the CPU: " + "  ".join(
                    f"{m} {statistics.median(ts) * 1e3:.1f} ms"
                    for m, ts in times.items()))
            del calls, kept
    log("  memory (worker process) ...")
    memory, method = run_memory_worker(cfg, memory_cases)
    for r in memory:
        mode = "causal" if r["causal"] else "full"
        results[r["method"]][mode][str(r["T"])]["peak_extra_bytes"] = (
            r["peak_extra_bytes"])
    return results, noise, method


def measure_mha_and_matmul(cfg, matmul_n, budget, log):
    b, t, d, h = cfg["B"], cfg["T"], cfg["d_model"], cfg["H"]
    ours, ref = make_modules(d, h)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, t, d, generator=g)  # (B, T, D)
    blocked = torch.ones(t, t, dtype=torch.bool).triu(1)  # torch: True = blocked
    a = torch.randn(matmul_n, matmul_n, generator=g)
    m = torch.randn(matmul_n, matmul_n, generator=g)
    calls = {
        "matmul": lambda: a @ m,
        "multihead_no_mask": lambda: ours(x, need_weights=False),
        "torch_mha_no_mask": lambda: ref(x, x, x, need_weights=False),
        "multihead_causal": lambda: ours(x, is_causal=True, need_weights=False),
        "torch_mha_causal": lambda: ref(x, x, x, attn_mask=blocked, is_causal=True,
                                        need_weights=False),
        "torch_mha_no_mask_need_weights_default": lambda: ref(x, x, x),
    }
    quiet, waited = wait_for_quiet(budget)
    with OthersLoad() as load:
        round_robin(calls, 1)  # warm-up
        times = round_robin(calls, cfg["repeats"])
    stats = {name: summary(ts) for name, ts in times.items()}
    matmul_flops = 2 * matmul_n**3
    matmul = {"n": matmul_n, "flops": matmul_flops, **stats.pop("matmul")}
    matmul["gflops"] = matmul_flops / matmul["median_s"] / 1e9
    flops = 8 * b * t * d * d + 4 * b * t * t * d
    mha = {
        "config": {"B": b, "T": t, "d_model": d, "H": h, "repeats": cfg["repeats"]},
        "calls": {
            "multihead_no_mask": "MultiHeadAttention.from_torch(ref).eval()"
                                 "(x, need_weights=False)",
            "torch_mha_no_mask": "ref(x, x, x, need_weights=False)",
            "multihead_causal": "ours(x, is_causal=True, need_weights=False)",
            "torch_mha_causal": "ref(x, x, x, attn_mask=torch.ones(T, T, "
                                "dtype=torch.bool).triu(1), is_causal=True, "
                                "need_weights=False)",
            "torch_mha_no_mask_need_weights_default":
                "ref(x, x, x) (need_weights=True, average_attn_weights=True): "
                "for information, not a target",
            "ref": "torch.nn.MultiheadAttention(d_model, H, batch_first=True).eval()",
            "context": "torch.inference_mode(); x = torch.randn(B, T, d_model)",
        },
        "flops": flops,
        "flops_formula": "8*B*T*d_model^2 + 4*B*T^2*d_model",
        "times": stats,
        "noise": {"others_cpu_share_before": quiet, "waited_s": waited,
                  "others_cpu_share_during": load.share},
    }
    mha["achieved_gflops"] = flops / stats["multihead_no_mask"]["median_s"] / 1e9
    log(f"  others used {load.share} of the CPU; matmul {matmul['gflops']:.1f} "
        "GFLOP/s; " + "  ".join(
        f"{k} {v['median_s'] * 1e3:.2f} ms" for k, v in stats.items()))
    return mha, matmul
