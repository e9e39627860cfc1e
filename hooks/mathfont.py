"""MkDocs hook: ship only the glyphs of the math font that the site's formulas use.

The formulas are MathML (``hooks/mathml.py``), drawn by the browser with STIX Two
Math, a 400 KiB font. After the build, this hook reads the characters of every
``<math>`` element of every page, subsets the font to them with fontTools (which
keeps the OpenType MATH table and the glyphs it points to: the larger sizes and the
pieces of stretchy brackets and radicals, script-size alternates), and writes the
subset under a name that carries its content hash. Each page that has math gets, in
its ``<head>``, the ``@font-face`` rule that names that file, so a page and its font
always come from the same build: a formula changed since cannot meet a font that
lacks its glyphs, even in a browser's cache. Pages without math load no math font.

Characters a browser draws without their being in the text are added: a
single-letter ``<mi>`` is drawn in mathematical italic (MathML Core's
``text-transform: math-auto``: ``x`` becomes U+1D465, ``h`` becomes U+210E), and
``<msqrt>``/``<mroot>`` draw the radical sign U+221A.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlsplit

import fontTools
from fontTools import subset
from fontTools.ttLib import TTFont

log = logging.getLogger("mkdocs.hooks.mathfont")

FAMILY = "STIX Two Math"
SOURCE = "assets/fonts/stix-two-math.woff2"  # in docs/; the site gets the subset
_MATH = re.compile(r"<math\b.*?</math>", re.DOTALL)
# Where the @font-face goes: just before the end of <head>, once.
_HEAD_END = "</head>"
MARKER = "data-math-font"


def _italic() -> dict[str, str]:
    """MathML Core's italic mapping for ``math-auto``: letter -> mathematical italic.

    Latin and Greek letters map onto the Mathematical Alphanumeric Symbols block in
    order; the block has holes where an older character already existed (italic h is
    U+210E PLANCK CONSTANT), and a few Greek symbols sit after the alphabets."""
    table = {}
    for first, last, target in [
        ("A", "Z", 0x1D434), ("a", "z", 0x1D44E),
        ("\u0391", "\u03a1", 0x1D6E2), ("\u03a3", "\u03a9", 0x1D6F4),
        ("\u03b1", "\u03c9", 0x1D6FC),
    ]:
        for i in range(ord(last) - ord(first) + 1):
            table[chr(ord(first) + i)] = chr(target + i)
    table["h"] = "\u210e"
    table.update({
        "\u0131": "\U0001d6a4", "\u0237": "\U0001d6a5",  # dotless i, j
        "\u03f4": "\U0001d6f3", "\u2207": "\U0001d6fb",  # capital theta symbol, nabla
        "\u2202": "\U0001d715", "\u03f5": "\U0001d716", "\u03d1": "\U0001d717",
        "\u03f0": "\U0001d718", "\u03d5": "\U0001d719", "\u03f1": "\U0001d71a",
        "\u03d6": "\U0001d71b",
    })
    return table


ITALIC = _italic()
RADICAL = "\u221a"


class _MathText(HTMLParser):
    """The characters a browser draws for the MathML it is fed."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.chars: set[str] = set()
        self._mi: list[list[str]] | None = None  # text of the open <mi>, if auto-italic

    def handle_starttag(self, tag, attrs):
        if tag in ("msqrt", "mroot"):
            self.chars.add(RADICAL)
        elif tag == "mi":
            self._mi = None if dict(attrs).get("mathvariant") else []

    def handle_endtag(self, tag):
        if tag == "mi" and self._mi is not None:
            text = "".join(self._mi).strip()
            if len(text) == 1 and text in ITALIC:
                self.chars.add(ITALIC[text])
            self._mi = None

    def handle_data(self, data):
        self.chars.update(data)
        if self._mi is not None:
            self._mi.append(data)


def math_chars(page_html: str) -> set[str]:
    """Every character drawn for the ``<math>`` elements of one HTML page."""
    parser = _MathText()
    for formula in _MATH.findall(page_html):
        parser.feed(formula)
    parser.close()
    return parser.chars - {"\n", "\r", "\t"}


def subset_font(font: bytes, chars: set[str]) -> bytes:
    """``font`` cut down to ``chars`` (and what the MATH and GSUB tables reach from
    them), as WOFF2, without hinting."""
    options = subset.Options()
    options.layout_features = ["*"]   # ssty, flac, dtls...: math needs them
    options.name_IDs = ["*"]          # keep the copyright and licence strings
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.hinting = False
    options.flavor = "woff2"
    options.desubroutinize = True
    ttf = TTFont(io.BytesIO(font), recalcTimestamp=False)  # same input, same bytes
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted({ord(c) for c in chars} | {0x20}))
    subsetter.subset(ttf)
    out = io.BytesIO()
    ttf.flavor = "woff2"
    ttf.save(out)
    return out.getvalue()


# The cache key covers how the subset is made, not only from what.
_RECIPE = inspect.getsource(subset_font) + fontTools.version


def font_face(url: str) -> str:
    """The ``<style>`` that declares the math font at ``url``."""
    return (
        f"<style {MARKER}>@font-face{{font-family:\"{FAMILY}\";"
        f"src:url(\"{quote(url, safe='/._-~')}\") format(\"woff2\");font-display:swap}}</style>"
    )


def subset_name(data: bytes) -> str:
    """Where the subset goes in the site: named for its content."""
    digest = hashlib.sha256(data).hexdigest()[:10]
    stem, ext = os.path.splitext(SOURCE)
    return f"{stem}.{digest}{ext}"


def cached_subset(font: bytes, chars: set[str], cache: Path | None) -> bytes:
    """``subset_font``, kept in ``cache`` under a key of its inputs: subsetting takes
    seconds, and most builds change no formula."""
    if cache is None:
        return subset_font(font, chars)
    key = hashlib.sha256(
        font + "".join(sorted(chars)).encode() + _RECIPE.encode()
    ).hexdigest()[:20]
    path = cache / f"{key}.woff2"
    if path.exists():
        return path.read_bytes()
    data = subset_font(font, chars)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: parallel builds never read half a file
    return data


def write_site_font(site: Path, docs: Path, base_path: str,
                    cache: Path | None = None) -> dict:
    """Subset the font to the math of every page in ``site``, write it there and
    declare it in the ``<head>`` of each page that has math; return a summary.

    ``base_path`` is the site's path on its host (``/`` or ``/project/``): the font's
    URL is absolute from there, so a page swapped in by Material's instant navigation
    (which moves ``<head>`` elements from one page to another) still finds it."""
    pages = {}
    chars: set[str] = set()
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        if "<math" in text:
            found = math_chars(text)
            if found:
                pages[page] = text
                chars |= found
    source = (docs / SOURCE).read_bytes()
    (site / SOURCE).unlink(missing_ok=True)  # the full font never reaches readers
    if not pages:
        return {"pages": 0, "chars": 0, "bytes": 0, "path": None}
    data = cached_subset(source, chars, cache)
    name = subset_name(data)
    (site / name).write_bytes(data)
    style = font_face(base_path.rstrip("/") + "/" + name)
    for page, text in pages.items():
        if MARKER not in text:
            page.write_text(text.replace(_HEAD_END, style + _HEAD_END, 1), encoding="utf-8")
    return {"pages": len(pages), "chars": len(chars), "bytes": len(data), "path": name}


def on_post_build(config, **kwargs):
    base_path = urlsplit(config["site_url"] or "/").path or "/"
    cache = Path(config["config_file_path"]).parent / ".cache" / "mathfont"
    summary = write_site_font(
        Path(config["site_dir"]), Path(config["docs_dir"]), base_path, cache
    )
    log.info(
        "math font: %(chars)d characters on %(pages)d pages, subset of %(bytes)d bytes",
        summary,
    )
