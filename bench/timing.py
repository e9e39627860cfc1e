"""Time calls on a shared machine: one call, the compared calls in turn, and how much
of the CPU other processes took meanwhile."""

from __future__ import annotations

import os
import statistics
import time

import torch

CORES = os.cpu_count() or 1
QUIET_SHARE = 0.10  # others may use 10% of the machine while we wait to start
TIME_METHOD = (
    "time.perf_counter around one call under torch.inference_mode(); one warm-up "
    "call per case, then the compared cases in turn (round robin) for the repeats; "
    "median_s = median of times_s"
)


def noise_method(max_wait):
    """How ``wait_for_quiet`` and ``OthersLoad`` deal with a shared machine."""
    return ("the machine is shared: before each group of timings the run waits "
            f"(at most {max_wait:g} s in all) until other processes use less "
            f"than {QUIET_SHARE:.0%} of the CPU, and others_cpu_share_during "
            "records the share of all cores' time other processes took while "
            "the group ran (from /proc/stat minus this process's CPU time)")


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
