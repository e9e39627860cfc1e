"""Check one page: ``make page PAGE=masks`` (or ``python -m tests.page masks``).

Runs, for ``docs/masks.md``: every code block of the page, the page's test module
(``tests/test_masks.py``), and the browser check of the page in both colour schemes,
against a build of the site that holds that page alone (with only the figures of
``figures/masks.py``). What needs the whole site stays with ``make test``: the strict
build (links between pages), the ground truth, the offline scan and Lighthouse.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
ENV = "SITE_PAGE"  # read by tests/conftest.py and hooks/ (generated, notebooks)
CONFIG = ROOT / ".mkdocs-page.yml"  # git-ignored; beside mkdocs.yml, which it extends


def pages() -> list[str]:
    """The pages that can be checked alone: the Markdown pages of docs/."""
    return sorted(p.stem for p in DOCS.glob("*.md"))


def check_page(page) -> str:
    """page, if it names a Markdown page of docs/ (``masks``, ``multi-head``)."""
    if not isinstance(page, str) or page.removesuffix(".md") not in pages():
        raise ValueError(f"PAGE must be one of {', '.join(pages())}, got {page!r}")
    return page.removesuffix(".md")


def write_config(page: str) -> Path:
    """A config that inherits mkdocs.yml and builds ``page`` alone. Links to the other
    pages cannot resolve, so it is not strict."""
    CONFIG.write_text(
        "INHERIT: mkdocs.yml\n"
        "strict: false\n"
        "exclude_docs: |\n"
        "  /*.md\n"
        f"  !/{page}.md\n"
        "  /notebooks/\n"
    )
    return CONFIG


def command(page: str) -> list[str]:
    """The pytest command that checks ``page``."""
    tests = ROOT / "tests" / f"test_{page.replace('-', '_')}.py"
    path = "/" if page == "index" else f"/{page}/"
    return [
        sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup",
        "-p", "no:cacheprovider", "-q",
        str(DOCS / f"{page}.md"),
        *([str(tests)] if tests.exists() else []),
        *(f"tests/test_browser.py::test_page_renders_cleanly_offline_and_accessibly"
          f"[{path}-{scheme}]" for scheme in ("light", "dark")),
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: python -m tests.page PAGE  (one of: {', '.join(pages())})")
        return 2
    try:
        page = check_page(argv[0])
    except ValueError as err:
        print(err)
        return 2
    env = dict(os.environ, **{ENV: page})
    return subprocess.run(command(page), cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
