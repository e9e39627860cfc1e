"""The built site is the ground truth. Every code block a reader sees highlighted as
Python, on every page (Markdown or notebook, inline or included, whatever the fence or
language alias), was run by the harness; every output shown under it is one the
harness compared. Anything else fails, naming the page and the text shown.

Notebook code cells count as run when the strict build executed them: mkdocs-jupyter
runs every cell (``execute: true``, no ``execute_ignore``), a cell that raises fails the
build (``allow_errors: false``), and the outputs under a cell are what a run printed:
this build's, or one kept by mkdocs-jupyter's cache for exactly the same source (the
copy with its ``snippets`` includes expanded, so a change to the code they include
runs the notebook again) in the same environment (hooks/notebooks.py keys the cache's
folder by requirements.txt and the Python version). So there is nothing written by
hand to compare.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from mkdocs.structure.files import File

from tests import harness, sitecheck
from tests.conftest import ROOT, make_scratch_project, run_suite

PAGES = harness.pages()


def same(a: str, b: str) -> bool:
    """Equal as shown: tabs as spaces, no trailing spaces, no blank lines around."""
    def norm(text):
        return [line.rstrip() for line in text.expandtabs(4).strip().splitlines()]
    return norm(a) == norm(b)


def built_page(site: Path, page: str) -> Path:
    """Where MkDocs writes a page; a notebook gets the URL of a Markdown page."""
    source = page.removesuffix(".py") + ".md" if page.endswith(".py") else page
    urls = harness.mkdocs_yml().get("use_directory_urls", True)
    return site / File(source, None, str(site), urls).dest_uri


def unchecked(path: Path, html: str | bytes, docs: Path = harness.DOCS) -> list[str]:
    """What the built page shows that no check stands behind."""
    page = harness.page_name(path, docs)
    blocks = harness.collect_page(path, docs)
    pieces = [(piece, verdict) for block, verdict
              in zip(blocks, harness.verdicts(page, blocks)) for piece in block.pieces]
    cells = [code for kind, code in (harness.notebook_cells(path) if path.suffix == ".py"
                                     else []) if kind == "code"]
    problems: list[str] = []
    used_pieces: set[int] = set()
    used_cells: set[int] = set()
    ran_cells: set[int | None] = set()
    under = None  # the python block whose output a reader sees next
    compared = False

    def say(what: str, text: str) -> None:
        problems.append(f"docs/{page}: {what}:\n{textwrap.indent(text.rstrip(), '    ')}")

    for shown in sitecheck.shown_blocks(html):
        if shown.kind == "heading":
            under = None
        elif shown.kind == "python":
            j = next((j for j, (p, _) in enumerate(pieces)
                      if j not in used_pieces and same(p.code, shown.text)), None)
            under, compared = (None, False) if j is None else (pieces[j], False)
            if j is None:
                say("a Python block the harness did not run", shown.text)
                continue
            used_pieces.add(j)
            for problem in pieces[j][1].problems:
                say(f"a Python block that may not skip or fail ({problem})", shown.text)
        elif shown.kind == "cell":
            k = next((k for k, code in enumerate(cells)
                      if k not in used_cells and same(code, shown.text)), None)
            if k is None:
                say("notebook code that the build did not run", shown.text)
            else:
                used_cells.add(k)
                ran_cells.add(shown.cell)
            under = None
        elif shown.kind == "cell-output":
            if shown.cell not in ran_cells:
                say("a notebook output under no code cell the build ran", shown.text)
        elif under is not None:
            piece, verdict = under
            if (verdict.runs and not compared and piece.expected_output is not None
                    and same(piece.expected_output, shown.text)):
                compared = True
            else:
                say(f"a {shown.language or 'plain'} block under a Python block that is "
                    "not the output the harness compared for it", shown.text)
        elif shown.kind == "output":
            say("an output block that no checked block prints", shown.text)
    return problems


@pytest.mark.xdist_group("site")
@pytest.mark.parametrize("page", PAGES, ids=harness.page_name)
def test_everything_shown_was_run_and_compared(site, page):
    problems = unchecked(page, built_page(site, harness.page_name(page)).read_bytes())
    assert not problems, "\n".join(problems)


@pytest.mark.xdist_group("site")
def test_built_pages_without_a_source_show_no_code(site):
    sources = {built_page(site, harness.page_name(p)) for p in PAGES}
    shown = [
        f"{path.relative_to(site)}: {block.kind} block {block.text[:60]!r}"
        for path in sorted(site.rglob("*.html")) if path not in sources
        for block in sitecheck.shown_blocks(path.read_bytes()) if block.kind != "heading"
    ]
    assert not shown, "pages the harness cannot read show code:\n" + "\n".join(shown)


def test_the_build_runs_every_notebook_cell():
    jupyter = harness.mkdocs_settings("mkdocs-jupyter")
    assert jupyter.get("execute") is True and not jupyter.get("execute_ignore")
    assert jupyter.get("allow_errors") is False


def test_cached_notebook_outputs_are_keyed_by_source_and_environment(tmp_path, monkeypatch):
    """What mkdocs-jupyter reuses: outputs of the same expanded source (its key hashes
    the file the page points at, which hooks/notebooks.py makes the expanded copy) in
    the same environment (the folder)."""
    from mkdocs.config import load_config

    from hooks import notebooks

    monkeypatch.delenv("SITE_PAGE", raising=False)
    config = load_config(str(ROOT / "mkdocs.yml"))
    config = config.plugins.on_config(config)
    jupyter = config.plugins["mkdocs-jupyter"].config
    assert jupyter["cache"] is True
    assert Path(jupyter["cache_dir"]) == (ROOT / ".cache" / "mkdocs-jupyter"
                                          / notebooks.environment_key(ROOT))
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    before = notebooks.environment_key(tmp_path)
    (tmp_path / "requirements.txt").write_text("torch==2.13.1\n")
    assert notebooks.environment_key(tmp_path) != before
    # a one-page build has no notebook: it must not evict the cached ones
    monkeypatch.setenv("SITE_PAGE", "masks")
    config = load_config(str(ROOT / "mkdocs.yml"))
    config = config.plugins.on_config(config)
    assert config.plugins["mkdocs-jupyter"].config["cache"] is False


# ---- planted failures: one scratch site, one page per way of showing unchecked code

WRONG = "\n\n<!--pytest-codeblocks:expected-output-->\n```text\n999\n```\n"  # 1 + 1 is 2
GROUND_TRUTH = "FAILED tests/test_ground_truth.py::test_everything_shown_was_run_and_compared"
OFFLINE = "FAILED tests/test_site.py::test_site_loads_nothing_from_other_hosts"
PLANTED = {  # page: (its text, what the suite must report)
    "include-outside.md": ('# P\n\n--8<-- "snippets/planted.md"\n',
                           r"FAILED docs/include-outside\.md::include-outside\.md:3 \("
                           r"snippets/planted\.md:1\)"),
    "tilde.md": ("~~~python\nprint(1 + 1)\n~~~\n", rf"{GROUND_TRUTH}\[tilde\.md\]"),
    "extension.markdown": ("```python\nprint(1 + 1)\n```" + WRONG,
                           r"FAILED docs/extension\.markdown::extension\.markdown:1"),
    "attributes.md": ("```{.python}\nprint(1 + 1)\n```" + WRONG,
                      r"FAILED docs/attributes\.md::attributes\.md:1"),
    **{f"alias-{alias}.md": (f"```{alias}\nprint(1 + 1)\n```" + WRONG,
                             rf"FAILED docs/alias-{alias}\.md::alias-{alias}\.md:1")
       for alias in ["py3", "ipython3", "python2", "numpy", "sage", "pyi", "starlark",
                     "bazel"]},
    "replaced-output.md": ("```python\nprint(1 + 1)\n```" + WRONG
                           + "\n```console\n$ true\n```\n\n"
                           "<!--pytest-codeblocks:expected-output-->\n```text\n2\n```\n",
                           r"ERROR docs/replaced-output\.md"),
    **{f"{name}.md": (f"{marker}\n```python\nprint(1 + 1)\n```" + WRONG,
                      rf"FAILED docs/{name}\.md::{name}\.md:2")
       for name, marker in [("xfail", "<!--pytest.mark.xfail-->"),
                            ("xfail-run-false", "<!--pytest.mark.xfail(run=False)-->"),
                            ("importorskip",
                             "<!--pytest-codeblocks:importorskip(no_such_module)-->"),
                            ("skip-empty-reason", '<!--pytest.mark.skip(reason="")-->'),
                            ("skip-quote-reason", "<!--pytest.mark.skip(reason=\"'\")-->")]},
    "skipfile.md": ("<!--pytest-codeblocks:skipfile-->\n\n```python\nprint(1 + 1)\n```\n",
                    r"ERROR docs/skipfile\.md"),
    "unmarked-output.md": ("```python\nprint(1 + 1)\n```\n\n```text\n999\n```\n",
                           rf"{GROUND_TRUTH}\[unmarked-output\.md\]"),
    "raw-output.md": ("```python\nprint(1 + 1)\n```\n\n<pre>999</pre>\n",
                      rf"{GROUND_TRUTH}\[raw-output\.md\]"),
    "blockquote.md": ("> ```python\n> print(1 + 1)\n> ```\n",
                      rf"{GROUND_TRUTH}\[blockquote\.md\]"),
    "static.html": ('<div class="language-python highlight"><pre><code>print(1 + 1)'
                    "</code></pre></div>\n", r"FAILED tests/test_ground_truth\.py::"
                    r"test_built_pages_without_a_source_show_no_code"),
    "mermaid.md": ('<pre class="mermaid">graph LR\n  A --> B</pre>\n',
                   r"mermaid/index\.html: mermaid"),
    "notebooks/planted.py": ("# %% [markdown]\n# # Planted\n#\n# ```python\n"
                             "# print(1 + 1)\n# ```\n#\n"
                             "# <!--pytest-codeblocks:expected-output-->\n# ```text\n"
                             "# 999\n# ```\n\n# %%\nprint('ran')\n\n# %% [markdown]\n"
                             "# ```mermaid\n# graph LR\n# ```\n",
                             # both, in any order: the block's item, the diagram
                             r"(?=[\s\S]*FAILED docs/notebooks/planted\.py::notebooks/"
                             r"planted\.py cell 1:3)[\s\S]*notebooks/planted/index\.html: "
                             r"mermaid"),
}
CONTROL = (  # a page that shows each kind of block correctly
    '# Control\n\n```python title="x.py"\nprint(1 + 1)\n```\n\n'
    "<!--pytest-codeblocks:expected-output-->\n```text\n2\n```\n\n"
    '<!--pytest.mark.skip(reason="an excerpt shown on its own")-->\n'
    "```python\n    return x\n```\n\n## Commands\n\n```console\n$ make test\n```\n"
)


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """The suite's code-block items, ground truth and offline check, run once on a
    scratch site that has every planted page and a control page."""
    project = make_scratch_project(tmp_path_factory.mktemp("planted"))
    for name, (text, _) in {**PLANTED, "control.md": (CONTROL, "")}.items():
        (project / "docs" / name).parent.mkdir(exist_ok=True)
        (project / "docs" / name).write_text(text)
    (project / "docs" / "index.md").write_text("# Home\n")
    (project / "snippets" / "planted.md").write_text("```python\nprint(1 + 1)\n```" + WRONG)
    (project / "tests").mkdir()
    (project / "tests" / "skips.toml").write_text(
        '[[skip]]\npage = "control.md"\nreason = "an excerpt shown on its own"\nblocks = 1\n'
    )
    proc = run_suite(project, "docs", "tests/test_ground_truth.py::"
                     "test_everything_shown_was_run_and_compared",
                     "tests/test_ground_truth.py::"
                     "test_built_pages_without_a_source_show_no_code",
                     "tests/test_site.py::test_site_loads_nothing_from_other_hosts")
    return proc.stdout + proc.stderr


@pytest.mark.xdist_group("planted")
@pytest.mark.parametrize("page", PLANTED, ids=str)
def test_planted_evasion_fails_the_suite(planted_run, page):
    assert re.search(PLANTED[page][1], planted_run), planted_run


@pytest.mark.xdist_group("planted")
def test_control_page_passes_the_suite(planted_run):
    assert "PASSED docs/control.md::control.md:3" in planted_run, planted_run
    assert "SKIPPED" in planted_run and "an excerpt shown on its own" in planted_run
    assert f"PASSED {GROUND_TRUTH.removeprefix('FAILED ')}[control.md]" in planted_run
    assert not re.search(r"(FAILED|ERROR) .*control", planted_run), planted_run
