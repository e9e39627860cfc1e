"""Tests for bench/sdpa_mask.py and the committed bench/sdpa_mask.json.

No timing assertions: the numbers depend on the machine. What is checked is that the
JSON has its schema, that every stored median is the median of the stored times and
every ratio the ratio of the stored medians, so the page (whose quoted numbers
tests/test_masks.py checks against this file) cannot show a number the run does not
support.
"""

import json
import math
import statistics

import pytest
import torch

from bench import sdpa_mask

COMMITTED = sdpa_mask.DEFAULT_OUT
MACHINE_KEYS = {"cpu_model", "logical_cores", "torch_threads", "torch_version",
                "python_version", "platform", "date_utc", "load_average_at_start",
                "load_average_at_end", "seconds", "command"}


def check_results(data):
    assert set(data) == {"quick", "machine", "config", "dtype", "outputs_agree",
                         "results"}
    assert MACHINE_KEYS <= set(data["machine"])
    assert data["machine"]["torch_threads"] == data["config"]["threads"]
    cases = {f"{b}/{v}" for b in sdpa_mask.BACKENDS for v in sdpa_mask.VARIANTS}
    assert set(data["outputs_agree"]) == cases and all(data["outputs_agree"].values())
    assert set(data["results"]) == set(sdpa_mask.BACKENDS)
    for entry in data["results"].values():
        for variant in sdpa_mask.VARIANTS:
            times = entry[variant]["times_s"]
            assert len(times) == data["config"]["repeats"] and all(t > 0 for t in times)
            assert math.isclose(entry[variant]["median_s"], statistics.median(times),
                                rel_tol=1e-12)
        assert math.isclose(entry["ratio_mask_over_is_causal"],
                            entry["mask"]["median_s"] / entry["is_causal"]["median_s"],
                            rel_tol=1e-12)
        rounds = [m / c for m, c in zip(entry["mask"]["times_s"],
                                        entry["is_causal"]["times_s"])]
        assert math.isclose(entry["median_round_ratio"], statistics.median(rounds),
                            rel_tol=1e-12)
    picks = data["results"]["default"]["picks"]
    assert set(picks) == set(sdpa_mask.VARIANTS)


def test_committed_results_are_consistent():
    data = json.loads(COMMITTED.read_text())
    check_results(data)
    assert not data["quick"] and data["config"] == sdpa_mask.FULL
    assert data["machine"]["command"] == sdpa_mask.COMMAND


def test_quick_run_writes_a_consistent_json(tmp_path):
    threads = torch.get_num_threads()
    out = tmp_path / "sdpa_mask.json"
    try:
        data = sdpa_mask.main(["--quick", "--out", str(out)], log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    assert json.loads(out.read_text()) == json.loads(json.dumps(data))
    check_results(data)
    assert data["quick"] and data["machine"]["command"].endswith("--quick")


def test_both_variants_are_the_causal_mask():
    q, k, v, mask = sdpa_mask.make_inputs(sdpa_mask.QUICK)
    assert torch.equal(mask, torch.ones_like(mask).tril())
    outs = [sdpa_mask.make_call(var, backend, q, k, v, mask)()
            for backend in sdpa_mask.BACKENDS.values() for var in sdpa_mask.VARIANTS]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--threads", "-1"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        sdpa_mask.parse_args(argv)
    assert "must be a positive integer" in capsys.readouterr().err
