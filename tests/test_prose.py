"""Every page's prose: a short main path, an opening that says what the page answers and
what it assumes, the glossary linked wherever formulas use its symbols, and the claims
audit record (``docs/claims.md``) tied to the pages it audits.

The rules apply to every page under ``docs/`` (Markdown pages and the jupytext notebooks
in ``docs/notebooks/``), so a new page is covered the day it is added.

**What counts as a word of the main path.** Each page is rendered with Python-Markdown
and the extensions and settings of ``mkdocs.yml`` (for a notebook: its Markdown cells),
and the words are counted in what a reader sees without opening anything:

- not counted: code blocks and their printed output; collapsed blocks (``???``, a
  ``<details>`` that is not open); display formulas (``$$ ... $$``); image alt text;
- counted: headings, paragraphs, lists, admonitions (``!!!``, ``???+``), table cells and
  the opening box;
- a word is a run of non-space characters with at least one letter, so numbers (and
  tables of numbers) count nothing, a code span such as ``nn.Linear`` counts one, and
  an inline formula counts one.

**The opening.** The first thing under a Markdown page's ``# title`` is::

    !!! abstract "This page"
        **Answers:** a question, ending with "?"

        **Assumes:** what to have read first, with at least one link

and a notebook's first Markdown cell is its ``# title`` followed by the same two
paragraphs (notebooks render no admonitions).
"""

from __future__ import annotations

import posixpath
import re
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import markdown
import pytest
from mkdocs.config import load_config

from tests import harness
from tests.pages import prose, section, tables

ROOT = harness.ROOT
DOCS = harness.DOCS
PAGES = sorted(
    [p for p in DOCS.rglob("*.md")] + [p for p in (DOCS / "notebooks").glob("*.py")]
)
GLOSSARY = DOCS / "glossary.md"
CLAIMS = DOCS / "claims.md"

WORD_BUDGET = 1500

# Pages not yet revised to these rules, with the reason. Their checks (budget,
# opening, glossary link, claims audit) are expected failures. A page leaves this
# list once it passes them all, and a test fails while a page that passes everything
# is still listed, so the list can only shrink. Empty it; never add to it.
NOT_YET_REVISED: dict[str, str] = {}  # every page is revised


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


# ---- rendering a page as a reader sees it -------------------------------------------


@cache
def _config():
    return load_config(str(ROOT / "mkdocs.yml"))


def render(text: str) -> str:
    """HTML of Markdown ``text``, with the site's extensions and their settings."""
    config = _config()
    md = markdown.Markdown(
        extensions=config["markdown_extensions"],
        extension_configs=config["mdx_configs"],
    )
    return md.convert(text)


def notebook_cells(path: Path) -> list[str]:
    """The Markdown cells of a jupytext notebook, in order."""
    notebook = jupytext.read(path, fmt="py:percent")
    return [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]


def page_markdown(path: Path) -> str:
    """The Markdown a page is rendered from (a notebook: its Markdown cells)."""
    if path.suffix == ".py":
        return "\n\n".join(notebook_cells(path))
    return path.read_text()


class _MainPath(HTMLParser):
    """Collects the text a reader sees without opening anything, and every formula."""

    SKIP = {"pre", "script", "style"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.words: list[str] = []
        self.formulas: list[str] = []
        self._math: list[str] | None = None
        self._math_depth = 0

    def hidden(self) -> bool:
        hiding = [i for i, (_, hides) in enumerate(self.stack) if hides]
        if not hiding:
            return False
        # the <summary> of a closed <details> is its visible title
        last = hiding[-1]
        return not (
            len(hiding) == 1
            and self.stack[last][0] == "details"
            and any(tag == "summary" for tag, _ in self.stack[last + 1:])
        )

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag in ("br", "img", "hr", "input", "meta", "link"):
            return
        if self._math is not None:
            self._math_depth += 1
            return
        if "arithmatex" in classes:
            self._math, self._math_depth = [], 1
            self._math_display = tag == "div"
            return
        hides = tag in self.SKIP or (tag == "details" and "open" not in attrs)
        self.stack.append((tag, hides))

    def handle_endtag(self, tag):
        if tag in ("br", "img", "hr", "input", "meta", "link"):
            return
        if self._math is not None:
            self._math_depth -= 1
            if self._math_depth == 0:
                tex = "".join(self._math).strip()
                tex = re.sub(r"^\\[(\[]|\\[)\]]$", "", tex).strip()
                self.formulas.append(tex)
                if not self._math_display and not self.hidden():
                    self.words.append("(formula)")
                self._math = None
            return
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._math is not None:
            self._math.append(data)
        elif not self.hidden():
            self.words.extend(w for w in data.split() if any(c.isalpha() for c in w))


@cache
def read_rendered(path: Path) -> _MainPath:
    parser = _MainPath()
    parser.feed(render(page_markdown(path)))
    parser.close()
    return parser


def main_path_words(path: Path) -> int:
    """Words of prose in the page's main path (rules: the module docstring)."""
    return len(read_rendered(path).words)


def formulas(path: Path) -> list[str]:
    """Every formula of a page (inline and display), as TeX, parsed by arithmatex."""
    return read_rendered(path).formulas


# ---- symbols in formulas ------------------------------------------------------------

GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "theta", "lambda", "mu", "pi",
    "sigma",
    "tau", "omega", "ell", "phi", "psi", "rho", "eta", "kappa", "xi", "zeta", "nu",
}
# A subscript made only of these is an index (x_i, s_{ij}, h_{t-1}, head_H): it
# names a row or an entry of the symbol, not another symbol.
INDEX = re.compile(r"[ijtmnc0-9H'+\-]+")
# \text{if query } ... or \text{otherwise.}: words of a sentence, not symbols
PROSE_IN_MATH = re.compile(r"\\text\s*\{(?:[^{}]*\s[^{}]*|[^{}]*[.,;:])\}")
TEXT_SUBSCRIPT = re.compile(
    r"_\s*(?:\{\s*\\text\s*\{([^{}]*)\}\s*\}|\\text\s*\{([^{}]*)\})"
)
NAMED = re.compile(
    r"\\(?:operatorname|text|mathrm|mathbf|mathbb|mathcal|tilde|hat|bar)\s*\{([^{}]*)\}"
)
COMMAND = re.compile(r"\\([A-Za-z]+|.)")
SUBSCRIPT_GROUP = re.compile(r"_\s*\{([^{}]*)\}")
TOKEN = re.compile(r"(\\[a-z]+|[A-Za-z]+)(?:_(=[A-Za-z0-9]+|[A-Za-z0-9'+\-]+))?")


def _normalise(tex: str) -> str:
    tex = PROSE_IN_MATH.sub(" ", tex)
    tex = re.sub(r"\\(?:begin|end)\s*\{[a-z*]+\}", " ", tex)
    tex = TEXT_SUBSCRIPT.sub(lambda m: "_=" + (m.group(1) or m.group(2)).strip(), tex)
    tex = NAMED.sub(lambda m: " " + m.group(1), tex)
    tex = re.sub(r"\\(?:tilde|hat|bar)\b", " ", tex)
    tex = COMMAND.sub(
        lambda m: f" \\{m.group(1)}" if m.group(1) in GREEK else " ", tex
    )

    def group(m):
        inner = m.group(1).strip()
        if "," in inner:
            return " "  # a pair of indices, s_{i,j} or s_{sat,cat}
        if re.fullmatch(r"=?[A-Za-z0-9'+\-]+", inner):
            return "_" + inner
        return " " + inner + " "

    previous = None
    while previous != tex:
        previous, tex = tex, SUBSCRIPT_GROUP.sub(group, tex)
    tex = re.sub(r"_\s+", " ", tex)
    return tex.replace("{", " ").replace("}", " ")


def _raw_symbols(tex: str) -> list[str]:
    """The symbols of a formula as written, before splitting products like QK."""
    found = []
    for base, sub in TOKEN.findall(_normalise(tex)):
        if sub.startswith("="):
            found.append(f"{base}_{sub[1:]}")
        elif sub and not INDEX.fullmatch(sub):
            found.append(f"{base}_{sub}")
        else:
            found.append(base)
    return found


def symbols(tex: str, known: set[str]) -> tuple[list[str], list[str]]:
    """(symbols of ``tex`` that ``known`` defines, symbols it does not).

    Letters written next to each other are a product (``QK``, ``XW_q``) unless the run
    is a known name (``softmax``, ``pos``); an unknown run of three or more letters is
    reported whole, since it is a word, not a product."""
    defined, undefined = [], []
    for symbol in _raw_symbols(tex):
        if symbol in known:
            defined.append(symbol)
            continue
        base, _, sub = symbol.partition("_")
        if base.startswith("\\") or len(base) == 1 or len(base) >= 3:
            undefined.append(symbol)
            continue
        letters = list(base[:-1]) + [base[-1] + (f"_{sub}" if sub else "")]
        for letter in letters:
            (defined if letter in known else undefined).append(letter)
    return defined, undefined


@cache
def glossary_symbols() -> dict[str, str]:
    """Every symbol the glossary defines: {symbol: the row's first cell}."""
    defined = {}
    for table in tables(section(GLOSSARY.read_text(), "Symbols")):
        for row in table[1:]:
            for tex in re.findall(r"\$([^$]+)\$", row[0]):
                for symbol in _raw_symbols(tex):
                    assert defined.get(symbol, row[0]) == row[0], (
                        f"{symbol} is defined twice"
                    )
                    defined[symbol] = row[0]
    return defined


def links(text: str) -> list[str]:
    """The targets of the Markdown links in ``text``."""
    return re.findall(r"\]\(([^)\s]+)\)", text)


def links_to(path: Path, target: str, found: str) -> bool:
    """Whether the link ``found`` on page ``path`` leads to docs page ``target``."""
    found = found.split("#", 1)[0]
    if not found:
        return False
    if path.suffix == ".py":  # a notebook page is served at notebooks/<name>/
        url = posixpath.normpath(posixpath.join("/" + page_id(path)[:-3] + "/", found))
        return url.strip("/") == target[: -len(".md")]
    here = posixpath.dirname(page_id(path))
    return posixpath.normpath(posixpath.join(here, found)) == target


# ---- the rules, page by page --------------------------------------------------------


def _pending(path: Path):
    reason = NOT_YET_REVISED.get(page_id(path))
    return pytest.mark.xfail(reason=reason) if reason else ()


REVISED = [pytest.param(p, marks=_pending(p), id=page_id(p)) for p in PAGES]


def check_budget(page: Path) -> None:
    words = main_path_words(page)
    assert words <= WORD_BUDGET, (
        f"docs/{page_id(page)}: {words} words of prose in the main path, over the "
        f"budget of {WORD_BUDGET}; move machinery into a collapsed block "
        f'(??? note "Under the hood: ...") or cut'
    )


@pytest.mark.parametrize("page", REVISED)
def test_main_path_fits_the_budget(page):
    check_budget(page)


OPENING_MD = re.compile(
    r'\A# [^\n]+\n\n!!! abstract "This page"\n'
    r"    \*\*Answers:\*\* (?P<answers>(?:[^\n]+\n)+?)\n"
    r"    \*\*Assumes:\*\* (?P<assumes>(?:[^\n]+\n)+?)(?:\n|\Z)"
)
OPENING_NOTEBOOK = re.compile(
    r"\A# [^\n]+\n\n\*\*Answers:\*\* (?P<answers>(?:[^\n]+\n?)+?)\n\n"
    r"\*\*Assumes:\*\* (?P<assumes>(?:[^\n]+\n?)+?)(?:\n\n|\Z)"
)


def opening(path: Path) -> re.Match | None:
    if path.suffix == ".py":
        return OPENING_NOTEBOOK.match(notebook_cells(path)[0])
    return OPENING_MD.match(path.read_text())


def check_opening(page: Path) -> None:
    found = opening(page)
    assert found, (
        f"docs/{page_id(page)}: the page must open with its title and a "
        '"This page" box '
        "(**Answers:** a question; **Assumes:** links); see tests/test_prose.py"
    )
    answers = " ".join(found["answers"].split())
    assert answers.endswith("?"), f"docs/{page_id(page)}: Answers is not a question"
    assert links(found["assumes"]), f"docs/{page_id(page)}: Assumes links nothing"


@pytest.mark.parametrize("page", REVISED)
def test_page_opens_with_what_it_answers_and_assumes(page):
    check_opening(page)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_formulas_use_only_glossary_symbols(page):
    known = set(glossary_symbols())
    undefined = sorted({s for tex in formulas(page) for s in symbols(tex, known)[1]})
    assert not undefined, (
        f"docs/{page_id(page)}: symbols not in docs/glossary.md: {undefined}"
    )


def check_glossary_link(page: Path) -> None:
    if page == GLOSSARY:
        return
    known = set(glossary_symbols())
    used = {s for tex in formulas(page) for s in symbols(tex, known)[0]}
    if not used:
        return
    assert any(links_to(page, "glossary.md", t) for t in links(page_markdown(page))), (
        f"docs/{page_id(page)} uses {sorted(used)[:6]} in its formulas but does not "
        "link the glossary (glossary.md)"
    )


@pytest.mark.parametrize("page", REVISED)
def test_pages_with_symbols_link_the_glossary(page):
    check_glossary_link(page)


def test_glossary_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+- [^:\n]+: glossary\.md$", nav, re.M)
    assert re.search(r"^\s+- [^:\n]+: claims\.md$", nav, re.M)


def test_glossary_defines_the_core_symbols():
    """The symbols every page builds on are in the glossary, each once."""
    core = {"x", "X", "W_q", "W_k", "W_v", "W_o", "Q", "K", "V", "d_model", "d_k",
            "d_v", "T", "B", "H", "D_h", "A", "softmax", "M"}
    assert core <= set(glossary_symbols())


def test_abbreviations_are_the_glossary_table():
    """The abbreviation tooltips (abbr's ``glossary`` setting in mkdocs.yml) are the
    table on the glossary page, word for word: one list, shown and used."""
    configured = _config()["mdx_configs"]["abbr"]["glossary"]
    (table,) = tables(section(GLOSSARY.read_text(), "Abbreviations"))
    shown = {row[0]: row[1] for row in table[1:]}
    assert shown == configured


def test_symbol_parsing():
    known = {"Q", "K", "W_q", "X", "softmax", "d_k", "d_model", "W_in", "A", "s"}
    assert symbols(r"\operatorname{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)",
                   known) == (["softmax", "Q", "K", "d_k"], [])
    assert symbols(r"XW_q^{(i)} + W_\text{in}[0:D]", known) == (["X", "W_q", "W_in"],
                                                                  ["i", "D"])
    assert symbols(r"A_{ij} = s_{\text{sat},\text{cat}}", known) == (["A", "s"], [])
    assert symbols(r"(T, d_\text{model})", known)[0] == ["d_model"]
    assert symbols(r"\text{if query } i \text{ may attend}", known) == ([], ["i"])
    assert symbols(r"pos \cdot \theta_i", known)[1] == ["pos", r"\theta"]


def test_word_count_rules():
    text = (
        "# Title\n\nTwo words $x$ 0.5\n\n```python\nhidden = 1\n```\n\n"
        '??? note "Closed"\n    not counted\n\n???+ note "Open"\n    counted\n\n'
        "| a | 1 |\n| --- | --- |\n| b c | 2 |\n\n$$\nA = B\n$$\n"
    )
    parser = _MainPath()
    parser.feed(render(text))
    assert parser.words == ["Title", "Two", "words", "(formula)", "Closed", "Open",
                            "counted", "a", "b", "c"]
    assert parser.formulas == ["x", "A = B"]


# ---- the claims audit record --------------------------------------------------------

KINDS = ("checked", "tested", "qualified", "cited", "convention")


def flat(text: str) -> str:
    """Text with Markdown emphasis, code ticks and link targets removed, one line."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.replace("**", "").replace("`", "")
    text = re.sub(r"(?<!\w)\*(?!\s)|(?<!\s)\*(?!\w)", "", text)
    return " ".join(text.split())


NO_CLAIMS = (
    "No sentence on this page states how a library, a kernel, a paper or real models "
    "behave."
)


def claims_by_page() -> dict[str, str]:
    """{page: the text of its entry in the claims record}."""
    text = CLAIMS.read_text()
    return {
        target: section(text, f"[{title}]({target})")
        for title, target in re.findall(r"^## \[([^\]]+)\]\(([^)]+)\)\s*$", text, re.M)
    }


def _page_text(target: str) -> str:
    return flat(prose(page_markdown(DOCS / target)))


def _page_code(target: str) -> str:
    path = DOCS / target
    if path.suffix == ".py":
        notebook = jupytext.read(path, fmt="py:percent")
        return "".join(c.source for c in notebook.cells if c.cell_type == "code")
    return "".join(b.source for b in harness.collect_page(path) if not b.standalone)


def check_claims(page: Path) -> None:
    """The page's entry in docs/claims.md: a table whose rows each quote a claim
    (“...”) as it stands on the page, say how it is backed, and, for a checked
    claim, name code (`...`) that a block of the page runs; or the sentence that
    the page makes no such claim."""
    target = page_id(page)
    entry = claims_by_page().get(target)
    assert entry is not None, f"docs/claims.md has no entry for {target}"
    rows = [row for table in tables(entry) for row in table[1:]]
    if not rows:
        assert NO_CLAIMS in flat(entry), f"docs/claims.md: {target} has no claims table"
        return
    count = re.search(r'"(\d+) claims?, and what backs each"', entry)
    assert count and int(count.group(1)) == len(rows), (
        f"docs/claims.md: the title of {target}'s table must count its {len(rows)} rows"
    )
    text = _page_text(target)
    for row in rows:
        assert len(row) == 3, f"{target}: a row needs claim, how, backing: {row}"
        claim, how, backing = row
        quotes = re.findall(r"“([^”]+)”", claim + " " + backing)
        assert quotes, f"{target}: claim without a quote: {claim}"
        for quote in quotes:
            assert flat(quote) in text, f"{target}: “{quote}” is not on the page"
        kind = flat(how).lower()
        assert kind in KINDS, f"{target}: {how!r} is not one of {KINDS}"
        named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", backing)
        for path, name in named:
            assert f"def {name}(" in (ROOT / path).read_text(), f"no {path}::{name}"
        code = [c for c in re.findall(r"`([^`]+)`", backing)
                if not c.startswith("tests/")]
        if kind == "checked":
            assert code, f"{target}: checked claim names no code: {claim}"
            # the block may be on another page that the backing links ("on [...](x.md)")
            elsewhere = re.search(r"\bon \[[^\]]+\]\(([\w/.-]+\.md)[^)]*\)", backing)
            where = elsewhere.group(1) if elsewhere else target
            for fragment in code:
                assert fragment in _page_code(where), (
                    f"{target}: no block of {where} runs `{fragment}`"
                )
        if kind == "tested":
            assert named, f"{target}: a tested claim names no tests/...::test: {claim}"
        if kind == "convention":
            assert any("convention" in q.lower() for q in quotes), (
                f"{target}: a convention must be called one on the page: {claim}"
            )


@pytest.mark.parametrize("page", [p for p in REVISED if p.values[0] != CLAIMS])
def test_claims_record_covers_the_page(page):
    check_claims(page)


def test_claims_record_names_only_pages_that_exist():
    assert set(claims_by_page()) <= {page_id(p) for p in PAGES}


def test_pages_not_yet_revised_still_need_it():
    """A page that passes every check must leave NOT_YET_REVISED (empty now: every
    page is held to every check)."""
    for name in sorted(NOT_YET_REVISED):
        page = DOCS / name
        assert page.exists(), f"{name} is listed in NOT_YET_REVISED but does not exist"
        failures = 0
        for check in (check_budget, check_opening, check_glossary_link, check_claims):
            try:
                check(page)
            except AssertionError:
                failures += 1
        assert failures, f"{name} passes every check: remove it from NOT_YET_REVISED"
