"""The one way a matplotlib figure of this site becomes an SVG file.

Every figure module draws inside ``card(salt)`` and ends with ``to_svg(fig)``:

* a white card with dark ink, so that a figure reads the same in the site's light
  and dark schemes;
* text kept as text (a few bytes a label instead of a path a glyph), in a font
  stack that every reader has offline;
* the same bytes at every build: a fixed hash salt for the ids, no date, no
  metadata;
* coordinates rounded to a hundredth of a point, finer than any screen shows.

``text_colour`` is the one rule for a label drawn on a coloured cell, and
``label_cells`` applies it to every cell of a heatmap. Nothing happens at import:
``pyplot()`` selects the Agg backend the first time a figure is drawn.
"""

from __future__ import annotations

import io
import re
from contextlib import contextmanager

INK = "#1a1a1a"  # text, axes and ticks
WHITE = "#ffffff"  # the card
# matplotlib lays text out with DejaVu Sans, which it ships; a reader without it
# gets one of the next, all narrower, so no label outgrows the room made for it.
FONTS = ["DejaVu Sans", "Arial", "Helvetica"]
STACK = ", ".join([*(f"'{font}'" for font in FONTS), "sans-serif"])  # as CSS
DECIMALS = 2  # of a point (1/72 inch) in every coordinate

CARD = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": FONTS,
    "font.size": 11,
    "text.color": INK,
    "axes.labelcolor": INK,
    "axes.edgecolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "figure.facecolor": WHITE,
    "axes.facecolor": WHITE,
    "savefig.facecolor": WHITE,
}
NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: no window, safe in a build thread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def card(salt, rc=None):
    """pyplot, with the card's style, the figure's own hash salt and ``rc`` (a dict
    of rcParams for this figure) in force until the ``with`` block ends."""
    import matplotlib

    plt = pyplot()
    with matplotlib.rc_context({**CARD, "svg.hashsalt": salt, **(rc or {})}):
        yield plt


# A coordinate with more decimals than DECIMALS, inside an attribute that holds
# geometry (never inside text, whose numbers are what the figure shows).
_LONG_NUMBER = re.compile(rf"-?\d+\.\d{{{DECIMALS + 1},}}")
_GEOMETRY = re.compile(r'(\s(?:d|x|y|width|height|transform)=")([^"]*)"')
_NO_ROTATION = re.compile(r' transform="rotate\(-?0 [-\d. ]+\)"')


def _round(match):
    text = f"{float(match.group()):.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def shorten(svg):
    """``svg`` as matplotlib writes it, with every coordinate rounded to DECIMALS
    places, no rotation by 0 degrees, and the font stack said once in the style
    sheet instead of on every text."""
    svg = _GEOMETRY.sub(
        lambda m: m.group(1) + _LONG_NUMBER.sub(_round, m.group(2)) + '"', svg)
    svg = _NO_ROTATION.sub("", svg)
    svg = svg.replace(f"font-family: {STACK}; ", "")
    return svg.replace("<style type=\"text/css\">*{",
                       f"<style type=\"text/css\">text{{font-family: {STACK}}}\n*{{", 1)


def to_svg(fig):
    """The figure as SVG text (call it inside ``card``); closes the figure."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata=NO_METADATA)
    pyplot().close(fig)
    return shorten(buffer.getvalue())


def luminance(rgb):
    """WCAG relative luminance of an sRGB colour, channels from 0 to 1 (alpha,
    if given, is ignored): 0 for black, 1 for white."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
               for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    """WCAG contrast ratio of two colours, from 1 (the same) to 21 (black, white)."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def hex_rgb(colour):
    """"#rrggbb" as (r, g, b), each from 0 to 1."""
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))


def text_colour(background):
    """INK or white, whichever contrasts more with ``background`` (r, g, b[, a])."""
    if contrast(background, hex_rgb(WHITE)) > contrast(background, hex_rgb(INK)):
        return WHITE
    return INK


def label_cells(ax, mappable, values, spec, centre=0.0, **text):
    """Write every value of the 2-D array ``values`` (rows: y) on its cell, formatted
    with the format ``spec``, in ``text_colour`` of the colour ``mappable`` gives
    the cell. A cell's centre is (column, row) + ``centre`` in data coordinates:
    0 for ``imshow``, 0.5 for ``pcolormesh``."""
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            colour = text_colour(mappable.cmap(mappable.norm(value)))
            ax.text(j + centre, i + centre, f"{value:{spec}}", ha="center",
                    va="center", color=colour, **text)
