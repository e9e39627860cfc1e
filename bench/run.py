"""Time and memory of the site's attention code against PyTorch's, on the CPU.

Run from the repository root: ``python -m bench.run`` (``make bench``) writes
bench/results.json and prints a table. ``--quick`` uses tiny sizes (a smoke test of a
few seconds; its numbers mean nothing); ``--out PATH`` writes elsewhere.

What is measured, all in one run:

* ``matmul``: the machine's float32 matmul throughput, (n, n) @ (n, n), in GFLOP/s.
* ``sweep``: one attention layer for T = 128 .. 8192 tokens (B = 1, 8 heads of 64),
  without and with a causal mask: the naive from-scratch
  ``snippets.attention.scaled_dot_product_attention``,
  ``torch.nn.functional.scaled_dot_product_attention``,
  ``snippets.efficient.tiled_attention`` (its default block, 128, and 256), and the
  whole module, projections included: ``snippets.multi_head.MultiHeadAttention`` and
  ``torch.nn.MultiheadAttention``. Median time and peak memory beyond the inputs.
* ``mha``: MultiHeadAttention against torch.nn.MultiheadAttention at B = 8,
  T = 512, d_model = 512, 8 heads, with the matmul throughput measured alongside.
* ``targets``: every ratio the docs quote, with the stored times it is computed from
  (as JSON paths) and pass / fail. tests/test_bench.py recomputes them.

Time: ``time.perf_counter`` around one call under ``torch.inference_mode()``, after
one warm-up call per case; the cases being compared run in turn (round robin), so
load from other processes on a shared machine hits all of them alike; the median of
the repeats is kept. Before each group of timings the run waits (``--max-wait``)
for other processes to leave the CPU, and it records how much CPU they took while
the group ran (``noise``). Memory: see ``MEMORY_METHOD``.

A full run takes about three minutes on 2 cores; the naive version at T = 8192
needs about 6 GiB (it is skipped, and says so, where memory is short).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from snippets.attention import scaled_dot_product_attention as naive_attention
from snippets.efficient import tiled_attention
from snippets.multi_head import MultiHeadAttention

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

MEMORY_METHOD = (
    "Peak resident memory (RSS) of a separate worker process, beyond what it held "
    "just before the call: the inputs (q, k, v or x, and the causal mask for "
    "torch.nn.MultiheadAttention) and the module weights are made first, then the "
    "kernel's peak-RSS counter is reset (echo 5 > /proc/self/clear_refs), VmRSS is "
    "read, the case runs once under torch.inference_mode(), and VmHWM - VmRSS_before "
    "is recorded; the output counts. The worker runs with MALLOC_MMAP_THRESHOLD_=65536 "
    "(every block of 64 KiB or more is mmap-ed and returned to the OS when freed, so "
    "memory freed by one case is not silently reused by the next) and "
    "MKL_DISABLE_FAST_MM=1 (MKL frees its matmul buffers instead of pooling them); "
    "every method runs once at a tiny size first, so one-off library set-up is not "
    "charged to a case. Cases run from small to large T. Resolution: one 4 KiB page."
)
MEMORY_METHOD_FALLBACK = (
    "/proc/self/clear_refs is not available here, so every case ran in a fresh "
    "worker process and the peak is ru_maxrss (after the call) - VmRSS (before), "
    "with the same allocator settings as described for the usual method."
)


# ---------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------


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


def timed(fn):
    with torch.inference_mode():
        start = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - start
    del out
    return elapsed


def round_robin(calls, repeats):
    """Time the calls in turn, ``repeats`` times each (the caller warms them up)."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(timed(fn))
    return times


# ---------------------------------------------------------------------------
# A shared machine: how much of the CPU did other processes take?
# ---------------------------------------------------------------------------


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            jiffies = [int(x) for x in f.readline().split()[1:]]
    except OSError:  # pragma: no cover - not Linux
        return None
    idle = jiffies[3] + jiffies[4]  # idle + iowait; steal counts as busy
    own = os.times()
    return ((sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK"),
            own.user + own.system)


class OthersLoad:
    """``with OthersLoad() as load:`` -> ``load.share``: the fraction of the machine's
    CPU time (all cores) that other processes used meanwhile, 0 .. 1."""

    def __enter__(self):
        self.start, self.wall = _cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        end, wall = _cpu_seconds(), time.perf_counter() - self.wall
        if self.start is None or end is None or wall <= 0:  # pragma: no cover
            self.share = None
            return
        machine, own = (e - s for e, s in zip(end, self.start))
        self.share = round(min(1.0, max(0.0, (machine - own) / (wall * CORES))), 3)


CORES = os.cpu_count() or 1
QUIET_SHARE = 0.10  # others may use 10% of the machine while we wait to start


def wait_for_quiet(budget):
    """Sleep until other processes use < QUIET_SHARE of the CPU for half a second,
    or ``budget["left_s"]`` runs out. Returns (others' share then, seconds waited)."""
    waited = 0.0
    if budget["left_s"] <= 0:  # --max-wait 0 (and --quick): do not even look
        return None, waited
    while True:
        with OthersLoad() as load:
            time.sleep(0.5)
        if load.share is None or load.share < QUIET_SHARE or budget["left_s"] <= 0:
            return load.share, round(waited, 1)
        time.sleep(1.0)
        waited += 1.5
        budget["left_s"] -= 1.5


def summary(times):
    return {"median_s": statistics.median(times), "times_s": times}


# ---------------------------------------------------------------------------
# Memory: a worker process
# ---------------------------------------------------------------------------


def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)  # pragma: no cover


def _meminfo_bytes(key):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_worker(spec):
    """Run in a fresh process: peak extra RSS (bytes) of every case in ``spec``."""
    cfg, cases = spec["cfg"], spec["cases"]
    modules = make_modules(cfg["H"] * cfg["head_dim"], cfg["H"])
    for method in sorted({c["method"] for c in cases}):  # one-off library set-up
        for causal in (False, True):
            timed(make_case(method, cfg, 8, causal, modules)[1])
    gc.collect()
    gc.freeze()  # later gc.collect() calls skip the long-lived objects: fast
    results = []
    for case in cases:
        inputs, fn = make_case(case["method"], cfg, case["T"], case["causal"], modules)
        gc.collect()
        resettable = _reset_peak()
        before = _proc_status_kib("VmRSS") * 1024
        timed(fn)
        if resettable:
            peak = _proc_status_kib("VmHWM") * 1024
        else:  # fresh process per case: the lifetime peak is this call's
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        results.append({**case, "peak_extra_bytes": max(0, peak - before),
                        "rss_before_bytes": before, "resettable": resettable})
        del inputs, fn
    return results


def run_memory_worker(cfg, cases):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MKL_DISABLE_FAST_MM="1",
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    spec = {"cfg": cfg, "cases": cases}

    def launch(spec):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.run", "--memory-worker"], cwd=ROOT, env=env,
            input=json.dumps(spec), capture_output=True, text=True, check=False,
        )
        if proc.returncode:
            raise RuntimeError(f"memory worker failed:\n{proc.stderr}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    results = launch(spec)
    if all(r["resettable"] for r in results):
        return results, MEMORY_METHOD
    # No resettable peak counter: one fresh process per case instead.
    return [launch({"cfg": cfg, "cases": [c]})[0] for c in cases], (
        MEMORY_METHOD + " " + MEMORY_METHOD_FALLBACK)


# ---------------------------------------------------------------------------
# The three measurements
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


def resolve(data, path):
    for key in path:
        data = data[key]
    return data


COMPARE = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">=": lambda a, b: a >= b}


def target(data, name, description, numerator, denominator, op, threshold):
    """ratio = the value at JSON path ``numerator`` / the one at ``denominator``.

    A zero denominator (a memory peak below one page, in --quick runs) gives
    ratio None and a failed target."""
    bottom = resolve(data, denominator)
    ratio = resolve(data, numerator) / bottom if bottom else None
    return {"name": name, "description": description, "numerator": numerator,
            "denominator": denominator, "ratio": ratio, "op": op,
            "threshold": threshold,
            "passed": ratio is not None and COMPARE[op](ratio, threshold)}


def make_targets(data):
    mha_time = ["mha", "times"]
    targets = [
        target(data, "multihead_vs_torch_no_mask",
               "MultiHeadAttention / nn.MultiheadAttention time, no mask",
               [*mha_time, "multihead_no_mask", "median_s"],
               [*mha_time, "torch_mha_no_mask", "median_s"], "<=", 0.80),
        target(data, "multihead_vs_torch_causal",
               "MultiHeadAttention / nn.MultiheadAttention time, causal",
               [*mha_time, "multihead_causal", "median_s"],
               [*mha_time, "torch_mha_causal", "median_s"], "<=", 0.65),
        target(data, "multihead_matmul_efficiency",
               "MultiHeadAttention GFLOP/s (no mask) / matmul GFLOP/s",
               ["mha", "achieved_gflops"], ["matmul", "gflops"], ">=", 0.75),
    ]
    t = str(data["sweep"]["config"]["T"][-1])
    res = ["sweep", "results"]
    for method in ("tiled", "tiled_block_256"):
        for mode in MODES:
            if data["sweep"]["results"]["naive"][mode][t].get("skipped"):
                continue
            label = f"{method}, T={t}, {mode}"
            targets += [
                target(data, f"{method}_vs_naive_time_{mode}",
                       f"{label}: time / naive time",
                       [*res, method, mode, t, "median_s"],
                       [*res, "naive", mode, t, "median_s"], "<", 1.0),
                target(data, f"{method}_vs_sdpa_time_{mode}",
                       f"{label}: time / torch SDPA time",
                       [*res, method, mode, t, "median_s"],
                       [*res, "sdpa", mode, t, "median_s"], "<=", 2.0),
                target(data, f"{method}_vs_naive_memory_{mode}",
                       f"{label}: peak extra memory / naive's",
                       [*res, method, mode, t, "peak_extra_bytes"],
                       [*res, "naive", mode, t, "peak_extra_bytes"], "<=", 1 / 16),
            ]
    return targets


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def machine_info(command):
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:  # pragma: no cover - not Linux
        pass
    return {
        "platform": platform.platform(),
        "cpu_model": cpu,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "command": command,
        "load_average_at_start": list(os.getloadavg()),
    }


def table(data):
    lines = []
    sweep = data["sweep"]
    for mode in MODES:
        lines.append(f"\n{mode}: median time in ms / peak extra memory in MiB; "
                     "others: share of the CPU other processes used meanwhile")
        lines.append(f"{'T':>6}" + "".join(f"{m:>18}" for m in METHODS)
                     + f"{'others':>8}")
        for t in sweep["config"]["T"]:
            row = f"{t:>6}"
            for m in METHODS:
                r = sweep["results"][m][mode][str(t)]
                cell = "skipped" if r.get("skipped") else (
                    f"{r['median_s'] * 1e3:.1f} / {r['peak_extra_bytes'] / 2**20:.1f}")
                row += f"{cell:>18}"
            others = sweep["noise"][mode][str(t)]["others_cpu_share_during"]
            lines.append(row + f"{others!s:>8}")
    mha = data["mha"]
    lines.append(f"\nmatmul: {data['matmul']['gflops']:.1f} GFLOP/s; "
                 f"MultiHeadAttention (no mask): {mha['achieved_gflops']:.1f} GFLOP/s")
    lines.append("\ntarget                                      ratio   need    result")
    for tg in data["targets"]:
        verdict = "pass" if tg["passed"] else "FAIL"
        ratio = "n/a" if tg["ratio"] is None else f"{tg['ratio']:.3f}"
        lines.append(f"{tg['name']:<42}{ratio:>7}  {tg['op']:>2} "
                     f"{tg['threshold']:<6.4g} {verdict}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: a smoke test, the numbers mean nothing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the JSON (default {DEFAULT_OUT})")
    parser.add_argument("--max-wait", type=float, default=None, metavar="SECONDS",
                        help="at most this long in all, wait for other processes to "
                             "leave the CPU before each measurement (default 300; "
                             "0 with --quick)")
    parser.add_argument("--memory-worker", action="store_true",
                        help=argparse.SUPPRESS)  # internal: reads a spec on stdin
    return parser.parse_args(argv)


def main(argv=None, log=print):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.memory_worker:
        print(json.dumps(memory_worker(json.loads(sys.stdin.read()))))
        return None
    cfg = QUICK if args.quick else FULL
    started = time.perf_counter()
    data = {"schema_version": SCHEMA_VERSION, "quick": args.quick,
            "machine": machine_info(" ".join(["python -m bench.run", *argv]))}
    max_wait = args.max_wait if args.max_wait is not None else (
        0.0 if args.quick else 300.0)
    budget = {"left_s": max_wait}
    log("matmul throughput and MultiHeadAttention vs torch.nn.MultiheadAttention ...")
    data["mha"], data["matmul"] = measure_mha_and_matmul(cfg["mha"], cfg["matmul_n"],
                                                         budget, log)
    log("attention sweep ...")
    results, noise, memory_method = measure_sweep(cfg["sweep"], cfg["naive_max_gib"],
                                                  budget, log)
    data["sweep"] = {
        "config": {**cfg["sweep"],
                   "d_model": cfg["sweep"]["H"] * cfg["sweep"]["head_dim"]},
        "methods": METHODS,
        "results": results,
        "noise": noise,
    }
    data["method"] = {
        "time": "time.perf_counter around one call under torch.inference_mode(); "
                "one warm-up call per case, then the compared cases in turn (round "
                "robin) for the repeats; median_s = median of times_s",
        "noise": "the machine is shared: before each group of timings the run waits "
                 f"(at most {max_wait:g} s in all) until other processes use less "
                 f"than {QUIET_SHARE:.0%} of the CPU, and others_cpu_share_during "
                 "records the share of all cores' time other processes took while "
                 "the group ran (from /proc/stat minus this process's CPU time)",
        "memory": memory_method,
        "peak_extra_bytes": "bytes beyond the inputs and module weights; the output "
                            "counts",
    }
    data["targets"] = make_targets(data)
    data["machine"]["load_average_at_end"] = list(os.getloadavg())
    data["machine"]["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    log(table(data))
    log(f"\nwrote {args.out} in {data['machine']['seconds']} s")
    return data


if __name__ == "__main__":
    main()
