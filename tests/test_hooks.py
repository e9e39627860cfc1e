"""The build hooks: generated files, notebook pages, accessibility fixes."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from hooks import a11y, generated, markers, notebooks
from tests.conftest import mkdocs_build


def test_generators_collects_every_generated_mapping(tmp_path, monkeypatch):
    pkg = tmp_path / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("GENERATED = {'figures/a.svg': lambda: '<svg/>'}\n")
    (pkg / "b.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert generated.render_all("fakepkg") == {"figures/a.svg": "<svg/>"}
    (pkg / "c.py").write_text("GENERATED = {'figures/a.svg': lambda: 'again'}\n")
    for name in [m for m in sys.modules if m.startswith("fakepkg")]:
        del sys.modules[name]
    with pytest.raises(ValueError, match="figures/a.svg"):
        generated.generators("fakepkg")


def test_search_dialog_gets_a_name():
    assert 'aria-label="Search"' in a11y.name_search_dialog(a11y.SEARCH_DIALOG)


NOTEBOOK = textwrap.dedent('''\
    # %% [markdown]
    # # Title
    # Some $x^2$ math.

    # %%
    print(1 + 1)
''')


def test_notebook_becomes_ipynb():
    nb = json.loads(notebooks.to_ipynb(NOTEBOOK))
    assert [c["cell_type"] for c in nb["cells"]] == ["markdown", "code"]
    assert "".join(nb["cells"][1]["source"]) == "print(1 + 1)"


def test_notebook_math_converted_outside_code_only():
    page = (
        '<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput">'
        "<p>Inline $a_1$ and</p><p>$$\\frac{1}{2}$$</p><code>$not math$</code></div>"
        "<pre>$outside$</pre>"
    )
    out, errors = notebooks.convert_math(page, "nb.py")
    assert errors == []
    assert out.count("<math") == 2
    assert "<code>$not math$</code>" in out and "<pre>$outside$</pre>" in out
    _, errors = notebooks.convert_math(page.replace("a_1", "\\frac{a"), "nb.py")
    assert errors and errors[0].startswith("nb.py: cannot convert TeX")


def test_downloads_link_both_formats():
    links = notebooks.downloads("playground")
    assert 'href="../playground.ipynb"' in links and 'href="playground.py"' in links


def test_failing_notebook_cell_fails_the_strict_build(scratch_project):
    """allow_errors is off: a cell that raises is a broken page, not a rendered error."""
    (scratch_project / "docs" / "index.md").write_text("# Home\n")
    nbdir = scratch_project / "docs" / "notebooks"
    nbdir.mkdir()
    (nbdir / "broken.py").write_text(NOTEBOOK + "\n# %%\n1 / 0\n")
    build = mkdocs_build(scratch_project / "site", scratch_project / "mkdocs.yml")
    assert build.returncode != 0
    assert "ZeroDivisionError" in build.log


@pytest.mark.xdist_group("site")
def test_built_notebooks_have_outputs_downloads_and_no_mathjax(site):
    pages = sorted((site / "notebooks").glob("*/index.html"))
    assert pages, "no notebook pages were built"
    for page in pages:
        text = page.read_text()
        stem = page.parent.name
        assert "jp-OutputArea-output" in text, f"{stem}: no cell output"
        assert "mathjax" not in text.lower(), f"{stem}: a MathJax loader is left"
        assert '<script src="">' not in text
        assert (page.parent / f"{stem}.py").exists()
        nb = json.loads((site / "notebooks" / f"{stem}.ipynb").read_text())
        assert nb["cells"], f"{stem}.ipynb is empty"


def test_test_markers_are_dropped_from_the_rendered_page():
    page = (
        "Text\n\n!!! note\n\n    <!--pytest-codeblocks:cont-->\n    ```python\n    x\n"
        "    ```\n<!--pytest.mark.skip(reason=\"r\")-->\n<!-- an ordinary comment -->\n"
    )
    out = markers.strip_markers(page)
    assert "pytest" not in out
    assert "<!-- an ordinary comment -->" in out and "    ```python\n    x\n" in out


def test_background_writes_text_and_bytes_and_reports_errors(tmp_path):
    def broken():
        raise RuntimeError("generator failed")

    (tmp_path / "figures").mkdir()
    generated._Background(
        {"figures/a.svg": lambda: "<svg/>", "figures/b.bin": lambda: b"\x00\x01"}, tmp_path
    ).wait()
    assert (tmp_path / "figures/a.svg").read_text() == "<svg/>"
    assert (tmp_path / "figures/b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(RuntimeError, match="generator failed"):
        generated._Background({"figures/c.svg": broken}, tmp_path).wait()


def test_on_files_forgets_figures_and_snippets_so_serve_reloads_them(monkeypatch):
    """`mkdocs serve` runs on_files again after an edit: the figures and snippets
    modules are imported afresh, other modules stay, and pyplot is loaded (on Agg)
    on the main thread before the background thread draws."""
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

    kept = {name: module for name, module in sys.modules.items()
            if name.split(".")[0] in ("figures", "snippets")}
    stale = {"figures.stale": object(), "snippets.stale": object(),
             "figuresque": object()}
    monkeypatch.setattr(generated, "generators", lambda only=None: {})
    try:
        sys.modules.update(stale)
        files = generated.on_files(Files([]), MkDocsConfig())
        generated.on_env(None, None, files)
        assert "figures.stale" not in sys.modules
        assert "snippets.stale" not in sys.modules
        assert sys.modules["figuresque"] is stale["figuresque"]
        import matplotlib

        assert "matplotlib.pyplot" in sys.modules
        assert matplotlib.get_backend().lower() == "agg"
    finally:
        for name in stale:
            sys.modules.pop(name, None)
        sys.modules.update(kept)  # the rest of the run keeps its module objects


def test_notebook_css_keeps_only_what_the_page_can_use():
    css = (".w{--used:1px;--chain:var(--used);--unused:2px}"
           ".w .present{margin:var(--chain)}"
           ".w .absent{color:red}"
           ".w :is(.present, .absent) b{color:blue}"   # one comma inside :is(...)
           ".w .present:not(.absent){padding:0}"
           "@media (max-width:10px){.w .absent{color:red}.w .present{color:green}}")
    out = notebooks.prune_css(css, {"w", "present"})
    assert ".w .absent{" not in out
    assert ".w .present{margin:var(--chain)}" in out
    assert ".w :is(.present, .absent) b{color:blue}" in out
    assert ".w .present:not(.absent){padding:0}" in out
    assert "@media (max-width:10px){.w .present{color:green}}" in out
    assert "--used:1px" in out and "--chain:var(--used)" in out  # reached through var()
    assert "--unused" not in out


def test_notebook_page_gets_lighter_and_keeps_its_figures():
    import base64
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\x00" * 12)) + chunk(b"IEND", b""))
    page = ('<style>@font-face{font-family:"X"}</style>'
            '<style>\n    pre { line-height: 125%; }\n.highlight-ipynb .c1 { color: #408080 }</style>'
            '<style>.jupyter-wrapper .jp-Cell{margin:0}.jupyter-wrapper .jp-Gone{margin:0}</style>'
            '<div class="jupyter-wrapper"><div class="jp-Cell">'
            '<div tabindex="0" class="highlight-ipynb hl-python"><pre>x</pre></div>'
            f'<img alt="a plot" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            "</div></div>")
    out, figures = notebooks.lighter_page(page)
    assert figures == [("figure-1.png", png)]
    assert '<img alt="a plot" src="figure-1.png" loading="lazy" width="3" height="2">' in out
    assert '@font-face{font-family:"X"}' in out          # the math font stays
    assert "#408080" not in out                           # the cells' own colours go
    assert 'class="highlight highlight-ipynb hl-python"' in out  # the site's come in
    assert ".jupyter-wrapper .jp-Cell{margin:0}" in out and "jp-Gone" not in out


def test_pruned_css_is_cached_by_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setattr(notebooks, "CSS_CACHE", tmp_path)
    css, classes = ".w .a{margin:0}.w .b{margin:1px}", {"w", "a"}
    assert notebooks.pruned_css(css, classes) == notebooks.prune_css(css, classes)
    (cached,) = tmp_path.glob("*.css")
    cached.write_text("/* from the cache */")
    assert notebooks.pruned_css(css, classes) == "/* from the cache */"
    assert notebooks.pruned_css(css, {"w", "b"}) == ".w .b{margin:1px}"  # other key
