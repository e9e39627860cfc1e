"""Read a page's prose the way a reader sees it, so tests can check its numbers."""

from __future__ import annotations

import re

from hooks.markers import MARKER, fences
from tests.harness import DOCS

NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.]*\w)")


def read_page(name: str) -> str:
    return (DOCS / name).read_text()


def _fenced(text: str) -> set[int]:
    """The numbers of the lines that belong to fenced blocks, fences included."""
    return {n for f in fences(text) for n in range(f.lineno, f.end + 1)}


def prose(text: str) -> str:
    """The page without its fenced blocks (code and printed output) and without the
    test markers (HTML comments a reader never sees)."""
    inside = _fenced(text)
    lines = text.splitlines(keepends=True)
    return "".join(line for n, line in enumerate(lines, start=1)
                   if n not in inside and not MARKER.match(line.strip()))


def section(text: str, heading: str) -> str:
    """The text under the heading whose title is ``heading``, up to the next heading
    of the same or a higher level (a ``# comment`` in a code block is no heading)."""
    inside = _fenced(text)
    lines = text.splitlines(keepends=True)
    headings = [(i, m) for i, line in enumerate(lines)
                if i + 1 not in inside and (m := re.match(r"^(#+)\s+(.*?)\s*$", line))]
    for k, (i, m) in enumerate(headings):
        if m.group(2) == heading:
            end = next((j for j, n in headings[k + 1:] if len(n.group(1)) <= len(m.group(1))),
                       len(lines))
            return "".join(lines[i + 1:end])
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
