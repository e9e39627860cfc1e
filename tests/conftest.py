"""Shared fixtures: one strict build of the site per test run, shared by workers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import settings

from tests import page as page_check
from tests.harness import IN_CI

ROOT = Path(__file__).resolve().parent.parent

# Locally, Hypothesis explores new examples each run (and remembers failures in
# .hypothesis/); under CI it replays a fixed sequence, so a run cannot fail by luck.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if IN_CI:
    settings.load_profile("ci")


def require(condition: bool, what: str, how: str) -> None:
    """Skip locally when a tool is missing, but fail under CI=true."""
    if condition:
        return
    message = f"{what} is not available; {how}"
    if IN_CI:
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)


@dataclass
class SiteBuild:
    path: Path
    returncode: int
    log: str


def mkdocs_build(site_dir: Path, config: Path = ROOT / "mkdocs.yml",
                 strict: bool = True) -> SiteBuild:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", *(["--strict"] if strict else []),
         "--clean", "--config-file", str(config), "--site-dir", str(site_dir)],
        cwd=config.parent, capture_output=True, text=True, env=env,
    )
    return SiteBuild(site_dir, proc.returncode, proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def site_build(tmp_path_factory) -> SiteBuild:
    """The strict build, made once per run however many xdist workers ask for it."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    record = shared / "site-build.json"
    with FileLock(str(shared / "site-build.lock")):
        if not record.exists() and os.environ.get(page_check.ENV):  # make page
            one = page_check.check_page(os.environ[page_check.ENV])
            build = mkdocs_build(shared / "site", page_check.write_config(one),
                                 strict=False)
            record.write_text(json.dumps({"returncode": build.returncode, "log": build.log}))
        if not record.exists():
            build = mkdocs_build(shared / "site")
            record.write_text(json.dumps({"returncode": build.returncode, "log": build.log}))
    data = json.loads(record.read_text())
    return SiteBuild(shared / "site", data["returncode"], data["log"])


@pytest.fixture(scope="session")
def site(site_build) -> Path:
    """The built site's folder; fails (does not skip) when the build failed."""
    if site_build.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{site_build.log}", pytrace=False)
    return site_build.path


def make_scratch_project(path: Path) -> Path:
    """The project's config and hooks in ``path``, with snippets/attention.py and a
    docs/ that holds only the site's assets, for tests that build a small site of
    their own. The ``nav`` is dropped so that the pages a test writes make the site,
    and the figures package comes without its figure modules, so none is drawn."""
    shutil.copytree(ROOT / "hooks", path / "hooks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "docs", path / "docs",
                    ignore=shutil.ignore_patterns("*.md", "notebooks"))
    (path / "snippets").mkdir()
    for name in ("__init__.py", "attention.py", "checks.py"):  # attention imports checks
        shutil.copy(ROOT / "snippets" / name, path / "snippets" / name)
    (path / "figures").mkdir()
    for name in ("__init__.py", "svg.py"):
        shutil.copy(ROOT / "figures" / name, path / "figures" / name)
    config = (ROOT / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^nav:\n.*?(?=^\S)", "", config)
    (path / "mkdocs.yml").write_text(config)
    return path


@pytest.fixture
def scratch_project(tmp_path) -> Path:
    """A scratch copy of the project (see ``make_scratch_project``)."""
    return make_scratch_project(tmp_path)


# What it takes to run the code-block items, the ground truth and the offline check
# on a scratch project.
SUITE = ["conftest.py", "pyproject.toml", "tests/__init__.py", "tests/conftest.py",
         "tests/harness.py", "tests/page.py", "tests/sitecheck.py",
         "tests/test_ground_truth.py", "tests/test_site.py"]


def run_suite(project: Path, *tests: str) -> subprocess.CompletedProcess:
    """Copy the suite into a scratch project and run ``tests`` there, as a developer
    would run them (not under CI, no xdist, nothing shared with this run)."""
    for name in SUITE:
        (project / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "COV_CORE", "COVERAGE")) and k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:cov",
         "-p", "no:xdist", "-rA", "--tb=short", "--continue-on-collection-errors",
         "--basetemp", str(project / "tmp"), *tests],
        cwd=project, capture_output=True, text=True, env=env,
    )
