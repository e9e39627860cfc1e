"""The GitHub Actions workflow is valid and passes a security linter, offline."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_schema(workflow):
    proc = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_has_no_zizmor_findings(workflow):
    proc = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", workflow],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_tests_builds_and_deploys():
    text = (ROOT / ".github/workflows/pages.yml").read_text()
    assert "make test" in text and "make build" in text
    assert "actions/deploy-pages@" in text and "actions/upload-pages-artifact@" in text


def test_a_workflow_with_a_problem_is_caught(tmp_path):
    """The linter is not a rubber stamp: an unpinned action and a template
    injection are reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request_target\npermissions: write-all\njobs:\n  x:\n"
        "    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: some/action@main\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    proc = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", bad], capture_output=True, text=True
    )
    assert proc.returncode != 0
