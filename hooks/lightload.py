"""MkDocs hook: less work for the browser when a page loads.

Profiled in Chromium (a trace of the load with invalidation tracking), the pages with
code spent their main-thread time on two things, neither of which a reader sees:

- **Code in closed ``<details>``.** "All the code on this page" and the "under the
  hood" listings of ``snippets`` modules are 70 to 85 % of each page's HTML, and most
  of its elements (one ``<span>`` per highlighted token): all parsed and kept in the
  document on every load, though they stay folded until a reader opens them. Here
  each highlighted block inside a closed ``<details>`` keeps its ``<pre><code>`` (so
  Material still gives it a copy button) but ships the content of its ``<code>`` in a
  ``<template>``, which the browser parses into an inert fragment: nothing is styled,
  laid out or walked by Material's scripts. A small script puts it back when the
  ``<details>`` opens (by a click, the keyboard, a link to an anchor inside, or
  Material opening them all before printing) and before the page prints. The HTML
  still holds every block, so the checks that read the built pages see them.

- **Whole-page restyles at start-up.** When Material's bundle runs (at the end of the
  body, after the browser has styled most of the page) it (1) swaps the class
  ``no-js`` for ``js`` on ``<html>`` and a polyfill adds ``js-focus-visible``; with
  selectors such as ``.md-typeset table:not([class]) td > :first-child``, any class
  change restyles the whole subtree, here the whole page; (2) sets
  ``data-md-color-switching`` on ``<body>``, which its own rule
  ``[data-md-color-switching] * {transition-duration: 0s}`` turns into a restyle of
  every element, and removes it one task later (another); (3) adds and fills a
  ``<meta name="color-scheme">``, each of which Chromium answers with a restyle of
  the whole document. (3) needs Material's code to change; (1) and (2) do not: the
  classes are set in the ``<head>``, before anything is styled (which also spares
  the later swap a layout shift), and the rule is taken out of Material's palette
  stylesheet. Without it, a reader's switch between light and dark fades the colours
  of links and buttons for a quarter of a second instead of snapping.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.lightload")

LAZY = "data-md-lazy"  # the attribute of the <template> that holds a block's code

# Tags that matter for the nesting of closed <details> and for code blocks. Code text
# is escaped in the HTML, so a "<details" inside code cannot match.
_TAGS = re.compile(
    r"<details\b[^>]*>|</details>"
    r"|<pre\b[^>]*>(?:<span></span>)?<code\b[^>]*>|</code></pre>"
)
_OPEN = re.compile(r"\sopen(?:[\s=/>]|$)")

# Puts the code back when its <details> opens, and before printing. Registered on the
# document in the capture phase ("toggle" does not bubble), so it also serves the
# pages that Material's instant navigation swaps in.
SCRIPT = f"""<script>
document.documentElement.className = "js-focus-visible js";
(() => {{
  const fill = (root) => {{
    for (const t of root.querySelectorAll("template[{LAZY}]")) t.replaceWith(t.content);
  }};
  document.addEventListener("toggle", (e) => {{
    if (e.target.open) fill(e.target);
  }}, true);
  addEventListener("beforeprint", () => fill(document));
}})();
</script>"""

# Material's rule that stops transitions while the colour scheme switches.
SWITCHING_RULE = re.compile(r"\[data-md-color-switching\][^{}]*\{[^{}]*\}")


def lazy_code(html: str) -> str:
    """Every highlighted block inside a closed <details>: the content of its <code>
    in a <template data-md-lazy>."""
    out: list[str] = []
    pos = 0
    closed: list[bool] = []  # per <details> we are inside: is it closed?
    start = None  # where the content of the current lazy <code> starts
    for m in _TAGS.finditer(html):
        tag = m.group(0)
        if tag.startswith("<details"):
            closed.append(not _OPEN.search(tag.split(">", 1)[0]))
        elif tag == "</details>":
            if closed:
                closed.pop()
        elif tag.startswith("<pre"):
            if any(closed):
                start = m.end()
        elif start is not None:
            out += [html[pos:start], f"<template {LAZY}>", html[start:m.start()],
                    "</template>"]
            pos = m.start()
            start = None
    out.append(html[pos:])
    return "".join(out)


# The opening tag of a <div> of code or output: pymdownx.highlight's wrapper, and in
# notebooks a code cell's code, its text for the copy button and each output. (Each is
# a <div> without a <div> inside: Material's search parser compares elements by tag
# name alone, so an excluded <div> stops being excluded at the first inner </div>.)
_DIV = re.compile(r'<div ((?:tabindex="0" )?)class="([^"]*)"')
_UNINDEXED = {"highlight", "highlight-ipynb", "clipboard-copy-txt", "jp-OutputArea-output"}


def unindexed_code(html: str) -> str:
    """Every block of code or output marked ``data-search-exclude``, which Material's
    search plugin honours: the search index holds the prose (with its inline code),
    not the code listings, which were three quarters of it (379 KiB gzipped, fetched by
    every first visit for the search box)."""
    def mark(m):
        if _UNINDEXED.isdisjoint(m.group(2).split()):
            return m.group(0)
        return f'<div data-search-exclude {m.group(1)}class="{m.group(2)}"'

    return _DIV.sub(mark, html)


# A whole block of pymdownx.highlight (its wrapper holds an optional title and one
# <pre>), once unindexed_code has marked it; and what stands in for it meanwhile.
_BLOCK = re.compile(r'<div data-search-exclude class="language-[\w.+-]+ highlight">'
                    r".*?</pre></div>", re.S)
_STAND_IN = re.compile(r'<div data-search-exclude data-lightload-block="(\d+)"></div>')
_SET_ASIDE: dict[str, list[str]] = {}


def set_aside(html: str) -> tuple[str, list[str]]:
    """Each highlighted block replaced by an empty stand-in; the blocks, in order."""
    blocks: list[str] = []

    def stand_in(m):
        blocks.append(m.group(0))
        return f'<div data-search-exclude data-lightload-block="{len(blocks) - 1}"></div>'

    return _BLOCK.sub(stand_in, html), blocks


def put_back(html: str, blocks: list[str]) -> str:
    return _STAND_IN.sub(lambda m: blocks[int(m.group(1))], html)


def on_page_content(html: str, page, config, files) -> str:
    # Material's search plugin reads the page's HTML in on_page_context, which runs
    # before this hook's (hooks come after the plugins of mkdocs.yml); it parsed every
    # token of every listing only to leave it out (data-search-exclude): about 5 s of
    # a 32 s build here (26.5 s with the listings set aside until it has read the page).
    html, _SET_ASIDE[page.file.src_uri] = set_aside(unindexed_code(html))
    return html


def on_page_context(context, page, config, nav):
    page.content = put_back(page.content, _SET_ASIDE.pop(page.file.src_uri))
    return context


def on_post_page(output: str, page, config) -> str:
    html = lazy_code(output)
    if "</head>" in html:
        html = html.replace("</head>", SCRIPT + "</head>", 1)
    return html


def without_switching_rule(css: str) -> str:
    return SWITCHING_RULE.sub("", css)


def on_post_build(config) -> None:
    folder = Path(config["site_dir"]) / "assets" / "stylesheets"
    sheets = list(folder.glob("palette.*.css"))
    edited = 0
    for sheet in sheets:
        css = sheet.read_text(encoding="utf-8")
        lean = without_switching_rule(css)
        if lean != css:
            sheet.write_text(lean, encoding="utf-8")
            edited += 1
    if not edited:
        log.warning("lightload: no [data-md-color-switching] rule in %s; has Material "
                    "changed its palette stylesheet?", [s.name for s in sheets])
