"""The data of docs/explorer.md's widget. The page shows the code that writes it, so
that code lives in ``snippets/explorer.py``; here it is registered, and SmolLM2's
part goes through a cache.

Running SmolLM2 means reading its 94 MB file first (about 20 s), so the build keeps
what ``smollm2_data()`` returns in ``.cache/explorer/`` (git-ignored), in a file
named by a key of everything that decides it: the model file (its folder, which
names the package version, its name and size), the versions of torch, gguf and
tokenizers, and the source of ``snippets/explorer.py`` and ``snippets/smollm2.py``
and of every ``snippets`` module they import, directly or not. A build whose key
has a file reads it and never loads the model; any change to that code or the
model is a new key, so the data is computed again and can never be stale. The file
is written whole, to a temporary name first and then renamed, under a lock: an
interrupted build leaves no half-written cache, and two builds at once run the
model once.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path

from filelock import FileLock

from snippets.explorer import (
    SMOLLM2_FILE,
    SMOLLM2_SENTENCES,
    explorer_json,
    smollm2_data,
    smollm2_json,
)
from snippets.smollm2 import SmolLM2, gguf_path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "explorer"
PACKAGES = ("torch", "gguf", "tokenizers")  # the libraries the numbers depend on


def code_files(start=("explorer", "smollm2")):
    """The ``snippets`` modules ``start`` and every snippets module they import,
    directly or through another one, as paths, sorted."""
    found, todo = set(), list(start)
    while todo:
        name = todo.pop()
        path = ROOT / "snippets" / f"{name}.py"
        if path in found:
            continue
        found.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "snippets":
                modules = [f"snippets.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            todo += [m.split(".")[1] for m in modules
                     if m.startswith("snippets.") and m.count(".") == 1]
    return sorted(found)


def cache_key(model=None, files=None):
    """A hash of what decides SmolLM2's data: the model file at ``model`` (default
    ``gguf_path()``), the library versions and the source of ``files`` (default
    ``code_files()``). 16 hex digits."""
    model = Path(model if model is not None else gguf_path())
    size = model.stat().st_size if model.is_file() else "missing"
    parts = [f"model {model.parent.name}/{model.name} {size}"]
    parts += [f"{package} {version(package)}" for package in PACKAGES]
    for path in files if files is not None else code_files():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        parts.append(f"snippets/{path.name} {digest}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def cached(key, compute, folder=CACHE):
    """The JSON data cached under ``key`` in ``folder``; if there is none,
    ``compute()``'s, written there first (whole, or not at all) and the files of
    other keys removed. Under a lock, so concurrent builds compute it once."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"smollm2-{key}.json"
    with FileLock(str(folder / "smollm2.lock")):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):  # not there, or damaged
            pass
        text = json.dumps(compute(), sort_keys=True, separators=(",", ":"))
        with tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=folder, suffix=".partial", delete=False
        ) as out:
            out.write(text)
        os.replace(out.name, path)  # atomic: readers see the old file or the new one
        stale = [*folder.glob("smollm2-*.json"), *folder.glob("*.partial")]
        for old in stale:  # other keys' files, and what an interrupted build left
            if old != path:
                old.unlink(missing_ok=True)
    return json.loads(text)


@functools.cache  # once per build: the hook imports this module afresh each time
def smollm2_cached():
    """``smollm2_data()``, from the cache when this code and the model have not
    changed since it was computed."""
    return cached(cache_key(), lambda: smollm2_data(SmolLM2.from_gguf()))


def smollm2_file(sentence_id):
    """The file of one sentence of SmolLM2's data, as the widget fetches it."""
    return smollm2_json(smollm2_cached(), sentence_id)


GENERATED = {
    "assets/explorer/attention.json": explorer_json,
    **{f"assets/explorer/{SMOLLM2_FILE.format(i)}": functools.partial(smollm2_file, i)
       for i in SMOLLM2_SENTENCES},
}
