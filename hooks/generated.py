"""MkDocs hook: add the files that ``snippets`` generates (figures, widget data) to the
site at build time, so nothing generated is committed and nothing can drift.

Any module in ``snippets/`` may define, at module level, a mapping

    GENERATED = {"figures/diagram.svg": diagram_svg}

from a path inside the site to a function of no arguments that returns the file's
content (``str`` or ``bytes``). Defining the mapping has no side effect; the functions
run only here, once per build.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.generated")
ROOT = Path(__file__).resolve().parent.parent


def generators(package: str = "snippets") -> dict[str, object]:
    """Every ``GENERATED`` entry of every module of ``package``, by site path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    pkg = importlib.import_module(package)
    found: dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{package}.{info.name}")
        for path, func in getattr(module, "GENERATED", {}).items():
            if path in found:
                raise ValueError(f"{package}.{info.name} generates {path!r} a second time")
            found[path] = func
    return found


def render_all(package: str = "snippets") -> dict[str, str | bytes]:
    """Run every generator; the content of each generated file, by site path."""
    return {path: func() for path, func in generators(package).items()}


def on_files(files, config, **kwargs):
    # Reload so that `mkdocs serve` picks up edits to snippets without a restart.
    for name in [m for m in sys.modules if m == "snippets" or m.startswith("snippets.")]:
        del sys.modules[name]
    for path, content in render_all().items():
        if files.get_file_from_path(path) is not None:
            files.remove(files.get_file_from_path(path))
        files.append(File.generated(config, path, content=content))
    return files
