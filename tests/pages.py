"""Read a page's prose the way a reader sees it, so tests can check its numbers."""

from __future__ import annotations

import re

from hooks.markers import fences
from tests.harness import DOCS

NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.]*\w)")


def read_page(name: str) -> str:
    return (DOCS / name).read_text()


def prose(text: str) -> str:
    """The page without its fenced blocks (code and printed output)."""
    inside = {n for f in fences(text) for n in range(f.lineno, f.end + 1)}
    lines = text.splitlines(keepends=True)
    return "".join(line for n, line in enumerate(lines, start=1) if n not in inside)


def section(text: str, heading: str) -> str:
    """The text under the heading whose title is ``heading``, up to the next heading
    of the same or a higher level."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s+(.*?)\s*$", line)
        if m and m.group(2) == heading:
            level = len(m.group(1))
            body = []
            for rest in lines[i + 1:]:
                n = re.match(r"^(#+)\s", rest)
                if n and len(n.group(1)) <= level:
                    break
                body.append(rest)
            return "".join(body)
    raise KeyError(f"no heading {heading!r}")


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in ``text`` as rows of cells (header row first, the
    separator row dropped)."""
    found, current = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [c.strip() for c in stripped[1:-1].split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    if current:
        found.append(current)
    return found


def numbers(text: str) -> list[float]:
    """Every number written in ``text`` (``−`` counts as a minus sign)."""
    return [float(n.replace("−", "-")) for n in NUMBER.findall(text)]
