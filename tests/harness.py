"""Run every Python code block of the docs exactly as a reader sees it.

A page is read as the site renders it: pymdownx.snippets, configured as in
``mkdocs.yml``, expands its ``--8<--`` includes (inside code blocks and around them),
then pytest-codeblocks' parser (``hooks.markers.fences``) finds the fences and their
markers. Every fence that Pygments highlights as Python runs; the fence after an
``expected-output`` marker is what it must print. A notebook page gives the harness its
Markdown cells; its code cells are run by the strict build.

Custom here, because no library does it:
- each line's origin, so a failure names the page line, or the ``snippets/`` line an
  include brought in;
- per-part expected outputs: each part of a ``cont`` chain may show what it prints;
- a fresh namespace per block, with the random generators scrambled, so a block that
  leans on an earlier one or forgets its seed fails;
- the "All the code on this page" block runs alone, in a fresh interpreter;
- the one list of blocks that may skip or fail, and why (``tests/skips.toml``).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import io
import linecache
import os
import random
import re
import subprocess
import sys
import textwrap
import tomllib
import traceback
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jupytext
import markdown
import pytest
from mkdocs.utils import is_markdown_file
from mkdocs.utils.yaml import yaml_load

from hooks.markers import PageError, fences
from hooks.notebooks import expand_includes, is_notebook

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REGISTRY = ROOT / "tests" / "skips.toml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# A title marks a block that a reader runs on its own in a fresh interpreter.
STANDALONE_TITLE = "all the code on this page"


class IncludeError(PageError):
    """An ``--8<--`` include names a file or section that does not exist."""


class BlockFailure(Exception):
    """A code block raised; the message carries a traceback in page terms."""


class OutputMismatch(AssertionError):
    """What a block printed differs from the expected-output block under it."""


class NotAllowed(Exception):
    """A block skips or may fail without a reason listed in tests/skips.toml."""


@dataclass(frozen=True)
class Origin:
    """Where a line of the expanded page was written."""

    file: str  # "docs/attention.md", "snippets/attention.py"
    line: int
    via: Origin | None = None  # the page line of the include that brought it in

    @property
    def on_page(self) -> Origin:
        return self.via or self

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" + (f" (included at {self.via})" if self.via else "")


@dataclass
class Piece:
    """One fence's worth of code, with where its lines come from and what it prints."""

    where: Origin  # the opening fence
    code: str
    origins: list[Origin]  # per line of ``code``
    expected_output: str | None = None
    ignore_whitespace: bool = False
    output_at: tuple[Origin, Origin, str] | None = None  # its fences and indent

    @property
    def lineno(self) -> int:
        return self.where.on_page.line


@dataclass
class Block:
    """A runnable unit: a fence plus the ``cont`` fences that continue it."""

    page: str  # "attention.md"
    info: str
    pieces: list[Piece]
    marks: list[str] = field(default_factory=list)
    importorskip: str | None = None

    @property
    def lineno(self) -> int:
        return self.pieces[0].lineno

    @property
    def name(self) -> str:
        where = self.pieces[0].where
        name = f"{where.on_page.file.removeprefix('docs/')}:{where.on_page.line}"
        return name + (f" ({where.file}:{where.line})" if where.via else "")

    @property
    def standalone(self) -> bool:
        return STANDALONE_TITLE in self.info.lower()

    @property
    def source(self) -> str:
        return "".join(p.code for p in self.pieces)


@cache
def mkdocs_yml() -> dict:
    """``mkdocs.yml`` read as MkDocs reads it, but not validated: loading every plugin
    takes seconds."""
    return yaml_load((ROOT / "mkdocs.yml").read_text())


def mkdocs_settings(name: str) -> dict:
    """The settings ``mkdocs.yml`` gives a Markdown extension or a plugin."""
    config = mkdocs_yml()
    for entry in config.get("markdown_extensions", []) + config.get("plugins", []):
        if isinstance(entry, dict) and name in entry:
            return dict(entry[name] or {})
    return {}


@cache
def snippets_config() -> dict:
    """pymdownx.snippets' settings from ``mkdocs.yml``, its base paths taken from the
    repository root rather than the current directory."""
    config = mkdocs_settings("pymdownx.snippets")
    base = config.get("base_path", ["."])
    config["base_path"] = [str(ROOT / b) for b in ([base] if isinstance(base, str) else base)]
    return config


@cache
def snippet_preprocessor():
    """pymdownx.snippets' own preprocessor, with the site's settings."""
    md = markdown.Markdown(extensions=["pymdownx.snippets"],
                           extension_configs={"pymdownx.snippets": snippets_config()})
    return md.preprocessors["snippet"]


@cache
def _expand_line(line: str) -> tuple[list[str], tuple[str, list[int]] | None]:
    """One line after pymdownx.snippets and, for a one-line include, the file and the
    numbers of the lines it yields (once per run: pages include the same sections)."""
    return snippet_preprocessor().run([line]), _included_lines(line)


def _included_lines(line: str) -> tuple[str, list[int]] | None:
    """For a one-line include: the file and the numbers of the lines it yields."""
    pre = snippet_preprocessor()
    m = pre.RE_ALL_SNIPPETS.match(line)
    if not m or m["escape"] or not m["inline_marker"]:
        return None
    target = pre.parse_snippet_target(m["snippet"][1:-1].strip())
    found = target and pre.get_snippet_path(target["path"])
    if not found:
        return None
    path = Path(found).resolve()
    text = path.read_text(encoding="utf-8").split("\n")
    numbers, inside = [], not target["section"]
    for n, text_line in enumerate(text, start=1):
        s = pre.match_section(text_line)
        if s and not s["escape"] and s["name"] == target["section"]:
            if s["type"] == "start":
                inside = True
            elif inside:
                break
        elif inside and not (s and not s["escape"]):  # other section markers are dropped
            numbers.append(n)
    if target["start"]:
        numbers = [n for a, b in zip(target["start"], target["end"]) for n in numbers[a:b]]
    rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    return rel, numbers


def expand(lines: list[str], file: str) -> tuple[list[str], list[Origin]]:
    """``lines`` after pymdownx.snippets, each with where it came from."""
    pre = snippet_preprocessor()
    out: list[str] = []
    origins: list[Origin] = []
    for n, line in enumerate(lines, start=1):
        here = Origin(file, n)
        try:
            expanded, included = _expand_line(line) if "8<" in line else ([line], None)
        except Exception as err:  # pymdownx's message does not say which page
            raise IncludeError(f"{here}: include: {err}") from err
        out += expanded
        if included and included[1]:
            rel, numbers = included
            numbers = numbers + [numbers[-1]] * (len(expanded) - len(numbers))
            origins += [Origin(rel, k, here) for k in numbers[: len(expanded)]]
        else:
            origins += [here] * len(expanded)
    # Lines expand one by one as in the whole page, except in the block form of an
    # include (a --8<-- line, file names, a --8<-- line): then keep the site's text.
    if any((m := pre.RE_ALL_SNIPPETS.match(x)) and m["block_marker"] and not m["escape"]
           for x in lines):
        out = pre.run(list(lines))
        origins = [Origin(f"{file} after includes", n) for n in range(1, len(out) + 1)]
    return out, origins


@cache
def notebook_cells(path: Path) -> list[tuple[str, str]]:
    """(cell type, source) of a notebook page's cells, includes expanded as the build
    expands them."""
    source = expand_includes(path.read_text(encoding="utf-8"), snippets_config())
    return [(c.cell_type, c.source) for c in jupytext.reads(source, fmt="py:percent").cells]


def page_name(path: Path, docs: Path = DOCS) -> str:
    return path.relative_to(docs).as_posix()


def is_page(path: Path, docs: Path = DOCS) -> bool:
    """A Markdown page (.md, .markdown...) or a notebook of the site."""
    return is_markdown_file(path.name) or is_notebook(page_name(path, docs))


def pages(docs: Path = DOCS) -> list[Path]:
    return sorted(p for p in docs.rglob("*") if is_page(p, docs))


def collect_page(path: Path, docs: Path = DOCS) -> list[Block]:
    """The runnable blocks of one page, in order; a ``PageError`` names what cannot be
    read."""
    page = page_name(path, docs)
    if is_notebook(page):
        texts = [(source.splitlines(), f"docs/{page} cell {n}")
                 for n, (kind, source) in enumerate(notebook_cells(path), start=1)
                 if kind == "markdown"]
    else:
        texts = [(path.read_text(encoding="utf-8").splitlines(), f"docs/{page}")]
    blocks: list[Block] = []
    for lines, file in texts:
        if is_notebook(page):  # the build expands no include in a Markdown cell
            origins = [Origin(file, n) for n in range(1, len(lines) + 1)]
        else:
            lines, origins = expand(lines, file)
        try:
            found = fences("\n".join(lines) + "\n")
        except PageError as err:
            raise PageError(f"{file}: {err}") from err
        blocks += _blocks(page, found, origins)
    return blocks


def _output_problem(last, fence) -> str | None:
    """What is wrong with ``fence`` as the expected output of ``last``, the fence
    before it (a Piece; a non-python Fence; "output" if it was an output)."""
    if last is None:
        return "with no python block before it"
    if last == "output":
        return "for a block that already has one"
    if not isinstance(last, Piece):
        return f"under a ```{last.info} block, which nothing runs"
    if fence.python:
        return "fenced as Python, which readers take for code"
    return "with marks" if fence.marks or fence.importorskip else None


def _blocks(page: str, found, origins: list[Origin]) -> list[Block]:
    """Chains of python fences with their outputs, from a page's fences in order."""
    blocks: list[Block] = []
    last = last_code = None  # the fence before this one; the last that was not output
    for fence in found:
        where = origins[fence.lineno - 1]
        if len(fence.keywords) > 1:
            raise PageError(f"{where}: one marker per fence, not {fence.keywords}")
        keyword = fence.keywords[0] if fence.keywords else None
        if keyword and keyword.startswith("expected-output"):
            if problem := _output_problem(last, fence):
                raise PageError(f"{where}: an expected output {problem}")
            last.expected_output = fence.code
            last.ignore_whitespace = keyword.endswith("ignore-whitespace")
            last.output_at = (where, origins[fence.end - 1], fence.indent)
            last = "output"
            continue
        if not fence.python:
            if keyword or fence.marks or fence.importorskip:
                raise PageError(f"{where}: markers go before a python block, not ```{fence.info}")
            last = last_code = fence
            continue
        piece = Piece(where, fence.code, origins[fence.lineno: fence.end - 1])
        if keyword == "cont":
            if not isinstance(last_code, Piece) or fence.marks or fence.importorskip:
                raise PageError(f"{where}: cont must follow a python block and carry no marks")
            blocks[-1].pieces.append(piece)
        else:
            blocks.append(Block(page, fence.info, [piece], fence.marks, fence.importorskip))
        last = last_code = piece
    return blocks


# ---- blocks that do not run, or may fail: only with a reason listed in REGISTRY

KINDS = {"skip": "skip", "skipif": "skip", "xfail": "xfail"}


def written(reason: str) -> bool:
    """A reason of at least three words."""
    return isinstance(reason, str) and len(re.findall(r"[^\W\d_]{2,}", reason)) >= 3


@cache
def registry(path: Path = REGISTRY) -> dict[tuple[str, str, str], int]:
    """(page, kind, reason or module) -> how many blocks, from tests/skips.toml."""
    out = {}
    text = path.read_text() if path.exists() else ""
    for kind, entries in tomllib.loads(text).items():
        for entry in entries:
            what = entry.get("module" if kind == "importorskip" else "reason")
            if kind not in {*KINDS.values(), "importorskip"} or not written(
                entry.get("reason")
            ) or not isinstance(entry.get("blocks"), int) or not isinstance(what, str):
                raise ValueError(f"{path.name}: [[{kind}]] {entry}: needs page, a reason of"
                                 " three words or more, blocks = N (and module = ...)")
            out[(entry.get("page"), kind, what)] = entry["blocks"]
    return out


def parse_mark(text: str) -> tuple[str, list, dict]:
    """Name, arguments and keywords of ``pytest.mark.NAME(...)`` as written on a page;
    the arguments must be literals."""
    try:
        node = ast.parse(text, mode="eval").body
        call = node if isinstance(node, ast.Call) else ast.Call(node, [], [])
        func = call.func
        if not (isinstance(func, ast.Attribute) and ast.unparse(func.value) == "pytest.mark"):
            raise ValueError(text)
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read {text!r}: write pytest.mark.NAME(...) with literal"
                         " arguments") from err
    return func.attr, args, kwargs


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Verdict:
    """Whether a block runs with its outputs compared, the marks it gets, and what is
    wrong with the way it skips or may fail."""

    runs: bool
    marks: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def verdicts(page: str, blocks: list[Block], listed: Path = REGISTRY) -> list[Verdict]:
    """A verdict per block: skips, xfails and importorskips are allowed only with a
    written reason listed in tests/skips.toml; under CI=true no xfail is, and no
    importorskip may skip."""
    allowed = registry(listed)
    counts: Counter = Counter()
    found = []
    for block in blocks:
        problems, marks, keys = [], [], []
        for text in block.marks:
            try:
                name, args, kwargs = parse_mark(text)
            except ValueError as err:
                problems.append(str(err))
                continue
            if name not in KINDS:
                problems.append(f"pytest.mark.{name}: a block may only skip or xfail")
                continue
            first = args[0] if name == "skip" and args else ""
            keys.append((KINDS[name], kwargs.get("reason", first)))
            marks.append(getattr(pytest.mark, name)(*args, **kwargs))
        if block.importorskip:
            keys.append(("importorskip", block.importorskip))
        counts.update({key: len(block.pieces) for key in keys})
        found.append((block, problems, marks, keys))
    out = []
    for block, problems, marks, keys in found:
        for kind, what in keys:
            listed_count = allowed.get((page, kind, what))
            if kind != "importorskip" and not written(what):
                problems.append(f"{kind} needs a written reason (three words or more)")
            elif listed_count is None:
                problems.append(f"{kind} {what!r} on {page} is not listed in "
                                f"tests/skips.toml with that reason")
            elif listed_count != counts[(kind, what)]:
                problems.append(f"{counts[(kind, what)]} blocks of {page} {kind} for "
                                f"{what!r}; tests/skips.toml lists {listed_count}")
            if IN_CI and kind == "xfail":
                problems.append("CI=true: no xfail may pass the run")
            if IN_CI and kind == "importorskip" and not importable(what):
                problems.append(f"CI=true: {what} must be installed, not skipped")
        runs = all(k == "importorskip" and importable(w) for k, w in keys)
        where = f"docs/{block.name}: "
        out.append(Verdict(runs and not problems, [] if problems else marks,
                           [where + p for p in problems]))
    return out


# ---- running blocks


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
        if piece is None or not piece.origins:
            continue
        where = piece.origins[min(max(frame.lineno or 1, 1), len(piece.origins)) - 1]
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
                # dont_inherit: page code runs without this file's __future__ imports
                code = compile(piece.code, filename, "exec", dont_inherit=True)
                exec(code, namespace)
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
        where = piece.where.on_page
        diff = "".join(
            difflib.unified_diff(
                want.splitlines(True),
                got.splitlines(True),
                fromfile=f"{where} (expected output on the page)",
                tofile=f"{where} (what the code printed)",
            )
        )
        raise OutputMismatch(f"printed output of {piece.where} differs from the page:\n{diff}")


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
    """Rewrite each expected-output block of a Markdown page with what its code prints
    now (outputs written in an included file are left alone).

    For authors: run it, then read the diff before committing, as the tests hold the
    page to exactly that text from then on. Returns how many blocks changed.
    """
    lines = path.read_text().splitlines(keepends=True)
    blocks = collect_page(path, docs)
    edits = []
    for block, verdict in zip(blocks, verdicts(page_name(path, docs), blocks)):
        if not verdict.runs:
            continue
        for piece, got in zip(block.pieces, run(block)):
            if piece.output_at is None or piece.output_at[0].via or piece.output_at[1].via:
                continue
            opening, closing, indent = piece.output_at
            got = got if got.endswith("\n") or not got else got + "\n"
            new = [indent + line if line.strip() else "\n" for line in got.splitlines(True)]
            edits.append(((opening.line, closing.line - 1), new))
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
