"""What the run records about the machine, and the table it prints."""

from __future__ import annotations

import datetime
import os
import platform

import torch

from bench.config import METHODS, MODES


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
