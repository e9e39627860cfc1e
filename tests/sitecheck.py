"""Checks on a built site: nothing it loads may come from another host."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

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
    "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
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


class _Scanner(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = {k.lower(): (v or "") for k, v in attrs}
        urls = []
        for name in LOADING_ATTRS.get(tag, ()):
            if name in attrs:
                value = attrs[name]
                urls += _srcset_urls(value) if name == "srcset" else [value]
        if tag == "link" and LOADING_RELS & set(attrs.get("rel", "").lower().split()):
            urls.append(attrs.get("href", ""))
        if "style" in attrs:
            urls += css_urls(attrs["style"])
        self._in_style = tag == "style"
        self.found += [u for u in urls if is_external(u)]

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += [u for u in css_urls(data) if is_external(u)]


def css_urls(text: str) -> list[str]:
    return [a or b for a, b in CSS_URL.findall(text)]


def external_references(site: Path) -> list[tuple[str, str]]:
    """(file relative to ``site``, URL) for everything that would load from elsewhere."""
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix in (".html", ".svg"):
            scanner = _Scanner()
            scanner.feed(path.read_text(encoding="utf-8", errors="replace"))
            urls = scanner.found
        elif path.suffix == ".css":
            urls = [u for u in css_urls(path.read_text(errors="replace")) if is_external(u)]
        else:
            continue
        found += [(path.relative_to(site).as_posix(), u) for u in urls]
    return found
