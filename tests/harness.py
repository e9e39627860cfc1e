"""Run every ``python`` code block of the docs exactly as a reader sees it.

Blocks are found by pytest-codeblocks (its markers: ``cont``, ``expected-output``,
``importorskip``, ``pytest.mark.*``), then every ``--8<--`` include inside a block is
expanded by pymdownx.snippets configured as in ``mkdocs.yml``. Each block runs in a fresh
namespace with the random number generators put in an unpredictable state, so a block
that forgets its seed or an import fails instead of leaning on an earlier block. A
failure names the page and the line in the page (or the snippets line an include came
from).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import linecache
import os
import random
import re
import subprocess
import sys
import textwrap
import traceback
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import markdown
from mkdocs.config import load_config
from pytest_codeblocks import extract_from_buffer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The fence's language is the first word of its info string: ```python title="x.py"
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})\s*(?P<info>.*)$")
INCLUDE = re.compile(r"""^(?P<indent>\s*)-{1,}8<-{1,}\s+(?P<q>["'])(?P<target>.+?)(?P=q)\s*$""")
# A title marks a block that a reader runs on its own in a fresh interpreter.
STANDALONE_TITLE = "all the code on this page"


def language(info: str | None) -> str:
    return (info or "").split(" ", 1)[0].split("{", 1)[0].strip().lower()


class IncludeError(RuntimeError):
    """An ``--8<--`` include names a file or section that does not exist."""


@dataclass
class Piece:
    """One fence's worth of code, with how its lines map back, and what it prints."""

    lineno: int  # line of the opening fence
    code: str  # after include expansion
    origin: list[str]  # per line of ``code``: "docs/page.md:N" or "snippets/x.py:N"
    expected_output: str | None = None
    ignore_whitespace: bool = False
    expected_lines: tuple[int, int] | None = None  # body line span, for update_page
    expected_indent: str = ""


@dataclass
class Block:
    """A runnable unit: a fence plus the ``cont`` fences that continue it."""

    page: str  # "index.md"
    lineno: int  # line of the opening fence
    info: str
    pieces: list[Piece]
    importorskip: str | None = None
    marks: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.page}:{self.lineno}"

    @property
    def standalone(self) -> bool:
        return STANDALONE_TITLE in self.info.lower()

    @property
    def source(self) -> str:
        return "".join(p.code for p in self.pieces)


@cache
def snippet_preprocessor():
    """pymdownx.snippets' own preprocessor, with the settings ``mkdocs.yml`` uses."""
    config = load_config(str(ROOT / "mkdocs.yml"))
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": config["mdx_configs"]["pymdownx.snippets"]},
    )
    return md.preprocessors["snippet"]


def _section_start(path: Path, section: str | None) -> int:
    """Line number (1-based) of the first line that an include of ``section`` yields."""
    if not section:
        return 1
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(rf"--8<--\s*\[start:{re.escape(section)}\]", line):
            return n + 1
    return 1


def expand_includes(lines: list[str], fence_lineno: int, page: str) -> Piece:
    """Expand ``--8<--`` lines with pymdownx.snippets; keep a line-origin map."""
    out: list[str] = []
    origin: list[str] = []
    pre = snippet_preprocessor()
    for offset, line in enumerate(lines):
        here = f"docs/{page}:{fence_lineno + 1 + offset}"
        m = INCLUDE.match(line.rstrip("\n"))
        if not m:
            out.append(line if line.endswith("\n") else line + "\n")
            origin.append(here)
            continue
        file_part, _, section = m.group("target").partition(":")
        n = _section_start(ROOT / file_part, section)
        try:
            lines_in = pre.run([line.rstrip("\n")])
        except Exception as err:  # pymdownx's message does not say which page
            raise IncludeError(f"{here}: include {m.group('target')!r}: {err}") from err
        for expanded in lines_in:
            out.append(expanded + "\n")
            origin.append(f"{file_part}:{n} (included at {here})")
            n += 1
    return Piece(fence_lineno, "".join(out), origin)


def _fences(text: str) -> list[tuple[int, str, list[str]]]:
    """Every fence in a page: (line of the opening fence, info string, body lines)."""
    return [(start, info, body) for start, info, body, _, _ in _fence_spans(text)]


def _fence_spans(text: str):
    """Fences with (start line, info, dedented body, (body_first, body_end) indices,
    indent)."""
    fences = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].rstrip("\n"))
        if not m:
            i += 1
            continue
        indent, ticks = m.group("indent"), m.group("ticks")
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith(ticks):
            line = lines[i]
            if not line.strip():  # a blank line keeps its newline, whatever the indent
                body.append("\n")
            else:
                cut = min(len(indent), len(line) - len(line.lstrip(" ")))
                body.append(line[cut:])
            i += 1
        fences.append((start, m.group("info").strip(), body, (start, i), indent))
        i += 1
    return fences


def python_fences(text: str) -> list[tuple[int, str, list[str]]]:
    return [f for f in _fences(text) if language(f[1]) == "python"]


# pytest-codeblocks' comment markers, read the way it reads them.
CODEBLOCKS_MARK = re.compile(r"<!--[-\s]*pytest-codeblocks:(.*)-->")
PYTEST_MARK = re.compile(r"<!--[-\s]*(pytest\.mark\..*)-->")


def collect_page(path: Path, docs: Path = DOCS) -> list[Block]:
    """The runnable blocks of one page, in order.

    The markers are pytest-codeblocks' (``cont``, ``expected-output``,
    ``expected-output-ignore-whitespace``, ``importorskip(mod)``, ``skipfile``,
    ``<!--pytest.mark.X-->``), and pytest-codeblocks first validates the page.
    One difference: pytest-codeblocks keeps a single expected output per ``cont``
    chain, while here every part of a chain may be followed by the output it prints,
    so a page can show its output step by step.
    """
    page = path.relative_to(docs).as_posix()
    text = path.read_text()
    first = text.split("\n", 1)[0].strip()
    if first == "<!--pytest-codeblocks:skipfile-->":
        return []
    with open(path, encoding="utf-8") as handle:  # unknown markers raise here
        _validate_with_pytest_codeblocks(handle)
    fences = {start: (info, body, span, indent)
              for start, info, body, span, indent in _fence_spans(text)}
    inside = set()  # line numbers inside fences, where markers do not count
    for start, (_, body, _, _) in fences.items():
        inside.update(range(start + 1, start + len(body) + 2))
    blocks: list[Block] = []
    marks: list[str] = []
    importorskip = None
    pending = None  # "cont" or ("expected", ignore_whitespace)
    for n, line in enumerate(text.splitlines(), start=1):
        if n in inside:
            continue
        stripped = line.strip()
        if m := CODEBLOCKS_MARK.match(stripped):
            keyword = m.group(1).strip("- ")
            if keyword == "cont":
                pending = "cont"
            elif keyword.startswith("expected-output"):
                pending = ("expected", keyword.endswith("ignore-whitespace"))
            elif keyword.startswith("importorskip"):
                importorskip = re.match(r"importorskip\((.*)\)", keyword).group(1)
            continue
        if m := PYTEST_MARK.match(stripped):
            marks.append(m.group(1))
            continue
        if n not in fences:
            continue
        info, body, span, indent = fences[n]
        if isinstance(pending, tuple):
            piece = blocks[-1].pieces[-1]
            piece.expected_output = "".join(body)
            piece.ignore_whitespace = pending[1]
            piece.expected_lines, piece.expected_indent = span, indent
        elif language(info) == "python":
            piece = expand_includes(body, n, page)
            if pending == "cont":
                blocks[-1].pieces.append(piece)
            else:
                blocks.append(Block(page, n, info, [piece], importorskip, marks))
                marks, importorskip = [], None
        pending = None
    return blocks


def _validate_with_pytest_codeblocks(handle) -> None:
    """Let pytest-codeblocks reject what it cannot parse (unknown markers, a marker
    with no block before it, an unclosed fence). Its one-output-per-chain rule is the
    only error tolerated, as this harness checks the output of every part."""
    try:
        extract_from_buffer(handle)
    except RuntimeError as err:
        if "already has expected_output" not in str(err):
            raise


class BlockFailure(Exception):
    """A code block raised; the message carries a traceback in page terms."""


class OutputMismatch(AssertionError):
    """What a block printed differs from the expected-output block under it."""


def _register(filename: str, code: str) -> None:
    # Let traceback print the source line of our synthetic file names.
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)


def _unpredictable_rngs() -> None:
    """Put every RNG a page might use in a state no page can rely on."""
    seed = random.SystemRandom().randrange(2**31)
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def page_traceback(exc: BaseException, blocks_files: dict[str, Piece]) -> str:
    """Format ``exc`` with each frame of page code mapped to its origin."""
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        piece = blocks_files.get(frame.filename)
        if piece is None:
            continue
        where = piece.origin[frame.lineno - 1]
        lines.append(f"  {where}, in {frame.name}\n    {(frame.line or '').strip()}\n")
    last = traceback.format_exception_only(type(exc), exc)[-1]
    return "".join(lines) + last


def run_in_process(block: Block) -> list[str]:
    """Execute a block's pieces in one fresh namespace; return what each printed."""
    namespace = {"__name__": "__codeblock__"}
    files: dict[str, Piece] = {}
    outputs = []
    _unpredictable_rngs()
    for n, piece in enumerate(block.pieces):
        filename = f"<docs/{block.name} part {n}>"
        files[filename] = piece
        _register(filename, piece.code)
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                exec(compile(piece.code, filename, "exec"), namespace)
        except Exception as exc:
            raise BlockFailure(
                f"code block at docs/{block.name} raised:\n" + page_traceback(exc, files)
            ) from exc
        outputs.append(buffer.getvalue())
    return outputs


def run_in_subprocess(block: Block, timeout: float = 300) -> str:
    """Execute a block as a copy-paster would: a fresh interpreter, no repo on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", block.source],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=os.path.expanduser("~") if os.path.isdir(os.path.expanduser("~")) else "/",
        env=env,
    )
    if proc.returncode != 0:
        raise BlockFailure(
            f"code block at docs/{block.name}, run alone in a fresh interpreter, "
            f"exited with {proc.returncode}:\n{textwrap.indent(proc.stderr, '  ')}"
        )
    return proc.stdout


def check_output(block: Block, piece: Piece, got: str) -> None:
    """Compare what a piece printed with the expected output under it, with a diff."""
    if piece.expected_output is None:
        return
    want = piece.expected_output
    if piece.ignore_whitespace:
        same = want.split() == got.split()
    else:
        same = want.rstrip("\n") == got.rstrip("\n")
    if not same:
        where = f"docs/{block.page}:{piece.lineno}"
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True),
                got.splitlines(True),
                fromfile=f"{where} (expected output on the page)",
                tofile=f"{where} (what the code printed)",
            )
        )
        raise OutputMismatch(f"printed output of {where} differs from the page:\n{diff}")


def run(block: Block) -> list[str]:
    """What each piece printed: a fresh interpreter for a standalone block (which
    must be a single piece), else in this process."""
    if block.standalone:
        return [run_in_subprocess(block)] + [""] * (len(block.pieces) - 1)
    return run_in_process(block)


def run_block(block: Block) -> list[str]:
    outputs = run(block)
    for piece, got in zip(block.pieces, outputs):
        check_output(block, piece, got)
    return outputs


def update_page(path: Path, docs: Path = DOCS) -> int:
    """Rewrite each expected-output block of a page with what its code prints now.

    For authors: run it, then read the diff before committing, as the tests hold the
    page to exactly that text from then on. Returns how many blocks changed.
    """
    lines = path.read_text().splitlines(keepends=True)
    edits = []
    for block in collect_page(path, docs):
        if any(mark.startswith("pytest.mark.skip") for mark in block.marks):
            continue
        for piece, got in zip(block.pieces, run(block)):
            if piece.expected_lines is None:
                continue
            got = got if got.endswith("\n") or not got else got + "\n"
            indent = piece.expected_indent
            new = [indent + line if line.strip() else "\n" for line in got.splitlines(True)]
            edits.append((piece.expected_lines, new))
    changed = 0
    for (start, end), new in sorted(edits, reverse=True):
        if lines[start:end] != new:
            lines[start:end] = new
            changed += 1
    path.write_text("".join(lines))
    return changed


if __name__ == "__main__":  # python -m tests.harness docs/page.md ...
    for arg in sys.argv[1:]:
        print(f"{arg}: {update_page(Path(arg).resolve())} expected-output blocks updated")
