"""The data of docs/explorer.md's widget. The page shows the code that writes it, so
that code lives in ``snippets/explorer.py``; here it is only registered."""

from __future__ import annotations

from snippets.explorer import explorer_json

GENERATED = {"assets/explorer/attention.json": explorer_json}
