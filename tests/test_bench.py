"""Tests for bench/ (``python -m bench.run``) and the committed bench/results.json.

No timing assertions: the numbers depend on the machine. What is checked is that the
JSON has its schema, that every stored median is the median of the stored repeats,
and that every ratio the docs may quote is the one its stored inputs give, so the
page cannot show a ratio that the stored numbers do not support.
"""

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from bench import config, run
from bench.targets import COMPARE, resolve

RESULTS = config.DEFAULT_OUT

TOP_KEYS = {"schema_version", "quick", "machine", "mha", "matmul", "sweep", "method",
            "targets"}
MACHINE_KEYS = {"platform", "cpu_model", "logical_cores", "torch_threads",
                "torch_version", "python_version", "date_utc", "command",
                "load_average_at_start", "load_average_at_end", "seconds"}
MHA_TIMES = {"multihead_no_mask", "torch_mha_no_mask", "multihead_causal",
             "torch_mha_causal", "torch_mha_no_mask_need_weights_default"}
TARGETS = {"multihead_vs_torch_no_mask", "multihead_vs_torch_causal",
           "multihead_matmul_efficiency"}
TILED_TARGETS = {f"{method}_vs_{what}_{mode}"
                 for method in ("tiled", "tiled_block_256")
                 for what in ("naive_time", "sdpa_time", "naive_memory")
                 for mode in ("full", "causal")}


def isclose(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)


def check_timing(entry):
    assert entry["times_s"], entry
    assert all(t > 0 for t in entry["times_s"]), entry
    assert isclose(entry["median_s"], statistics.median(entry["times_s"]))


def check_results(data):
    """Schema and internal consistency of one results file."""
    assert set(data) == TOP_KEYS
    assert data["schema_version"] == config.SCHEMA_VERSION
    assert MACHINE_KEYS <= set(data["machine"])
    assert data["machine"]["command"].startswith("python -m bench.run")
    assert set(data["method"]) >= {"time", "noise", "memory", "peak_extra_bytes"}

    matmul = data["matmul"]
    check_timing(matmul)
    assert matmul["flops"] == 2 * matmul["n"] ** 3
    assert isclose(matmul["gflops"], matmul["flops"] / matmul["median_s"] / 1e9)

    mha = data["mha"]
    cfg = mha["config"]
    assert set(mha["times"]) == MHA_TIMES
    assert set(mha["calls"]) >= MHA_TIMES
    for entry in mha["times"].values():
        check_timing(entry)
        assert len(entry["times_s"]) == cfg["repeats"]
    b, t, d = cfg["B"], cfg["T"], cfg["d_model"]
    assert mha["flops"] == 8 * b * t * d * d + 4 * b * t * t * d
    assert isclose(mha["achieved_gflops"],
                   mha["flops"] / mha["times"]["multihead_no_mask"]["median_s"] / 1e9)

    sweep = data["sweep"]
    ts = sweep["config"]["T"]
    assert ts == sorted(ts) and all(t & (t - 1) == 0 for t in ts)  # powers of two
    assert set(sweep["methods"]) == set(sweep["results"]) == set(config.METHODS)
    for method, modes in sweep["results"].items():
        assert set(modes) == {"full", "causal"}
        for mode, points in modes.items():
            assert set(points) == {str(t) for t in ts}, (method, mode)
            for point in points.values():
                if point.get("skipped"):
                    assert method == "naive" and point["skipped"].startswith("skipped")
                    continue
                check_timing(point)
                assert isinstance(point["peak_extra_bytes"], int)
                assert point["peak_extra_bytes"] >= 0

    noise = [mha["noise"], *(sweep["noise"][mode][str(t)]
                             for mode in ("full", "causal") for t in ts)]
    for entry in noise:
        assert set(entry) == {"others_cpu_share_before", "waited_s",
                              "others_cpu_share_during"}
        share = entry["others_cpu_share_during"]
        assert share is None or 0 <= share <= 1

    names = {tg["name"] for tg in data["targets"]}
    assert TARGETS <= names <= TARGETS | TILED_TARGETS
    for tg in data["targets"]:
        top = resolve(data, tg["numerator"])
        bottom = resolve(data, tg["denominator"])
        if bottom == 0:
            assert tg["ratio"] is None and tg["passed"] is False
            continue
        assert isclose(tg["ratio"], top / bottom), tg["name"]
        assert tg["passed"] == COMPARE[tg["op"]](tg["ratio"], tg["threshold"])
    return data


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_run_writes_a_consistent_json(tmp_path, one_thread):
    out = tmp_path / "results.json"
    lines = []
    returned = run.main(["--quick", "--out", str(out)], log=lines.append)
    data = check_results(json.loads(out.read_text()))
    assert data == json.loads(json.dumps(returned))  # what was written was returned
    assert data["quick"] is True
    assert data["machine"]["torch_threads"] == 1
    assert data["machine"]["command"] == f"python -m bench.run --quick --out {out}"
    assert data["sweep"]["config"]["T"] == config.QUICK["sweep"]["T"]
    assert {tg["name"] for tg in data["targets"]} == TARGETS | TILED_TARGETS
    # The memory method measures something real: at the largest T the naive version
    # holds at least its (B, H, T, T) float32 weights, which it returns.
    cfg = data["sweep"]["config"]
    t = cfg["T"][-1]
    naive = data["sweep"]["results"]["naive"]["full"][str(t)]
    assert naive["peak_extra_bytes"] >= cfg["B"] * cfg["H"] * t * t * 4
    assert lines[-1].strip().startswith("wrote ") and "target" in lines[-2]  # table


def test_committed_results_are_consistent():
    data = check_results(json.loads(RESULTS.read_text()))
    assert data["quick"] is False
    assert data["sweep"]["config"]["T"] == [128, 256, 512, 1024, 2048, 4096, 8192]
    cfg = data["mha"]["config"]
    assert (cfg["B"], cfg["T"], cfg["d_model"], cfg["H"]) == (8, 512, 512, 8)
    names = {tg["name"] for tg in data["targets"]}
    assert TARGETS <= names
    assert any(name.startswith("tiled") for name in names)  # naive ran at T = 8192


def test_consistency_check_catches_a_doctored_ratio():
    """The consistency check can fail: a doctored ratio is noticed."""
    data = json.loads(RESULTS.read_text())
    data["targets"][0]["ratio"] *= 1.01
    with pytest.raises(AssertionError):
        check_results(data)


def test_memory_worker_is_its_own_command():
    """``python -m bench.memory`` reads cases on stdin and prints their peaks: the
    naive version at T = 64 holds at least its (B, H, T, T) float32 weights."""
    import subprocess
    import sys

    cfg = {**config.QUICK["sweep"], "T": [64]}
    cases = [{"method": "naive", "T": 64, "causal": False},
             {"method": "sdpa", "T": 64, "causal": True}]
    proc = subprocess.run([sys.executable, "-m", "bench.memory"], cwd=config.ROOT,
                          input=json.dumps({"cfg": cfg, "cases": cases}),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [{k: r[k] for k in ("method", "T", "causal")} for r in results] == cases
    assert results[0]["peak_extra_bytes"] >= cfg["B"] * cfg["H"] * 64 * 64 * 4
    assert all(isinstance(r["resettable"], bool) for r in results)
