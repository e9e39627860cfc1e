"""Collect every ``python`` block of every page under docs/ as a pytest item.

The item for the block whose fence opens on line 42 of docs/index.md is
``docs/index.md::index.md:42``; select it with ``-k "index.md:42"``.
"""

import importlib
import os
from pathlib import Path

import pytest

from snippets.smollm2 import gguf_path
from tests import harness

# A page's "all the code" block runs in a fresh interpreter away from the repository;
# this tells docs/smollm2.md's where the model file is.
os.environ.setdefault("SMOLLM2_GGUF", str(gguf_path()))


def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix == ".md" and harness.DOCS in file_path.parents:
        return MarkdownPage.from_parent(parent, path=file_path)
    return None


class MarkdownPage(pytest.File):
    def collect(self):
        for block in harness.collect_page(self.path):
            item = CodeBlockItem.from_parent(self, name=block.name, block=block)
            for mark in block.marks:
                item.add_marker(eval(mark, {"pytest": pytest}))  # noqa: S307
            yield item


class CodeBlockItem(pytest.Item):
    def __init__(self, *, block, **kwargs):
        super().__init__(**kwargs)
        self.block = block

    def runtest(self):
        if self.block.importorskip:
            pytest.importorskip(self.block.importorskip)
        harness.run_block(self.block)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (harness.BlockFailure, harness.OutputMismatch)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, self.block.lineno - 1, f"docs/{self.block.name}"
