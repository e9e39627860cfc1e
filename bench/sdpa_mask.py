"""``is_causal=True`` against an explicit causal mask in PyTorch's fused attention.

Run from the repository root: ``python -m bench.sdpa_mask`` writes
bench/sdpa_mask.json and prints a table. ``--quick`` uses a tiny T (a smoke test; its
numbers mean nothing); ``--out PATH`` writes elsewhere.

What is timed: ``torch.nn.functional.scaled_dot_product_attention(q, k, v, ...)`` for
one sequence of 8 heads of 64 at T = 2048, float32, on the CPU, given the causal mask
two ways: ``is_causal=True``, and ``attn_mask=`` a (T, T) boolean lower triangle
(True = may attend). Each is timed with the backend PyTorch picks by itself
(``default``) and with each CPU backend forced through
``torch.nn.attention.sdpa_kernel`` (``flash`` = ``SDPBackend.FLASH_ATTENTION``,
``math`` = ``SDPBackend.MATH``), all in one process.

Method: ``torch.set_num_threads`` fixed (1 by default, ``--threads``); inputs made
once with a fixed seed; one warm-up call per case; then the cases take turns
(round robin) for ``--repeats`` rounds, so load from other processes on a shared
machine hits all of them alike; ``time.perf_counter`` around one call under
``torch.inference_mode()``; the median of each case's times is kept, with every
time. The ratios are explicit-mask median / ``is_causal`` median; because load from
other processes comes and goes, the median of the per-round ratios (the two variants
of one round ran back to back) is kept too. The run records
the torch version, CPU, threads and date, and checks that the two variants give the
same output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.report import machine_info  # CPU, torch version, threads, date: one recipe

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "sdpa_mask.json"
COMMAND = "python -m bench.sdpa_mask"

FULL = {"B": 1, "H": 8, "T": 2048, "head_dim": 64, "repeats": 31, "threads": 1}
QUICK = {"B": 1, "H": 2, "T": 64, "head_dim": 16, "repeats": 3, "threads": 1}
BACKENDS = {"default": None, "flash": SDPBackend.FLASH_ATTENTION,
            "math": SDPBackend.MATH}
VARIANTS = ("is_causal", "mask")


def make_inputs(cfg, seed=0):
    """q, k, v of shape (B, H, T, head_dim) and the (T, T) may-attend lower triangle."""
    generator = torch.Generator().manual_seed(seed)
    shape = (cfg["B"], cfg["H"], cfg["T"], cfg["head_dim"])
    q, k, v = (torch.randn(shape, generator=generator) for _ in range(3))
    mask = torch.ones(cfg["T"], cfg["T"], dtype=torch.bool).tril()  # True: may attend
    return q, k, v, mask


def make_call(variant, backend, q, k, v, mask):
    """A no-argument function that runs one case."""
    kwargs = {"is_causal": True} if variant == "is_causal" else {"attn_mask": mask}

    def call():
        if backend is None:
            return F.scaled_dot_product_attention(q, k, v, **kwargs)
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, **kwargs)

    return call


def default_backend(variant, q, k, v, mask):
    """The backend PyTorch's dispatcher picks for a case, by name. Read from the
    private ``torch._fused_sdp_choice``, the function the dispatcher itself calls;
    None if a later torch no longer has it."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:  # pragma: no cover - depends on the torch version
        return None
    kwargs = {"is_causal": True} if variant == "is_causal" else {"attn_mask": mask}
    return SDPBackend(choose(q, k, v, **kwargs)).name


def timed(fn):
    with torch.inference_mode():
        start = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - start
    del out
    return elapsed


def measure(cfg, log=print):
    """Every (backend, variant) case, round robin. Returns the "results" mapping."""
    q, k, v, mask = make_inputs(cfg)
    calls = {(b, var): make_call(var, backend, q, k, v, mask)
             for b, backend in BACKENDS.items() for var in VARIANTS}
    with torch.inference_mode():
        outputs = {case: call() for case, call in calls.items()}  # also the warm-up
    reference = outputs["math", "is_causal"]
    agree = {f"{b}/{var}": bool(torch.allclose(out, reference, atol=1e-5))
             for (b, var), out in outputs.items()}
    del outputs
    times = {case: [] for case in calls}
    for rnd in range(cfg["repeats"]):
        for case, call in calls.items():
            times[case].append(timed(call))
        log(f"round {rnd + 1}/{cfg['repeats']} done")
    results = {}
    for b in BACKENDS:
        entry = {}
        for var in VARIANTS:
            entry[var] = {"median_s": statistics.median(times[b, var]),
                          "times_s": times[b, var]}
        if b == "default":
            entry["picks"] = {var: default_backend(var, q, k, v, mask)
                              for var in VARIANTS}
        entry["ratio_mask_over_is_causal"] = (
            entry["mask"]["median_s"] / entry["is_causal"]["median_s"])
        # the two variants of one round ran back to back, under the same load
        entry["median_round_ratio"] = statistics.median(
            m / c for m, c in zip(times[b, "mask"], times[b, "is_causal"]))
        results[b] = entry
    return results, agree


def run(cfg, quick, log=print):
    torch.set_num_threads(cfg["threads"])
    started = time.perf_counter()
    machine = machine_info(COMMAND + (" --quick" if quick else ""))
    results, agree = measure(cfg, log)
    machine["load_average_at_end"] = list(os.getloadavg())
    machine["seconds"] = round(time.perf_counter() - started, 1)
    return {"quick": quick, "machine": machine, "config": cfg, "dtype": "float32",
            "outputs_agree": agree, "results": results}


def table(data):
    lines = [f"T = {data['config']['T']}, {data['config']['threads']} thread(s), "
             f"torch {data['machine']['torch_version']}",
             f"{'backend':<8} {'is_causal (ms)':>15} {'mask (ms)':>10} {'mask / is_causal':>17}"]
    for b, entry in data["results"].items():
        lines.append(f"{b:<8} {entry['is_causal']['median_s'] * 1e3:15.1f} "
                     f"{entry['mask']['median_s'] * 1e3:10.1f} "
                     f"{entry['ratio_mask_over_is_causal']:17.2f}")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON to write")
    parser.add_argument("--repeats", type=int, help="rounds of timing (default 31)")
    parser.add_argument("--threads", type=int, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    for name in ("repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be a positive integer, got {value}")
    return args


def main(argv=None, log=print):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = dict(QUICK if args.quick else FULL)
    for name in ("repeats", "threads"):
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    data = run(cfg, args.quick, log)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    log(table(data))
    log(f"wrote {args.out}")
    return data


if __name__ == "__main__":
    main()
