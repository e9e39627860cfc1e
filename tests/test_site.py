"""The site as a whole: strict build, nothing loaded from elsewhere, and the guards
that keep every code block on every page under test."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from hooks import markers
from tests import harness, sitecheck
from tests.conftest import ROOT, mkdocs_build

PAGES = harness.pages()  # Markdown pages and notebooks
MARKDOWN = [p for p in PAGES if p.suffix != ".py"]
SECTION = re.compile(r"--8<--\s*\[start:([a-z0-9-]+)\]")
page_id = harness.page_name


@pytest.mark.xdist_group("site")
def test_strict_build_is_clean(site_build):
    assert site_build.returncode == 0, site_build.log
    # --strict turns MkDocs warnings into a failure; also make sure none were printed
    # (the Jupyter kernel's own stderr chatter is not a MkDocs warning).
    assert not re.search(r"^WARNING\s+-", site_build.log, re.M), site_build.log


@pytest.mark.xdist_group("site")
def test_site_loads_nothing_from_other_hosts(site):
    found = sitecheck.external_references(site) + sitecheck.on_demand_fetches(site)
    assert not found, "external references in the built site:\n" + "\n".join(
        f"  {page}: {url}" for page, url in found
    )
    assert (site / "index.html").exists()


@pytest.mark.xdist_group("site")
def test_search_index_holds_the_prose_not_the_code_listings(site):
    """Code blocks are left out of the search index (hooks/lightload.py); the prose and
    its inline code are in it, so a name a page talks about is still found."""
    index = json.loads((site / "search" / "search_index.json").read_text())
    text = " ".join(doc["text"] for doc in index["docs"])
    assert "softmax" in text and "<code>scaled_dot_product_attention</code>" in text
    assert "def stable_softmax(" not in text  # a line of a listing on two pages
    assert "set_printoptions(precision=4" not in text  # the first line of many blocks


def test_external_reference_scanner_finds_each_kind(tmp_path):
    (tmp_path / "page.html").write_text(
        '<link rel="stylesheet" href="https://cdn.example/x.css">'
        '<link rel="preconnect" href="//fonts.example">'
        '<link rel="canonical" href="https://example.org/">'  # not a load
        '<a href="https://example.org/">a link is not a load</a>'
        '<script src="http://cdn.example/x.js"></script>'
        '<img srcset="local.png 1x, https://img.example/y.png 2x">'
        '<div style="background: url(https://img.example/bg.png)"></div>'
        "<style>@import 'https://css.example/a.css';</style>"
        '<img src="data:image/png;base64,AAAA"><script src="assets/local.js"></script>'
    )
    (tmp_path / "x.css").write_text("@font-face{src:url('https://font.example/f.woff2')}")
    found = sitecheck.external_references(tmp_path)
    assert found == [
        ("page.html", "https://cdn.example/x.css"),
        ("page.html", "//fonts.example"),
        ("page.html", "http://cdn.example/x.js"),
        ("page.html", "https://img.example/y.png"),
        ("page.html", "https://img.example/bg.png"),
        ("page.html", "https://css.example/a.css"),
        ("x.css", "https://font.example/f.woff2"),
    ]


def test_on_demand_fetches_are_found(tmp_path):
    """What Material's JavaScript (or an inline script) would fetch from another host
    once the page is open: each trigger is reported, and a page without one is not."""
    (tmp_path / "diagram.html").write_text('<pre class="mermaid"><code>graph LR</code></pre>')
    (tmp_path / "repo.html").write_text(
        '<a href="https://github.com/o/r" class="md-source" data-md-component="source">r</a>'
    )
    (tmp_path / "script.html").write_text(
        '<script>var t=document.createElement("script");'
        't.src="https://www.googletagmanager.com/gtag/js?id=G";</script>'
        '<script type="module">await import("https://cdn.example/m.mjs")</script>'
    )
    (tmp_path / "fine.html").write_text(
        '<pre><code class="language-mermaid">graph LR</code></pre><script>'
        'fetch("search/search_index.json"); var ns = "http://www.w3.org/2000/svg"</script>'
    )
    found = sitecheck.on_demand_fetches(tmp_path)
    assert [page for page, _ in found] == ["diagram.html", "repo.html", "script.html",
                                           "script.html"]
    assert "unpkg.com" in found[0][1] and "api.github.com" in found[1][1]
    assert "googletagmanager" in found[2][1] and "cdn.example" in found[3][1]


@pytest.mark.parametrize("page", MARKDOWN, ids=page_id)
def test_code_is_fenced_as_python_and_commands_as_console(page):
    """House style: Python is fenced as ``python`` (the harness runs every alias Pygments
    highlights as Python, but readers' tools know this one); commands for readers go
    in ``console`` blocks, never ``sh``/``bash``/``zsh``, which a plain
    ``pytest --codeblocks`` would execute."""
    bad = [
        f"docs/{page_id(page)}:{fence.lineno}: ```{fence.info}"
        for fence in markers.fences(page.read_text())
        if fence.python and fence.language != "python"
        or fence.language in {"sh", "bash", "zsh"}
    ]
    assert not bad, "use ```python for code and ```console for commands:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_blocks_skip_or_fail_only_as_listed(page):
    """A skip, xfail or importorskip needs a written reason listed in tests/skips.toml
    (the code-block items fail the same way; this says it without running them)."""
    blocks = harness.collect_page(page)
    problems = [p for v in harness.verdicts(page_id(page), blocks) for p in v.problems]
    assert not problems, "\n".join(problems)


def test_every_listed_skip_is_used():
    used = set()
    for page in PAGES:
        for block in harness.collect_page(page):
            for text in block.marks:
                name, args, kwargs = harness.parse_mark(text)
                first = args[0] if name == "skip" and args else ""
                used.add((page_id(page), harness.KINDS.get(name), kwargs.get("reason", first)))
            if block.importorskip:
                used.add((page_id(page), "importorskip", block.importorskip))
    unused = sorted(set(harness.registry()) - used)
    assert not unused, "tests/skips.toml lists what no page marks:\n" + "\n".join(
        map(str, unused))


def _includes():
    """Every one-line ``--8<--`` include of the pages and notebooks, as
    pymdownx.snippets reads it: (page:line, file, section)."""
    pre = harness.snippet_preprocessor()
    found = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), start=1):
            m = pre.RE_ALL_SNIPPETS.match(line)
            if m and m["inline_marker"] and not m["escape"]:
                target = pre.parse_snippet_target(m["snippet"][1:-1].strip())
                found.append((f"docs/{page_id(page)}:{n}", target["path"], target["section"]))
    return found


def test_every_include_points_somewhere():
    missing = []
    for where, file_part, section in _includes():
        path = ROOT / file_part
        if not path.is_file():
            missing.append(f"{where}: no file {file_part}")
        elif section and f"[start:{section}]" not in path.read_text():
            missing.append(f"{where}: no section {section!r} in {file_part}")
    assert not missing, "\n".join(missing)


def test_every_snippets_section_is_shown_on_a_page():
    included = {(f, s) for _, f, s in _includes()}
    whole_files = {f for f, s in included if s is None}
    unused = []
    for path in sorted((ROOT / "snippets").glob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for section in SECTION.findall(path.read_text()):
            if rel not in whole_files and (rel, section) not in included:
                unused.append(f"{rel}:{section}")
    assert not unused, "sections no page includes:\n" + "\n".join(unused)


# The packages whose modules pages include or the build imports.
PACKAGES = ("snippets", "figures")
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).glob("*.py"))


def test_sections_are_unique_closed_and_fit_the_page():
    """Every snippets and figures module: each section opens once and then closes, is
    named in kebab-case, and no line is wider than the 88 columns a code block
    shows."""
    for path in MODULES:
        name = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        markers = re.findall(r"^\s*# --8<-- \[(start|end):([^\]]+)\]$", text, re.M)
        for section in {n for _, n in markers}:
            assert re.fullmatch(r"[a-z]+(-[a-z]+)*", section), f"{name}: {section}"
            assert [k for k, n in markers if n == section] == ["start", "end"], (
                f"{name}: section {section} must open once, then close once"
            )
        assert max((len(line) for line in text.splitlines()), default=0) <= 88, name


def test_modules_import_without_side_effects(tmp_path):
    """Importing every snippets and figures module prints nothing, writes no file,
    draws nothing from torch's random generator and loads no plotting library."""
    import subprocess
    import sys

    modules = [f"{p.parent.name}.{p.stem}" for p in MODULES if p.stem != "__init__"]
    code = (
        "import importlib, sys, torch\n"
        "state = torch.random.get_rng_state()\n"
        + "".join(f"importlib.import_module('{m}')\n" for m in modules)
        + "assert torch.equal(torch.random.get_rng_state(), state), 'RNG used'\n"
        + "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    before = {p for p in tmp_path.rglob("*")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert {p for p in tmp_path.rglob("*")} == before


# The build itself fails on each kind of mistake a page can make.
BROKEN = {
    "bad-tex.md": ("Broken: $\\frac{a$.\n", "cannot convert TeX"),
    "missing-page.md": ("[gone](missing.md)\n", "missing.md"),
    "missing-anchor.md": ("[gone](#no-such-heading)\n", "no-such-heading"),
}


def test_strict_build_fails_on_bad_tex_and_broken_links(scratch_project):
    """One scratch site, one page per mistake: each is reported, and the build fails."""
    docs = scratch_project / "docs"
    (docs / "index.md").write_text("# Home\n")
    for name, (text, _) in BROKEN.items():
        (docs / name).write_text(f"# Page\n\n{text}")
    build = mkdocs_build(scratch_project / "site", scratch_project / "mkdocs.yml")
    assert build.returncode != 0, build.log
    for name, (_, needle) in BROKEN.items():
        assert re.search(rf"WARNING.*{re.escape(name)}.*{re.escape(needle)}|"
                         rf"WARNING.*{re.escape(needle)}.*{re.escape(name)}", build.log), (
            f"{name}: no warning naming {needle!r}:\n{build.log}"
        )


def test_strict_build_fails_on_a_missing_snippets_section(scratch_project):
    (scratch_project / "docs" / "index.md").write_text(
        '# Page\n\n```python\n--8<-- "snippets/attention.py:no-such-section"\n```\n'
    )
    build = mkdocs_build(scratch_project / "site", scratch_project / "mkdocs.yml")
    assert build.returncode != 0, build.log
    assert "no-such-section" in build.log, build.log


def test_scratch_page_builds_when_correct(scratch_project):
    """The control for the cases above: the same scratch site builds when right."""
    (scratch_project / "docs" / "index.md").write_text(
        "# Page\n\nFine: $\\frac{a}{b}$ and [here](#page).\n\n"
        '```python\n--8<-- "snippets/attention.py:imports"\n```\n'
    )
    build = mkdocs_build(scratch_project / "site", scratch_project / "mkdocs.yml")
    assert build.returncode == 0, build.log
    assert "<math" in (scratch_project / "site" / "index.html").read_text()


def _has_code(page: Path) -> bool:
    try:
        return bool(harness.collect_page(page))
    except harness.PageError:  # the code-block items report it
        return False


CODE_PAGES = [p for p in MARKDOWN if _has_code(p)]


@pytest.mark.parametrize("page", CODE_PAGES, ids=page_id)
def test_page_ends_with_check_yourself_and_all_the_code(page):
    """Each page with code ends with a "Check yourself" question whose answer is
    computed by a checked block, and a collapsed "All the code on this page" block
    that runs alone and prints everything the page shows, in the page's order."""
    text = page.read_text()
    name = f"docs/{page_id(page)}"
    assert re.search(r'^\?\?\? question "Check yourself', text, re.M), (
        f'{name}: no collapsed ??? question "Check yourself: ..." block'
    )
    assert re.search(r'^\?\?\? example "All the code on this page"', text, re.M), (
        f'{name}: no collapsed ??? example "All the code on this page" block'
    )
    blocks = harness.collect_page(page)
    alone = [b for b in blocks if b.standalone]
    assert len(alone) == 1, f'{name}: needs one python block titled "All the code on this page"'
    (block,) = alone
    assert block is blocks[-1], f"{name}: the all-the-code block must be the page's last block"
    printed = block.pieces[0].expected_output
    assert printed, f"{name}: the all-the-code block needs its expected output"
    question_line = text.count("\n", 0, text.index('??? question "Check yourself')) + 1
    answers = [b for b in blocks[:-1] if b.lineno > question_line]
    assert any(p.expected_output for b in answers for p in b.pieces), (
        f"{name}: the check-yourself answer must be printed by a block with expected output"
    )
    pos = 0
    for b in blocks[:-1]:
        for p in b.pieces:
            if p.expected_output:
                shown = p.expected_output.strip()
                found = printed.find(shown, pos)
                assert found >= 0, (
                    f"{name}:{p.lineno}: the all-the-code block does not print this output"
                    f" (after what it printed before):\n{shown}"
                )
                pos = found + len(shown)
    # Each definition once: a block that includes a section twice is the concatenation
    # of the page's blocks, not the code a reader would keep.
    source = text[text.index('??? example "All the code on this page"'):]
    source = source[:source.index("pytest-codeblocks:expected-output")]
    twice = [k for k, n in Counter(re.findall(r'--8<--\s*"([^"]+)"', source)).items() if n > 1]
    assert not twice, f"{name}: the all-the-code block includes these more than once: {twice}"


def first_load_bytes(site: Path, page: Path, gzipped=None) -> int:
    """Roughly what a first visit to ``page`` transfers, gzipped as GitHub Pages
    serves it: the HTML and what it loads at once (``sitecheck.loads``: stylesheets,
    scripts, icon, math font, figures not ``loading="lazy"``). Lighthouse also counts
    headers and Material's small fetches (sitemap, search worker), about 6 KiB more
    here, and what scripts fetch (the explorer's widget and data):
    tests/test_lighthouse.py measures the home page, the longest page and the explorer
    that way. ``gzipped`` memoises the size of each file (pages share most of them)."""
    import gzip
    from urllib.parse import urljoin

    import lxml.html

    gzipped = {} if gzipped is None else gzipped
    html = page.read_bytes()
    base = "/" + page.parent.relative_to(site).as_posix() + "/"
    total = len(gzip.compress(html, 9))
    for url in set(sitecheck.loads(lxml.html.fromstring(html), eager=True)):
        if url.startswith("data:") or sitecheck.is_external(url):
            continue
        path = site / urljoin(base, url.split("?")[0]).lstrip("/")
        if path not in gzipped:
            gzipped[path] = len(gzip.compress(path.read_bytes(), 9))
        total += gzipped[path]
    return total


@pytest.mark.xdist_group("site")
def test_every_page_first_load_fits_the_budget(site):
    """Issue 12's budget, 150 KiB for the first load of any page (the search index
    aside), on every page, with 6 KiB left for what Lighthouse counts beside files."""
    heavy, gzipped = {}, {}
    for page in site.rglob("index.html"):
        if page.parent.name in ("assets", "search"):
            continue
        kib = first_load_bytes(site, page, gzipped) / 1024
        if kib > 144:
            heavy[page.parent.relative_to(site).as_posix()] = round(kib, 1)
    assert not heavy, f"first load over 144 KiB: {heavy}"
