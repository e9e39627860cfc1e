"""MkDocs hook: add the files of the ``figures`` package (figures, widget data) to the
site at build time, so nothing generated is committed and nothing can drift.

Any module in ``figures/`` may define, at module level, a mapping

    GENERATED = {"figures/diagram.svg": diagram_svg}

from a path inside the site to a function of no arguments that returns the file's
content (``str`` or ``bytes``). Defining the mapping has no side effect; the functions
run only here, once per build.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import sys
import tempfile
import threading
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.generated")
ROOT = Path(__file__).resolve().parent.parent


def generators(package: str = "figures", only: str | None = None) -> dict[str, object]:
    """Every ``GENERATED`` entry of every module of ``package`` (or of the module
    ``only``, when one page is built on its own), by site path."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    pkg = importlib.import_module(package)
    found: dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if only is not None and info.name != only:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        for path, func in getattr(module, "GENERATED", {}).items():
            if path in found:
                raise ValueError(f"{package}.{info.name} generates {path!r} a second time")
            found[path] = func
    return found


def render_all(package: str = "figures") -> dict[str, str | bytes]:
    """Run every generator; the content of each generated file, by site path."""
    return {path: func() for path, func in generators(package).items()}


class _Background:
    """Write every generated file in a background thread.

    The files are registered with MkDocs at once (backed by paths in a temporary
    folder), then written while the pages render: most of that time the main thread
    waits on the notebook kernels, so the figures cost the build almost nothing.
    ``on_env``, which MkDocs runs before it copies any file, waits for the thread and
    fails the build if a generator raised."""

    def __init__(self, gens: dict, folder: Path):
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(gens, folder), daemon=True)
        self.thread.start()

    def _run(self, gens, folder):
        for path, func in gens.items():
            try:
                content = func()
                target = folder / path
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    target.write_text(content, encoding="utf-8")
            except BaseException as err:  # reported by wait(), on the main thread
                self.errors.append(err)

    def wait(self):
        self.thread.join()
        if self.errors:
            raise self.errors[0]


_background: _Background | None = None


def on_files(files, config, **kwargs):
    global _background
    # Reload so that `mkdocs serve` picks up edits to figures and snippets without a
    # restart.
    for name in [m for m in sys.modules if m.split(".")[0] in ("figures", "snippets")]:
        del sys.modules[name]
    # pyplot peeks at sys.modules["IPython"] when first imported; if that happened in
    # the background thread while nbconvert imports IPython here, it would see a
    # half-initialised module. Import IPython whole, then pyplot, on this thread.
    import IPython  # noqa: F401

    # `make page PAGE=x` builds page x alone (tests/page.py): only its figures.
    page = os.environ.get("SITE_PAGE")
    gens = generators(only=page.replace("-", "_") if page else None)
    from figures.svg import pyplot

    pyplot()
    folder = Path(tempfile.mkdtemp(prefix="generated-"))
    for path in gens:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        if files.get_file_from_path(path) is not None:
            files.remove(files.get_file_from_path(path))
        files.append(File.generated(config, path, abs_src_path=str(folder / path)))
    _background = _Background(gens, folder)
    return files


def on_env(env, config, files, **kwargs):
    if _background is not None:
        _background.wait()
    return env
