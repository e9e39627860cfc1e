"""Checks on a built site: nothing it loads may come from another host, not even on
demand; and the code blocks a reader sees, as the browser shows them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from hooks.markers import highlights_python

# Attributes that make the browser fetch something, by tag.
LOADING_ATTRS = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "image": ("href",),  # and xlink:href: attributes are read without their prefix
    "use": ("href",),
    "input": ("src",),
}
# <link rel=...> values that load (or open a connection to) the target.
LOADING_RELS = {
    "stylesheet", "preload", "modulepreload", "prefetch", "preconnect",
    "dns-prefetch", "icon", "apple-touch-icon", "manifest", "mask-icon",
}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""")


def is_external(url: str) -> bool:
    url = url.strip()
    if url.startswith("//"):
        return True
    scheme = urlsplit(url).scheme.lower()
    return scheme not in ("", "data", "blob", "about", "javascript", "mailto")


def _srcset_urls(value: str):
    return [part.strip().split(" ")[0] for part in value.split(",") if part.strip()]


def loads(document, eager: bool = False) -> list[str]:
    """The URLs an HTML or SVG document makes the browser load, in document order;
    with ``eager``, only those it loads at once (not a ``loading="lazy"`` image)."""
    urls = []
    for element in document.iter():
        if not isinstance(element.tag, str):  # a comment or processing instruction
            continue
        tag = element.tag.rsplit("}", 1)[-1].lower()
        attrs = {k.rsplit("}", 1)[-1].split(":")[-1].lower(): v or ""
                 for k, v in element.attrib.items()}
        if eager and attrs.get("loading") == "lazy":
            continue
        for name in LOADING_ATTRS.get(tag, ()):
            if name in attrs:
                urls += _srcset_urls(attrs[name]) if name == "srcset" else [attrs[name]]
        if tag == "link" and LOADING_RELS & set(attrs.get("rel", "").lower().split()):
            urls.append(attrs.get("href", ""))
        urls += css_urls(attrs.get("style", ""))
        if tag == "style":
            urls += css_urls(element.text_content())
    return urls


def css_urls(text: str) -> list[str]:
    return [a or b for a, b in CSS_URL.findall(text)]


def external_references(site: Path) -> list[tuple[str, str]]:
    """(file relative to ``site``, URL) for everything that would load from elsewhere."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".html", ".svg") and path.stat().st_size:
            urls = [u for u in loads(lxml.html.fromstring(path.read_bytes()))
                    if is_external(u)]
        elif path.suffix == ".css":
            urls = [u for u in css_urls(path.read_text(errors="replace")) if is_external(u)]
        else:
            continue
        found += [(path.relative_to(site).as_posix(), u) for u in urls]
    return found


# What the browser fetches from another host only when a page asks for it: found in
# Material 9.8.2's bundle.js and templates, and nbconvert's notebook template.
ON_DEMAND = {
    "pre.mermaid": ("//pre[contains(concat(' ', @class, ' '), ' mermaid ')]",
                    "mermaid, from unpkg.com (Material) or cdnjs.cloudflare.com (nbconvert)"),
    '[data-md-component="source"]': ("//*[@data-md-component='source']",
                                     "repository facts, from api.github.com or GitLab"),
}
# An inline script that loads from another host (Material's analytics snippet,
# nbconvert's mermaid loader): a URL assigned to src, imported, or fetched.
SCRIPT_LOAD = re.compile(
    r"""(?:\bsrc\s*=|\bimport\s*\(|\bfetch\s*\(|\bimportScripts\s*\()"""
    r"""\s*["'`]((?:https?:)?//[^"'`]+)"""
)


def on_demand_fetches(site: Path) -> list[tuple[str, str]]:
    """(file relative to ``site``, what) for everything a page would make the browser
    fetch from another host later: a mermaid diagram, a repository link whose facts
    Material looks up, a script that loads from elsewhere. (Material's other fetch, a
    ResizeObserver polyfill, happens only in browsers without ResizeObserver.)"""
    found = []
    for path in sorted(site.rglob("*.html")):
        document = lxml.html.fromstring(path.read_bytes())
        name = path.relative_to(site).as_posix()
        found += [(name, f"{what} (for {selector})")
                  for selector, (xpath, what) in ON_DEMAND.items() if document.xpath(xpath)]
        for script in document.iter("script"):
            if script.get("src") is None:
                found += [(name, f"{url} (loaded by an inline script)")
                          for url in SCRIPT_LOAD.findall(script.text_content())
                          if is_external(url)]
    return found


@dataclass
class Shown:
    """A block of a built page, as a reader sees it."""

    kind: str  # python, output, other, cell (a notebook's code), cell-output, heading
    text: str
    language: str = ""
    cell: object = None  # the notebook code cell it is part of


def _classes(element) -> list[str]:
    return (element.get("class") or "").split()


def _within(element, name: str):
    """The nearest ancestor with class ``name``, or None."""
    return next((a for a in element.iterancestors() if name in _classes(a)), None)


def _language(pre) -> str | None:
    """The ``language-X`` class pymdownx.highlight puts on a block (or an ancestor)."""
    for element in [*pre.iterchildren("code"), pre, *pre.iterancestors()]:
        for name in _classes(element):
            if name.startswith("language-"):
                return name.removeprefix("language-")
    return None


def shown_blocks(html: str | bytes) -> list[Shown]:
    """Every ``<pre>`` block of a page, and its headings, in reading order. A block
    counts as Python when Pygments highlights its language as Python (py3, pycon,
    ipython3, ...), or when it is highlighted but names no language (nbconvert, in a
    notebook's Markdown cell); as output when it is plain text."""
    out = []
    for element in lxml.html.fromstring(html).iter("pre", "h1", "h2", "h3", "h4", "h5", "h6"):
        text = element.text_content()
        if element.tag != "pre":
            out.append(Shown("heading", text))
            continue
        if _within(element, "linenos") is not None:  # the line-number column
            continue
        cell = _within(element, "jp-CodeCell")
        if cell is not None:
            output = _within(element, "jp-OutputArea") is not None
            out.append(Shown("cell-output" if output else "cell", text, cell=cell))
            continue
        language = _language(element)
        if "mermaid" in _classes(element):
            kind = "other"
        elif language is None:
            kind = "python" if any(_classes(s) for s in element.iter("span")) else "output"
        elif highlights_python(language):
            kind = "python"
        else:
            try:
                plain = isinstance(get_lexer_by_name(language), TextLexer)
            except ClassNotFound:  # pymdownx.highlight shows it as text
                plain = True
            kind = "output" if plain else "other"
        out.append(Shown(kind, text, language or ""))
    return out
