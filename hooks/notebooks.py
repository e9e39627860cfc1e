"""MkDocs hook for the notebook pages that mkdocs-jupyter renders from ``docs/notebooks``.

- Removes the MathJax loader that nbconvert's template adds (a script tag with an
  empty or remote ``src``): the site loads no script from anywhere else, and math is
  converted to MathML here at build time, as on every other page. Removes its mermaid
  loader too, which would import mermaid from a CDN for a diagram.
- Converts ``$...$`` and ``$$...$$`` in the rendered Markdown cells to MathML; TeX that
  does not parse is a warning, so the strict build fails.
- Expands ``--8<-- "snippets/x.py:section"`` lines in code cells with pymdownx.snippets
  (the settings of ``mkdocs.yml``), so notebooks show the tested code, and what a
  reader downloads runs on its own, without this repository.
- Adds the notebook as ``.ipynb`` (converted from the jupytext ``.py`` at build time,
  never committed) and links both downloads at the top of the page.
"""

from __future__ import annotations

import html
import logging
import re
import sys
import tempfile
from pathlib import Path

import jupytext
import markdown
from mkdocs.structure.files import File

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mathml  # noqa: E402

log = logging.getLogger("mkdocs.hooks.notebooks")

NOTEBOOKS = "notebooks/"
MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
# nbconvert's loader that imports mermaid from cdnjs when a page has a diagram.
MERMAID = re.compile(r'<script type="module">\s*document\.addEventListener\('
                     r'"DOMContentLoaded", async \(\) => \{\s*const diagrams = '
                     r'document\.querySelectorAll\("\.jp-Mermaid.*?</script>', re.S)
MARKDOWN_CELL = re.compile(
    r'(<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown[^"]*"[^>]*>)(.*?)(</div>)', re.S
)
DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.S)
INLINE = re.compile(r"(?<![\\$])\$(?!\$)([^$\n]+?)(?<!\\)\$")
CODE = re.compile(r"(<(pre|code)\b.*?</\2>)", re.S)


def is_notebook(src_uri: str) -> bool:
    return src_uri.startswith(NOTEBOOKS) and src_uri.endswith(".py")


def to_ipynb(source: str) -> str:
    """The jupytext percent-format ``source`` as an (unexecuted) .ipynb document."""
    return jupytext.writes(jupytext.reads(source, fmt="py:percent"), fmt="ipynb")


def convert_math(text: str, where: str) -> tuple[str, list[str]]:
    """MathML for the $-delimited TeX in rendered Markdown (code spans untouched)."""
    errors: list[str] = []

    def tex(match, display):
        source = html.unescape(match.group(1)).strip()
        try:
            return mathml.tex_to_mathml(source, display)
        except mathml.TexError as err:
            errors.append(f"{where}: {err}")
            return match.group(0)

    def cell(match):
        parts = CODE.split(match.group(2))
        out = []
        for i, part in enumerate(parts):
            if i % 3 == 0:  # text between code elements
                part = DISPLAY.sub(lambda m: tex(m, True), part)
                part = INLINE.sub(lambda m: tex(m, False), part)
            elif i % 3 == 2:  # the tag name captured by CODE's inner group
                continue
            out.append(part)
        return match.group(1) + "".join(out) + match.group(3)

    return MARKDOWN_CELL.sub(cell, text), errors


def downloads(stem: str) -> str:
    return (
        '<p class="notebook-downloads">Download this notebook: '
        f'<a href="../{stem}.ipynb" download>{stem}.ipynb</a> (Jupyter) or '
        f'<a href="{stem}.py" download>{stem}.py</a> (jupytext percent format, '
        "the source of this page).</p>"
    )


INCLUDE = re.compile(r"""^\s*-{1,}8<-{1,}\s+["'].+["']\s*$""")


def expand_includes(source: str, snippets_config: dict) -> str:
    """Replace each include line with the lines it names (pymdownx.snippets)."""
    md = markdown.Markdown(
        extensions=["pymdownx.snippets"],
        extension_configs={"pymdownx.snippets": snippets_config},
    )
    pre = md.preprocessors["snippet"]
    out = []
    for line in source.splitlines():
        out += pre.run([line]) if INCLUDE.match(line) else [line]
    return "\n".join(out) + "\n"


def on_files(files, config, **kwargs):
    # Runs after mkdocs-jupyter's on_files: point each notebook page at an expanded
    # copy of its source, which it then executes, renders and offers for download.
    build_dir = Path(tempfile.mkdtemp(prefix="notebooks-"))
    for file in list(files):
        if is_notebook(file.src_uri):
            source = expand_includes(
                Path(file.abs_src_path).read_text(), config["mdx_configs"]["pymdownx.snippets"]
            )
            expanded = build_dir / file.src_uri
            expanded.parent.mkdir(parents=True, exist_ok=True)
            expanded.write_text(source)
            # mkdocs-jupyter's NotebookFile wraps the original File: set both.
            file.abs_src_path = str(expanded)
            if hasattr(file, "file"):
                file.file.abs_src_path = str(expanded)
            ipynb = file.src_uri[: -len(".py")] + ".ipynb"
            files.append(File.generated(config, ipynb, content=to_ipynb(source)))
    return files


def on_page_content(html_text, page, **kwargs):
    if not is_notebook(page.file.src_uri):
        return html_text
    html_text = MERMAID.sub("", MATHJAX.sub("", html_text))
    html_text, errors = convert_math(html_text, page.file.src_uri)
    for error in errors:
        log.warning(error)
    # Code cells scroll sideways: make them reachable by keyboard (WCAG 2.1.1).
    html_text = html_text.replace('<div class="highlight-ipynb', '<div tabindex="0" class="highlight-ipynb')
    stem = Path(page.file.src_uri).stem
    return downloads(stem) + html_text
