"""docs/efficient.md: every number its prose and tables state is the number that
bench/results.json (the committed ``make bench`` run) or snippets/efficient.py gives.

The page's code blocks never read results.json; the benchmark numbers are prose and
tables, and these tests hold them to the file, so re-running ``make bench`` without
updating the page fails here."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from bench.run import ROOT
from snippets.efficient import KVCache, tiled_attention
from tests.harness import python_fences
from tests.pages import numbers, prose, read_page, section, tables

PAGE = read_page("efficient.md")
DATA = json.loads((ROOT / "bench" / "results.json").read_text())
SWEEP = DATA["sweep"]["results"]
CONFIG = DATA["sweep"]["config"]
T_MAX = str(CONFIG["T"][-1])
MIB = 2**20
OPS = {"<": "<", "<=": "≤", ">=": "≥"}


def flat(text: str) -> str:
    return " ".join(prose(text).split())


FLAT = flat(PAGE)


def ms(method, mode="full", t=T_MAX):
    return SWEEP[method][mode][t]["median_s"] * 1e3


def mib(method, mode="full", t=T_MAX):
    return SWEEP[method][mode][t]["peak_extra_bytes"] / MIB


def target(name):
    (found,) = [t for t in DATA["targets"] if t["name"] == name]
    return found


def find_table(header_start):
    found = [t for t in tables(PAGE) if t[0][0] == header_start]
    assert len(found) == 1, f"one table whose first header is {header_start!r}"
    return found[0]


def prose_numbers(text):
    """Numbers a reader sees in running text: no tables, inline code or math."""
    text = "\n".join(line for line in prose(text).splitlines()
                     if not line.strip().startswith("|"))
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", text, flags=re.S)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    return numbers(text)


# ---- the cost of the score matrix ---------------------------------------------------


def test_naive_table_is_the_sweep():
    rows = find_table("T")[1:]
    ts = CONFIG["T"]
    assert [int(r[0]) for r in rows] == ts
    prev = None
    for row, t in zip(rows, map(str, ts)):
        time_ms, memory = ms("naive", t=t), mib("naive", t=t)
        assert row[1] == f"{time_ms:.1f}"
        assert row[3] == f"{memory:.1f}"
        if prev is None:
            assert row[2] == row[4] == "—"
        else:
            assert row[2] == f"{time_ms / prev[0]:.2f}×"
            assert row[4] == f"{memory / prev[1]:.2f}×"
        prev = time_ms, memory


def test_naive_growth_in_the_prose():
    ts = list(map(str, CONFIG["T"]))
    time_growth = [ms("naive", t=b) / ms("naive", t=a) for a, b in zip(ts, ts[1:])]
    memory_growth = [mib("naive", t=b) / mib("naive", t=a) for a, b in zip(ts, ts[1:])]
    # "almost exactly four times per doubling" once the fixed costs are small
    assert all(3.75 < g < 4.25 for g in memory_growth[1:])
    assert (f"Time grows by {min(time_growth):.2f}× to {max(time_growth):.2f}× per "
            "doubling") in FLAT
    assert (f"at T = {T_MAX} the naive version needed {mib('naive'):.1f} MiB, about "
            f"{mib('naive') / 1024:.1f} GiB") in FLAT
    # two (1, 8, T, T) float32 tensors: the scores and the weights it returns
    two = 2 * CONFIG["H"] * int(T_MAX) ** 2 * 4 / MIB
    assert 1 < mib("naive") / two < 1.01


# ---- tiled attention ------------------------------------------------------------------


def test_tiled_demo_sizes_in_the_prose():
    m = re.search(r"B, H, T, d = 1, 2, (\d+), 16 .*\n.*\n(?:.*\n)+?.*block_size=(\d+)",
                  PAGE)
    t, block = int(m.group(1)), int(m.group(2))
    assert t % block  # the point of the example: a partial last block
    words = {4: "four"}
    assert (f"(T = {t} with blocks of {block}: {words[t // block]} full blocks and "
            f"one of {t % block})") in FLAT


def test_tile_size_and_memory_in_the_prose():
    block = inspect.signature(tiled_attention).parameters["block_size"].default
    assert block == 128 and "tiled" in DATA["sweep"]["methods"]
    assert f"block_size={block}" in DATA["sweep"]["methods"]["tiled"]
    tile_kib = CONFIG["H"] * block * block * 4 / 2**10
    assert (f"{tile_kib:.0f} KiB for {CONFIG['H']} heads at the default block of "
            f"{block}") in FLAT
    output_mib = CONFIG["B"] * CONFIG["H"] * int(T_MAX) * CONFIG["head_dim"] * 4 / MIB
    text = flat(section(PAGE, "Memory: T times the block, not T squared"))
    assert (f"at T = {T_MAX} the tiled version's peak extra memory was "
            f"{mib('tiled'):.1f} MiB against the naive version's {mib('naive'):.1f} MiB, "
            f"{mib('naive') / mib('tiled'):.0f} times less; {output_mib:.1f} MiB of "
            f"those {mib('tiled'):.1f} MiB are the output itself. torch's fused SDPA "
            f"needed {mib('sdpa'):.1f} MiB.") in text


def test_kv_cache_capacity_in_the_prose():
    m = re.search(r"B, H, T, d = 1, 2, (\d+), 8\n.*\ncache = KVCache\(capacity=(\d+)\)",
                  PAGE)
    steps, capacity = int(m.group(1)), int(m.group(2))
    cache = KVCache(capacity=capacity)
    import torch

    seen = []
    for _ in range(steps):
        cache.append(torch.zeros(1, 2, 1, 8), torch.zeros(1, 2, 1, 8))
        seen.append(cache.capacity)
    grows_at = seen.index(2 * capacity) + 1  # the token count when it doubled
    ordinal = {5: "fifth"}[grows_at]
    assert (f"Decoding {['zero', 'one', 'two', 'three', 'four', 'five', 'six'][steps]} "
            f"tokens one by one") in FLAT
    assert (f"the capacity starts at {capacity} and doubles to {2 * capacity} when the "
            f"{ordinal} token arrives") in FLAT


def test_check_yourself_numbers():
    text = flat(section(PAGE, "Check yourself"))
    t, heads, block = 16384, 8, 128
    assert f"at T = {t} with {heads} heads" in text
    assert f"**{heads * t * t * 4 // 2**30} GiB**" in text
    assert f"**{heads * block * block * 4 // 2**10} KiB**" in text
    assert f"**{t * t // (block * block)}** times bigger" in text


# ---- the benchmark ---------------------------------------------------------------------


def test_provenance_is_the_recorded_run():
    mc = DATA["machine"]
    assert not DATA["quick"]
    assert mc["command"] == "python -m bench.run"
    text = flat(section(PAGE, "Where the numbers come from"))
    others = max(v["others_cpu_share_during"]
                 for by_t in DATA["sweep"]["noise"].values() for v in by_t.values())
    assert (f"the command `{mc['command']}`, a {mc['cpu_model']} CPU with "
            f"{mc['logical_cores']} logical cores ({mc['torch_threads']} torch threads), "
            f"torch {mc['torch_version']}, Python {mc['python_version']}, on "
            f"{mc['date_utc'][:10]} (UTC), {mc['seconds']} s in all") in text
    assert f"took at most {others:.1%} of its CPU time" in text
    assert "$ make bench" in PAGE
    assert (f"from T = {CONFIG['T'][0]} to T = {T_MAX}" in text
            and f"one sequence of {CONFIG['H']} heads of {CONFIG['head_dim']}" in text)


def test_figures_are_shown_with_alt_text():
    for name in ("bench-time", "bench-memory"):
        m = re.search(rf"!\[([^\]]+)\]\(figures/{name}\.svg\)", PAGE)
        assert m and len(m.group(1)) > 60, name


def test_t_max_table_is_the_sweep():
    rows = find_table("method")[1:]
    assert [r[0].strip("`") for r in rows] == list(SWEEP)
    for row in rows:
        method = row[0].strip("`")
        assert row[1:] == [f"{ms(method):.1f}", f"{mib(method):.1f}",
                           f"{ms(method, 'causal'):.1f}", f"{mib(method, 'causal'):.1f}"]


def test_targets_table_is_every_target_of_the_run():
    rows = find_table("target")[1:]
    assert [r[0].strip("`") for r in rows] == [t["name"] for t in DATA["targets"]]
    for row, t in zip(rows, DATA["targets"]):
        assert row[1] == t["description"]
        assert row[2] == f"{t['ratio']:.3f}"
        assert row[3] == f"{OPS[t['op']]} {t['threshold']:g}"
        assert row[4] == ("pass" if t["passed"] else "**FAIL**")


def test_the_failed_target_is_said_plainly():
    failed = [t for t in DATA["targets"] if not t["passed"]]
    assert [t["name"] for t in failed] == ["multihead_vs_torch_no_mask"]
    (t,) = failed
    m = re.search(r'^!!! warning "One target failed in this run.*?(?=^\S)', PAGE,
                  re.M | re.S)
    text = " ".join(m.group(0).split())
    cfg = DATA["mha"]["config"]
    eff = target("multihead_matmul_efficiency")
    assert (f"at most {t['threshold']:g} of the time of `torch.nn.MultiheadAttention` "
            f"(B = {cfg['B']}, T = {cfg['T']}, d_model = {cfg['d_model']}, {cfg['H']} "
            "heads, no mask)") in text
    assert f"In the committed run it took {t['ratio']:.3f}: **FAIL**" in text
    assert (f"ran at {eff['ratio']:.3f} of the machine's matmul throughput "
            f"({DATA['mha']['achieved_gflops']:.1f} against "
            f"{DATA['matmul']['gflops']:.1f} GFLOP/s)") in text
    assert "about a sixth" in text and 1 / 7 < 1 - eff["ratio"] < 1 / 5
    assert "not recorded in `results.json`" in text
    assert "`MALLOC_MMAP_THRESHOLD_=1000000000`" in text


def test_causal_note():
    times = {k: v["median_s"] * 1e3 for k, v in DATA["mha"]["times"].items()}
    text = flat(section(PAGE, "The targets"))
    assert (f"our layer took {target('multihead_vs_torch_causal')['ratio']:.3f} of "
            "torch's time (pass)") in text
    assert target("multihead_vs_torch_causal")["passed"]
    slow = times["torch_mha_causal"] / times["torch_mha_no_mask"]
    assert slow > 1
    assert (f"took {times['torch_mha_causal']:.1f} ms, {slow:.2f} times its "
            f"{times['torch_mha_no_mask']:.1f} ms without a mask") in text
    assert (f"Ours took {times['multihead_causal']:.1f} ms causal against "
            f"{times['multihead_no_mask']:.1f} ms without a mask") in text


def test_tiled_against_naive_and_sdpa():
    text = flat(section(PAGE, "Why tiled attention is slower than torch's"))
    r = {n: target(f"tiled_vs_{n}")["ratio"]
         for n in ("naive_time_full", "naive_time_causal", "sdpa_time_full",
                   "sdpa_time_causal")}
    assert (f"At T = {T_MAX} `tiled_attention` took {r['naive_time_full']:.3f} of the "
            f"naive version's time without a mask and {r['naive_time_causal']:.3f} with "
            f"the causal mask") in text
    assert (f"but {r['sdpa_time_full']:.3f} and {r['sdpa_time_causal']:.3f} of torch's "
            "fused SDPA") in text
    block = 128
    tiles = (int(T_MAX) // block) ** 2
    assert f"{tiles} tiles of {block} × {block} at T = {T_MAX}" in text
    assert all(target(f"tiled_vs_sdpa_time_{m}")["passed"] for m in ("full", "causal"))
    assert "within 2×" in text and target("tiled_vs_sdpa_time_full")["threshold"] == 2


def test_block_256_against_128():
    text = flat(section(PAGE, "Why tiled attention is slower than torch's"))
    full = [ms("tiled_block_256", t=str(t)) / ms("tiled", t=str(t)) for t in CONFIG["T"]]
    causal = ms("tiled_block_256", "causal") / ms("tiled", "causal")
    assert (f"With blocks of 256 the tiled version took {full[-1]:.3f} of the time of "
            f"blocks of 128 at T = {T_MAX} without a mask and {causal:.3f} with the "
            f"causal mask, and between {min(full):.3f} and {max(full):.3f} at every T of "
            f"the sweep without a mask, for {mib('tiled_block_256'):.1f} MiB of peak "
            f"memory instead of {mib('tiled'):.1f} MiB") in text


def test_every_number_in_the_benchmark_prose_is_checked():
    """Catch-all: a number added to the benchmark's prose must be one the tests above
    derive from results.json (or a size from the run's configuration)."""
    cfg = DATA["mha"]["config"]
    known = {float(x) for x in [*CONFIG["T"], CONFIG["H"], CONFIG["head_dim"], 128, 256,
                                cfg["B"], cfg["T"], cfg["d_model"], cfg["H"], 2]}
    date = DATA["machine"]["date_utc"][:10]
    known |= {float(x) for x in re.findall(r"\d+", date)}
    times = {k: v["median_s"] * 1e3 for k, v in DATA["mha"]["times"].items()}
    known |= {round(v, 1) for v in times.values()}
    known.add(round(times["torch_mha_causal"] / times["torch_mha_no_mask"], 2))
    known |= {round(t["ratio"], 3) for t in DATA["targets"]}
    known |= {t["threshold"] for t in DATA["targets"]}
    known |= {round(DATA["mha"]["achieved_gflops"], 1), round(DATA["matmul"]["gflops"], 1)}
    known |= {DATA["machine"]["seconds"], DATA["machine"]["logical_cores"],
              DATA["machine"]["torch_threads"]}
    others = max(v["others_cpu_share_during"]
                 for by_t in DATA["sweep"]["noise"].values() for v in by_t.values())
    known.add(round(others * 100, 1))
    full = [ms("tiled_block_256", t=str(t)) / ms("tiled", t=str(t)) for t in CONFIG["T"]]
    known |= {round(min(full), 3), round(max(full), 3),
              round(ms("tiled_block_256", "causal") / ms("tiled", "causal"), 3)}
    known |= {round(mib(m), 1) for m in SWEEP}
    known.add((int(T_MAX) // 128) ** 2)
    # the memory figure's alt text: the linear-memory methods "stay below 100 MiB"
    assert max(mib(m) for m in ("sdpa", "tiled", "tiled_block_256", "multihead")) < 100
    assert "stay below 100 MiB" in PAGE and min(mib("naive"), mib("torch_mha")) > 1024
    known.add(100.0)
    unknown = [n for n in prose_numbers(section(PAGE, "The benchmark"))
               if n not in known and round(n, 3) not in known]
    assert not unknown, f"numbers in the benchmark prose no test checks: {unknown}"


def test_page_code_does_not_read_the_benchmark():
    for _, _, body in python_fences(PAGE):
        code = "".join(body)
        assert "results.json" not in code and "json" not in code


@pytest.mark.parametrize("needle", ["snippets/efficient.py:imports",
                                    "snippets/efficient.py:input-checks",
                                    "snippets/efficient.py:tiled-attention",
                                    "snippets/efficient.py:kv-cache",
                                    "snippets/efficient.py:decode-step",
                                    "snippets/efficient.py:grouped-query-attention"])
def test_every_section_is_included(needle):
    assert f'--8<-- "{needle}"' in PAGE
