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
- Makes the page light (``lighter_page``): of nbconvert's inline JupyterLab stylesheet
  only the rules for classes on the page are kept, figures become files loaded when
  scrolled to, and code cells take the site's code colours (AA in both schemes).
"""

from __future__ import annotations

import html
import logging
import os
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


def environment_key(root: Path) -> str:
    """What, besides its source, decides what a notebook prints: the pinned packages
    and the Python that runs them."""
    import hashlib
    import platform

    pins = root / "requirements.txt"
    digest = hashlib.sha256(pins.read_bytes() if pins.exists() else b"")
    digest.update(f"{sys.version}|{platform.machine()}".encode())
    return digest.hexdigest()[:16]


def on_config(config, **kwargs):
    # mkdocs-jupyter keys its cache by the notebook file (here the copy with its
    # includes expanded, so by the snippets code too) and its own settings; the
    # folder adds the environment.
    jupyter = config.plugins.get("mkdocs-jupyter")
    if jupyter is not None and os.environ.get("SITE_PAGE"):
        # A one-page build (tests/page.py) has no notebook, and mkdocs-jupyter drops
        # every cached notebook that a build did not use.
        jupyter.config["cache"] = False
    if jupyter is not None and jupyter.config.get("cache"):
        root = Path(config["config_file_path"]).parent
        folder = Path(jupyter.config["cache_dir"])
        if not folder.is_absolute():
            folder = root / folder
        jupyter.config["cache_dir"] = str(folder / environment_key(root))
    return config


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


# --- Lighter notebook pages --------------------------------------------------------
# nbconvert's template inlines JupyterLab's whole stylesheet (574 KB, 86 KB gzipped)
# in each notebook page and its figures as base64 PNG: 244 and 297 KiB first loads
# against 90 to 150 KiB for the other pages. Only the rules for classes the page uses
# are kept, with the custom properties they reach; figures become files beside the
# page, loaded when scrolled to; code cells take the site's code colours.
STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)
CLASS = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")
NEGATION = re.compile(r":(?:not|has|is|where)\([^()]*\)")  # classes that need not be there
VAR_USE = re.compile(r"var\(\s*(--[\w-]+)")
DATA_IMAGE = re.compile(r'<img([^>]*?) src="data:image/(png|jpeg);base64,([^"]+)"([^>]*)>')
# The Pygments colours of code cells, from JupyterLab's editor variables (several
# under 4.5:1): the cells use the site's code colours (Material's, adjusted in
# site.css) instead, in both schemes.
PYGMENTS_IPYNB = re.compile(r"<style[^>]*>\s*pre \{ line-height: 125%; \}.*?</style>", re.S)


def page_classes(page_html: str) -> set[str]:
    return {c for attr in re.findall(r'class="([^"]*)"', page_html) for c in attr.split()}


def split_selectors(prelude: str) -> list[str]:
    """A selector list split at its top-level commas (not those inside ``:is(...)``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(prelude):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(prelude[start:i].strip())
            start = i + 1
    parts.append(prelude[start:].strip())
    return parts


def _selector_used(selector: str, classes: set[str]) -> bool:
    return all(c in classes for c in CLASS.findall(NEGATION.sub("", selector)))


def prune_css(css: str, classes: set[str]) -> str:
    """``css`` without the rules whose selectors need a class that ``classes`` lacks,
    and without the custom properties that nothing kept refers to."""
    import tinycss2

    def declarations(block) -> list:
        return [d for d in tinycss2.parse_declaration_list(block, skip_comments=True,
                                                          skip_whitespace=True)
                if d.type == "declaration"]

    # Each entry: ("rule", selectors, declarations), ("group", "@media ...", entries)
    # or ("raw", text).
    def walk(nodes):
        out = []
        for node in nodes:
            if node.type == "qualified-rule":
                selectors = split_selectors(tinycss2.serialize(node.prelude))
                kept = [s for s in selectors if _selector_used(s, classes)]
                if kept:
                    out.append(("rule", ", ".join(kept), declarations(node.content)))
            elif node.type == "at-rule" and node.content is not None and \
                    node.at_keyword.lower() in ("media", "supports"):
                inner = walk(tinycss2.parse_rule_list(node.content, skip_comments=True,
                                                      skip_whitespace=True))
                if inner:
                    out.append(("group", "@" + node.at_keyword
                                + tinycss2.serialize(node.prelude), inner))
            elif node.type == "at-rule" and node.at_keyword.lower() == "keyframes":
                out.append(("raw", node.serialize()))
        return out

    rules = walk(tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True))

    def kept_declarations(entries):
        for kind, *rest in entries:
            if kind == "rule":
                yield from rest[1]
            elif kind == "group":
                yield from kept_declarations(rest[1])

    # Custom properties: keep those used by a kept declaration, then those they use...
    defined: dict[str, list] = {}
    pending = []
    for d in kept_declarations(rules):
        if d.name.startswith("--"):
            defined.setdefault(d.name, []).append(d)
        else:
            pending.append(d)
    used: set[str] = set()
    while pending:
        d = pending.pop()
        for name in VAR_USE.findall(tinycss2.serialize(d.value)):
            if name not in used:
                used.add(name)
                pending += defined.get(name, [])

    def render(entries) -> str:
        parts = []
        for kind, *rest in entries:
            if kind == "raw":
                parts.append(rest[0])
            elif kind == "group":
                inner = render(rest[1])
                if inner:
                    parts.append(f"{rest[0]}{{{inner}}}")
            else:
                kept = [f"{d.name}:{tinycss2.serialize(d.value).strip()}"
                        + ("!important" if d.important else "")
                        for d in rest[1] if not d.name.startswith("--") or d.name in used]
                if kept:
                    parts.append(f"{rest[0]}{{{';'.join(kept)}}}")
        return "".join(parts)

    return render(rules)


CSS_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "notebook-css"


def pruned_css(css: str, classes: set[str]) -> str:
    """``prune_css``, kept in a git-ignored cache keyed by its inputs and this file
    (parsing JupyterLab's stylesheet is a second per notebook page and build)."""
    import hashlib

    import tinycss2

    key = hashlib.sha256("\0".join([css, *sorted(classes), tinycss2.__version__,
                                     Path(__file__).read_text()]).encode()).hexdigest()
    path = CSS_CACHE / f"{key}.css"
    if path.exists():
        return path.read_text(encoding="utf-8")
    out = prune_css(css, classes)
    CSS_CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(out, encoding="utf-8")
    partial.replace(path)  # whole or not at all, whichever build writes it
    return out


def lighter_page(page_html: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The notebook page with its inline CSS pruned, its code cells in the site's
    colours, and its figures as files: (html, [(file name, bytes), ...])."""
    import base64

    page_html = PYGMENTS_IPYNB.sub("", page_html, count=1)
    page_html = page_html.replace('class="highlight-ipynb', 'class="highlight highlight-ipynb')
    classes = page_classes(page_html)
    def pruned(m):
        if "@font-face" in m.group(1):
            return m.group(0)
        css = pruned_css(m.group(1), classes)
        return f"<style>{css}</style>" if css else ""

    page_html = STYLE.sub(pruned, page_html)
    figures = []

    def figure(m):
        data = base64.b64decode(m.group(3))
        name = f"figure-{len(figures) + 1}.{'png' if m.group(2) == 'png' else 'jpg'}"
        figures.append((name, data))
        size = ""
        if data[:8] == b"\x89PNG\r\n\x1a\n":  # width and height from the IHDR chunk
            w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            size = f' width="{w}" height="{h}"'
        return f'<img{m.group(1)} src="{name}" loading="lazy"{size}{m.group(4)}>'

    page_html = DATA_IMAGE.sub(figure, page_html)
    return page_html, figures


def on_post_page(output: str, page, config, **kwargs) -> str:
    if not is_notebook(page.file.src_uri):
        return output
    output, figures = lighter_page(output)
    folder = Path(config["site_dir"]) / Path(page.file.dest_uri).parent
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in figures:
        (folder / name).write_bytes(data)
    return output
