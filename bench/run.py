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
the group ran (``noise``). Memory: see ``bench/memory.py``.

A full run takes about three minutes on 2 cores; the naive version at T = 8192
needs about 6 GiB (it is skipped, and says so, where memory is short).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.config import DEFAULT_OUT, FULL, METHODS, QUICK, SCHEMA_VERSION
from bench.measure import measure_mha_and_matmul, measure_sweep
from bench.report import machine_info, table
from bench.targets import make_targets
from bench.timing import TIME_METHOD, noise_method


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
    return parser.parse_args(argv)


def main(argv=None, log=print):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
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
        "time": TIME_METHOD,
        "noise": noise_method(max_wait),
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
