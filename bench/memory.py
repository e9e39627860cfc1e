"""Peak memory of each case, measured in a worker process.

``run_memory_worker`` starts ``python -m bench.memory``, which reads the cases as JSON
on stdin, runs each once and prints their peaks as JSON: a process of its own, so
that what the timings allocated is not counted, and so that the allocator can be
set up for measuring (see ``MEMORY_METHOD``).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys

import torch

from bench.cases import make_case, make_modules
from bench.config import ROOT
from bench.timing import timed

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


def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)  # pragma: no cover


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
            [sys.executable, "-m", "bench.memory"], cwd=ROOT, env=env,
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


def main():
    """The worker: cases on stdin, their peaks on stdout, both as JSON."""
    print(json.dumps(memory_worker(json.loads(sys.stdin.read()))))


if __name__ == "__main__":
    main()
