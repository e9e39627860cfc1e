"""MkDocs hook: turn the LaTeX that pymdownx.arithmatex marks into MathML at build time.

arithmatex (``generic: true``) leaves ``<span class="arithmatex">\\(...\\)</span>`` and
``<div class="arithmatex">\\[...\\]</div>`` in the page. Here each becomes a ``<math>``
element, so the browser renders the formula natively and no script or CDN is needed.
TeX that does not parse is logged as a warning, which fails a ``--strict`` build.
"""

import html
import logging
import re

import math_core

log = logging.getLogger("mkdocs.hooks.mathml")

_ARITHMATEX = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])"
    r"\s*</(?P=tag)>",
    re.DOTALL,
)

_converter = math_core.LatexToMathML(fancy_error=False)


class TexError(ValueError):
    """A formula that could not be converted; the message names the TeX."""


def tex_to_mathml(tex, display):
    """Convert one formula; raise TexError naming the formula when it is bad."""
    try:
        return _converter.convert_with_local_state(tex, displaystyle=display)
    except math_core.LatexError as err:
        raise TexError(f"cannot convert TeX {tex!r}: {str(err).strip()}") from None


def convert_html(text, where="page"):
    """Replace every arithmatex element in ``text``; return (html, errors)."""
    errors = []

    def replace(match):
        display = match.group("block") is not None
        tex = html.unescape(match.group("block") if display else match.group("inline"))
        try:
            return tex_to_mathml(tex.strip(), display)
        except TexError as err:
            errors.append(f"{where}: {err}")
            return match.group(0)

    return _ARITHMATEX.sub(replace, text), errors


def on_page_content(html_text, page, **kwargs):
    converted, errors = convert_html(html_text, where=page.file.src_uri)
    for error in errors:
        log.warning(error)
    return converted
