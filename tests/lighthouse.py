"""Lighthouse (npm ``lighthouse``, pinned in package.json) against a built site.

``run(url)`` runs it once, mobile preset (its default form factor), and returns the
figures the site is held to. ``python -m tests.lighthouse SITE [PATH ...] --runs 3``
serves SITE with gzip on 127.0.0.1 and prints the median of each figure per page:
the way the figures in the notes were measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.siteserver import serve_directory

ROOT = Path(__file__).resolve().parent.parent
LIGHTHOUSE = ROOT / "node_modules" / ".bin" / "lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
# The search index is fetched after the page has loaded, for the search box only.
SEARCH_INDEX = "/search/search_index.json"


@dataclass(frozen=True)
class Figures:
    performance: float
    accessibility: float
    best_practices: float
    seo: float
    tbt_ms: float           # total blocking time
    kib: float              # bytes transferred by the first load, search index aside
    search_kib: float       # the search index, when Lighthouse saw it load
    failed: tuple[str, ...]  # ids of the audits that scored below 1 in a 1.00 category


def chrome() -> str | None:
    """$CHROME_PATH, $CHROMIUM_PATH, else the usual names on PATH."""
    for var in ("CHROME_PATH", "CHROMIUM_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def node() -> str | None:
    return shutil.which("node")


def run(url: str, timeout: float = 240, save: Path | None = None) -> Figures:
    """One Lighthouse run on ``url`` (mobile preset, simulated throttling); the JSON
    report is written to ``save`` when given."""
    env = dict(os.environ, CHROME_PATH=chrome() or "")
    proc = subprocess.run(
        [node(), str(LIGHTHOUSE), url, "--output=json", "--output-path=stdout", "--quiet",
         "--only-categories=" + ",".join(CATEGORIES),
         "--chrome-flags=--headless --no-sandbox --disable-gpu"],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"lighthouse failed on {url}:\n{proc.stderr[-3000:]}")
    if save is not None:
        save.write_text(proc.stdout)
    return figures(json.loads(proc.stdout))


def figures(report: dict) -> Figures:
    """The figures of one Lighthouse JSON report."""
    if report.get("runtimeError"):
        raise RuntimeError(f"lighthouse: {report['runtimeError']}")
    audits = report["audits"]
    for audit in ("total-blocking-time", "network-requests"):
        if audits[audit].get("errorMessage"):
            raise RuntimeError(f"lighthouse {audit}: {audits[audit]['errorMessage']}")
    items = audits["network-requests"]["details"]["items"]
    search = sum(i.get("transferSize", 0) for i in items if SEARCH_INDEX in i["url"])
    total = sum(i.get("transferSize", 0) for i in items) - search
    scores = {c: report["categories"][c]["score"] for c in CATEGORIES}
    failed = tuple(
        ref["id"]
        for c in CATEGORIES[1:]
        for ref in report["categories"][c]["auditRefs"]
        if ref["weight"] > 0 and (audits[ref["id"]].get("score") or 0) < 1
        and audits[ref["id"]].get("scoreDisplayMode") == "binary"
    )
    return Figures(
        performance=scores["performance"], accessibility=scores["accessibility"],
        best_practices=scores["best-practices"], seo=scores["seo"],
        tbt_ms=audits["total-blocking-time"]["numericValue"],
        kib=total / 1024, search_kib=search / 1024, failed=failed,
    )


def median(runs: list[Figures]) -> dict:
    """The median of every number over ``runs``, and every audit any run failed."""
    out = {}
    for field, value in asdict(runs[0]).items():
        if isinstance(value, (int, float)):
            out[field] = statistics.median(getattr(r, field) for r in runs)
    out["failed"] = sorted({a for r in runs for a in r.failed})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("paths", nargs="*", default=["/"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--save", type=Path, help="a folder for the JSON reports")
    args = parser.parse_args(argv)
    with serve_directory(args.site) as server:
        for path in args.paths:
            runs = []
            for i in range(args.runs):
                name = f"{path.strip('/').replace('/', '-') or 'index'}-{i + 1}.json"
                runs.append(run(server + path, save=args.save and args.save / name))
            each = " ".join(f"{r.performance:.2f}/{r.tbt_ms:.0f}" for r in runs)
            print(path, json.dumps(median(runs)), "runs (perf/TBT):", each, flush=True)


if __name__ == "__main__":
    main()
