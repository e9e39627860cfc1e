"""Collect every Python block of every page under docs/ (Markdown pages and the
Markdown cells of notebooks) as a pytest item.

The item for the block whose fence opens on line 42 of docs/attention.md is
``docs/attention.md::attention.md:42``; select it with ``-k "attention.md:42"``.
pytest-codeblocks' own items cannot serve: they run a block without its includes,
compare one output per chain and apply any mark a page writes.
"""

import os
from pathlib import Path

# One torch thread per process: the suite runs two workers on two cores, and a second
# thread in each process (xdist workers, "all the code" interpreters, the site build)
# only spins. Set before the workers start, so they inherit it; a value given on the
# command line wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from _pytest.nodeid import NodeId  # noqa: E402

from tests import harness  # noqa: E402

# A page's "all the code" block runs in a fresh interpreter away from the repository;
# this tells docs/smollm2.md's where the model file is. (The scratch projects of the
# harness's own tests have no snippets.smollm2, and no page that needs it.)
try:
    from snippets.smollm2 import gguf_path  # noqa: E402
except ModuleNotFoundError as err:
    if err.name != "snippets.smollm2":
        raise
else:
    os.environ.setdefault("SMOLLM2_GGUF", str(gguf_path()))


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook
def pytest_collection_modifyitems(config, items):
    """Blocks that load SmolLM2 from snippets.smollm2 run on the worker of the
    "smollm2" group, whose process has read the model already (tests/test_smollm2.py
    reads it once per process); an "all the code" block starts an interpreter of its
    own, so it runs wherever there is room.

    Then each item with an ``xdist_group`` mark gets the "@group" ending by which
    ``--dist loadgroup`` sends a group to one worker. pytest-xdist 3.8.0 writes it
    into ``item._nodeid``, which pytest 9.2 no longer reads (it keeps the id in
    ``item._id``), so without this every group is spread over the workers
    (pytest-dev/pytest-xdist#1386)."""
    for item in items:
        block = getattr(item, "block", None)
        if (isinstance(block, harness.Block) and not block.standalone
                and "snippets.smollm2" in block.source):
            item.add_marker(pytest.mark.xdist_group("smollm2"))
    if not config.getoption("loadgroup", default=False):  # workers of --dist loadgroup
        return
    for item in items:
        groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get(
            "name", "default")) for mark in item.iter_markers("xdist_group")})
        ending = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(ending):
            item._id = NodeId.parse(item.nodeid + ending)


def pytest_collect_file(parent, file_path: Path):
    if harness.DOCS in file_path.parents and harness.is_page(file_path):
        return DocsPage.from_parent(parent, path=file_path)
    return None


class DocsPage(pytest.File):
    def collect(self):
        try:
            blocks = harness.collect_page(self.path)
            verdicts = harness.verdicts(harness.page_name(self.path), blocks)
        except (harness.PageError, ValueError) as err:
            raise self.CollectError(str(err)) from err
        for block, verdict in zip(blocks, verdicts):
            item = CodeBlockItem.from_parent(self, name=block.name, block=block,
                                             verdict=verdict)
            for mark in verdict.marks:
                item.add_marker(mark)
            yield item


class CodeBlockItem(pytest.Item):
    def __init__(self, *, block, verdict, **kwargs):
        super().__init__(**kwargs)
        self.block = block
        self.verdict = verdict

    def runtest(self):
        if self.verdict.problems:
            raise harness.NotAllowed("\n".join(self.verdict.problems))
        if self.block.importorskip:
            pytest.importorskip(self.block.importorskip)
        harness.run_block(self.block)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (harness.BlockFailure, harness.OutputMismatch,
                                      harness.NotAllowed)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, self.block.lineno - 1, f"docs/{self.block.name}"
