"""A page's fenced blocks and test markers, read by pytest-codeblocks' own parser; and
the MkDocs hook that drops the markers before the page is rendered.

The markers (``<!--pytest-codeblocks:...-->``, ``<!--pytest.mark...-->``) are for the
test harness. Left in, Python-Markdown passes them through as raw HTML, and inside
admonitions and tabs they end up wrapped in stray paragraphs.

``pytest_codeblocks.extract_from_buffer`` merges a ``cont`` block into the one before
it and keeps a single expected output per chain, while this site lets every part of a
chain show its own output. So ``cont`` and ``expected-output`` markers are handed to it
as marks, and it returns every fence on its own with the markers written before it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from functools import cache

from markdown.extensions.attr_list import get_attrs
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.lexers.python import Python2Lexer, PythonLexer
from pygments.util import ClassNotFound
from pymdownx.superfences import RE_NESTED_FENCE_START
from pytest_codeblocks import extract_from_buffer

# A line that pytest-codeblocks reads as a marker: its two patterns, matched as it
# matches them, on the stripped line.
MARKER = re.compile(
    r"<!--[-\s]*(?:pytest-codeblocks:(?P<keyword>.*)|(?P<mark>pytest\.mark\..*))-->"
)
CHAIN_KEYWORDS = ("cont", "expected-output", "expected-output-ignore-whitespace")
STAND_IN = "<!--pytest.mark.codeblocks_marker({})-->"
STAND_IN_MARK = re.compile(r"pytest\.mark\.codeblocks_marker\((\d+)\)")
STAND_IN_LINE = re.compile("<!--" + STAND_IN_MARK.pattern + "-->")


class PageError(ValueError):
    """A page the harness cannot read; the message names the page and line."""


@dataclass
class Fence:
    """One fenced block and the markers written before it."""

    lineno: int  # line of the opening fence, from 1
    end: int  # line of the closing fence
    info: str  # what follows the backticks: python title="x.py"
    code: str  # the body, the fence's indentation removed
    indent: str  # the opening fence's indentation
    marks: list[str] = field(default_factory=list)  # "pytest.mark.skip(...)"
    importorskip: str | None = None
    keywords: list[str] = field(default_factory=list)  # "cont", "expected-output"...

    @property
    def language(self) -> str:
        """The language as pymdownx.superfences reads it: python, {.python}, .py3."""
        m = RE_NESTED_FENCE_START.match("```" + self.info)
        if m is None:
            return ""
        if m["lang"] or not m["attrs"]:
            return m["lang"] or ""
        return next((v for k, v in get_attrs(m["attrs"]) if k == "."), "")

    @property
    def python(self) -> bool:
        return highlights_python(self.language)


@cache
def highlights_python(language: str) -> bool:
    """Whether Pygments highlights ``language`` as Python: its lexer is a Python lexer
    (python, py3, pyi, sage, numpy, ipython3, starlark...) or hands code to one (pycon)."""
    try:
        lexer = get_lexer_by_name(language)
    except ClassNotFound:
        return False

    def is_python(lex: Lexer, depth: int = 0) -> bool:
        return isinstance(lex, (PythonLexer, Python2Lexer)) or depth < 3 and any(
            is_python(v, depth + 1) for v in vars(lex).values() if isinstance(v, Lexer)
        )

    return is_python(lexer)


def fences(text: str) -> list[Fence]:
    """Every ``` fence of a Markdown text, in order, found by pytest-codeblocks."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].strip() == "<!--pytest-codeblocks:skipfile-->":
        raise PageError("line 1: skipfile would hide every block; list skips instead")
    keywords: dict[int, str] = {}
    # pytest-codeblocks drops empty lines of indented fences; a run of spaces (longer
    # than any indentation) survives its dedent and is made empty again below.
    blank = " " * (max(map(len, lines), default=0) + 1) + "\n"
    fed = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        keyword = m and m["keyword"] is not None and m["keyword"].strip("- ")
        if keyword in CHAIN_KEYWORDS:
            keywords[i] = keyword
            fed.append(line[: len(line) - len(line.lstrip())] + STAND_IN.format(i) + "\n")
        else:
            fed.append(line if line.strip() else blank)
    try:
        found = extract_from_buffer(io.StringIO("".join(fed)), max_num_lines=len(fed) + 2)
    except RuntimeError as err:  # its messages name no line
        raise PageError(f"pytest-codeblocks cannot read it: {err}") from err

    def restore(code: str) -> str:
        code = "".join(x if x.strip() else "\n" for x in code.splitlines(True))
        return STAND_IN_LINE.sub(lambda m: lines[int(m[1])].strip(), code)

    out, used = [], set()
    for block in found:
        opening = lines[block.lineno - 1]
        stand_ins = [int(m[1]) for x in block.marks if (m := STAND_IN_MARK.fullmatch(x))]
        used.update(stand_ins)
        out.append(Fence(
            lineno=block.lineno,
            end=block.lineno + len(block.code.splitlines()) + 1,
            info=(block.syntax or "").strip(),
            code=restore(block.code),
            indent=opening[: len(opening) - len(opening.lstrip())],
            marks=[mark for mark in block.marks if not STAND_IN_MARK.fullmatch(mark)],
            importorskip=block.importorskip,
            keywords=[keywords[i] for i in stand_ins],
        ))
    inside = {n - 1 for f in out for n in range(f.lineno, f.end + 1)}
    if dangling := sorted(set(keywords) - used - inside):
        raise PageError(f"line {dangling[0] + 1}: a marker with no fence after it")
    return out


def strip_markers(markdown: str) -> str:
    """The page without the lines pytest-codeblocks reads as markers."""
    try:
        inside = {n for f in fences(markdown) for n in range(f.lineno, f.end + 1)}
    except PageError:  # the test suite reports the page; drop every marker line here
        inside = set()
    return "".join(
        line for n, line in enumerate(markdown.splitlines(keepends=True), start=1)
        if n in inside or not MARKER.match(line.strip())
    )


def on_page_markdown(markdown, page, config, files, **kwargs):
    return strip_markers(markdown)
