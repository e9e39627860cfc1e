"""The figure of docs/diagram.md. The page shows the code that writes this SVG, so
that code lives in ``snippets/diagram.py``; here it is only registered."""

from __future__ import annotations

from snippets.diagram import diagram_svg

GENERATED = {"figures/diagram.svg": diagram_svg}
