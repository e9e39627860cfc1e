"""The code-block harness catches each kind of mistake, and says where it is."""

from __future__ import annotations

import textwrap

import pytest

from tests import harness

OK_PAGE = '''\
# A page

```python title="snippets/attention.py"
--8<-- "snippets/attention.py:imports"
--8<-- "snippets/checks.py:input-checks"
--8<-- "snippets/attention.py:scores"
```

<!--pytest-codeblocks:cont-->
```python
q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
print(attention_scores(q, q))
```

<!--pytest-codeblocks:expected-output-->
```text
tensor([[1., 0.],
        [0., 4.]])
```

!!! tip "Inside an admonition"

    === "A tab"

        ```python
        print(sum(range(4)))
        ```

        <!--pytest-codeblocks:expected-output-->
        ```text
        6
        ```

<!--pytest.mark.skip(reason="shows an error on purpose")-->
```python
raise RuntimeError("never run")
```
'''


def write_page(tmp_path, text, name="page.md"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run_page(tmp_path, text):
    return [
        (b, harness.run_block(b)) for b in harness.collect_page(write_page(tmp_path, text),
                                                                docs=tmp_path)
        if not b.marks
    ]


def test_collects_titled_indented_and_continued_blocks(tmp_path):
    blocks = harness.collect_page(write_page(tmp_path, OK_PAGE), docs=tmp_path)
    assert [b.name for b in blocks] == ["page.md:3", "page.md:25", "page.md:35"]
    assert [p.lineno for p in blocks[0].pieces] == [3, 10]
    first = blocks[0]
    assert len(first.pieces) == 2  # the fence and its cont
    assert "def attention_scores" in first.source  # the include was expanded
    assert blocks[2].marks == ["pytest.mark.skip(reason=\"shows an error on purpose\")"]


def test_runs_and_checks_output(tmp_path):
    results = run_page(tmp_path, OK_PAGE)
    assert [out for _, out in results] == [
        ["", "tensor([[1., 0.],\n        [0., 4.]])\n"],
        ["6\n"],
    ]


def test_exception_names_page_and_line(tmp_path):
    page = "# P\n\ntext\n\n```python\nx = 1\ny = x / 0\n```\n"
    with pytest.raises(harness.BlockFailure) as err:
        run_page(tmp_path, page)
    message = str(err.value)
    assert "docs/page.md:7" in message  # the line of `y = x / 0` in the page
    assert "ZeroDivisionError" in message


def test_exception_inside_included_code_names_the_snippet_line(tmp_path):
    page = (
        '```python\n--8<-- "snippets/attention.py:imports"\n'
        '--8<-- "snippets/attention.py:sdpa"\n'
        '--8<-- "snippets/checks.py:input-checks"\n'
        "--8<-- \"snippets/attention.py:causal-mask\"\n"
        "--8<-- \"snippets/attention.py:scores\"\n"
        "--8<-- \"snippets/attention.py:scale\"\n"
        "--8<-- \"snippets/attention.py:softmax\"\n"
        "--8<-- \"snippets/attention.py:weighted-sum\"\n"
        "q = torch.ones(2, 3)\n"
        "scaled_dot_product_attention(q, q, torch.ones(4, 3))\n```\n"
    )
    with pytest.raises(harness.BlockFailure) as err:
        run_page(tmp_path, page)
    message = str(err.value)
    assert "docs/page.md:11" in message  # the call on the page
    source = (harness.ROOT / "snippets/checks.py").read_text().splitlines()
    raise_line = next(
        n for n, line in enumerate(source, 1) if "as in \"" in line
    )
    # the frames inside the included functions point into snippets/ files
    assert "snippets/attention.py:" in message and "ValueError" in message
    assert any(
        f"snippets/checks.py:{n} " in message for n in range(raise_line - 2, raise_line + 1)
    ), message


def test_each_part_of_a_chain_checks_its_own_output(tmp_path):
    page = (
        "```python\nx = 2\nprint(x)\n```\n\n"
        "<!--pytest-codeblocks:expected-output-->\n```text\n2\n```\n\n"
        "<!--pytest-codeblocks:cont-->\n```python\nprint(x * 10)\n```\n\n"
        "<!--pytest-codeblocks:expected-output-->\n```text\n21\n```\n"
    )
    with pytest.raises(harness.OutputMismatch) as err:
        run_page(tmp_path, page)
    assert "docs/page.md:12" in str(err.value)  # the second part, not the first
    assert "-21" in str(err.value) and "+20" in str(err.value)


def test_update_page_writes_what_the_code_prints(tmp_path):
    page = write_page(
        tmp_path,
        "!!! note\n\n    ```python\n    print('a')\n    print('b')\n    ```\n\n"
        "    <!--pytest-codeblocks:expected-output-->\n    ```text\n    old\n    ```\n",
    )
    assert harness.update_page(page, docs=tmp_path) == 1
    assert "    ```text\n    a\n    b\n    ```" in page.read_text()
    assert harness.update_page(page, docs=tmp_path) == 0
    block = harness.collect_page(page, docs=tmp_path)[0]
    assert harness.run_block(block) == ["a\nb\n"]


def test_blank_lines_survive_in_indented_output(tmp_path):
    page = write_page(
        tmp_path,
        "??? example\n\n    ```python\n    print('a')\n    print()\n    print('b')\n    ```\n\n"
        "    <!--pytest-codeblocks:expected-output-->\n    ```text\n    a\n\n    b\n    ```\n",
    )
    block = harness.collect_page(page, docs=tmp_path)[0]
    assert block.pieces[0].expected_output == "a\n\nb\n"
    assert harness.run_block(block) == ["a\n\nb\n"]


def test_unknown_marker_is_rejected(tmp_path):
    page = "<!--pytest-codeblocks:no-such-marker-->\n```python\npass\n```\n"
    with pytest.raises(harness.PageError, match="docs/page.md: .*no-such-marker"):
        harness.collect_page(write_page(tmp_path, page), docs=tmp_path)


def test_output_mismatch_shows_a_diff(tmp_path):
    page = "```python\nprint(1 + 1)\n```\n\n<!--pytest-codeblocks:expected-output-->\n```text\n3\n```\n"
    with pytest.raises(harness.OutputMismatch) as err:
        run_page(tmp_path, page)
    message = str(err.value)
    assert "docs/page.md:1" in message
    assert "-3" in message and "+2" in message


def test_each_block_starts_fresh(tmp_path):
    """A block cannot use a name that only an earlier block defined."""
    page = "```python\nx = 1\n```\n\n```python\nprint(x)\n```\n"
    with pytest.raises(harness.BlockFailure, match="NameError"):
        run_page(tmp_path, page)


def test_unseeded_randomness_is_caught(tmp_path):
    """RNGs are scrambled before each block, so output that depends on an unseeded
    generator cannot match the page two runs in a row."""
    page = (
        "```python\nimport torch\nprint(torch.rand(1).item())\n```\n\n"
        "<!--pytest-codeblocks:expected-output-->\n```text\n0.5\n```\n"
    )
    blocks = harness.collect_page(write_page(tmp_path, page), docs=tmp_path)
    outputs = {harness.run_in_process(blocks[0])[0] for _ in range(3)}
    assert len(outputs) == 3


def test_missing_include_is_an_error_naming_the_page_line(tmp_path):
    page = '# P\n\n```python\n--8<-- "snippets/attention.py:no-such-section"\n```\n'
    with pytest.raises(harness.IncludeError, match=r"docs/page.md:4: .*no-such-section"):
        harness.collect_page(write_page(tmp_path, page), docs=tmp_path)


def test_includes_resolve_from_the_repository_root(tmp_path, monkeypatch):
    """pymdownx.snippets reads base_path "." from the current directory; the harness
    reads it from the folder of mkdocs.yml, so pytest may run from anywhere."""
    page = write_page(tmp_path, '```python\n--8<-- "snippets/attention.py:imports"\n```\n')
    monkeypatch.chdir(tmp_path)
    for cached in (harness.mkdocs_yml, harness.snippets_config, harness.snippet_preprocessor):
        cached.cache_clear()
    (block,) = harness.collect_page(page, docs=tmp_path)
    assert "import torch" in block.source
    assert str(block.pieces[0].origins[0]).startswith("snippets/attention.py:")


@pytest.fixture
def included_from(tmp_path, monkeypatch):
    """Includes resolve from ``tmp_path`` (as from the repository root) in this test."""
    monkeypatch.setattr(harness, "ROOT", tmp_path)
    monkeypatch.setitem(harness.snippets_config(), "base_path", [str(tmp_path)])
    harness.snippet_preprocessor.cache_clear()
    harness._expand_line.cache_clear()
    yield tmp_path
    harness.snippet_preprocessor.cache_clear()
    harness._expand_line.cache_clear()


def test_included_lines_name_their_line_in_a_nested_section(included_from):
    """Section markers inside a section are dropped from the include, and each line
    still maps to its own line of the file."""
    (included_from / "mod.py").write_text(
        "# --8<-- [start:outer]\nclass A:\n    # --8<-- [start:inner]\n"
        "    def f(self):\n        return 1 / 0\n    # --8<-- [end:inner]\n"
        "    x = 1\n# --8<-- [end:outer]\n"
    )
    page = write_page(included_from, '```python\n--8<-- "mod.py:outer"\nA().f()\n```\n')
    (block,) = harness.collect_page(page, docs=included_from)
    via = " (included at docs/page.md:2)"
    assert [str(o) for o in block.pieces[0].origins] == [
        f"mod.py:{n}{via}" for n in (2, 4, 5, 7)
    ] + ["docs/page.md:3"]
    with pytest.raises(harness.BlockFailure, match=r"mod\.py:5 .*\n *return 1 / 0"):
        harness.run_block(block)


def test_an_include_outside_a_fence_brings_its_blocks(included_from):
    """An include around the fences (here a Markdown file with a block and its output)
    is expanded as the site expands it, so its block runs and its output is checked."""
    (included_from / "part.md").write_text(
        "```python\nprint(1 + 1)\n```\n\n<!--pytest-codeblocks:expected-output-->\n"
        "```text\n3\n```\n"
    )
    page = write_page(included_from, '# P\n\n--8<-- "part.md"\n')
    (block,) = harness.collect_page(page, docs=included_from)
    assert block.name == "page.md:3 (part.md:1)"
    with pytest.raises(harness.OutputMismatch, match="-3"):
        harness.run_block(block)


def test_standalone_block_runs_in_a_fresh_interpreter(tmp_path):
    """The "all the code on this page" block runs with no access to the repo."""
    page = (
        '```python title="All the code on this page"\n'
        "import snippets\n```\n"
    )
    blocks = harness.collect_page(write_page(tmp_path, page), docs=tmp_path)
    assert blocks[0].standalone
    with pytest.raises(harness.BlockFailure, match="ModuleNotFoundError"):
        harness.run_block(blocks[0])


ODD_PAGES = {
    # The bare IndexError of the old harness: markers with no python block before.
    "output under a text block": "```text\nhi\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n```text\n1\n```\n",
    "cont after a text block": "```text\nx\n```\n\n<!--pytest-codeblocks:cont-->\n"
    "```python\nprint(1)\n```\n",
    "a fence never closed": "```python\nprint(1)\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n```\n",
    "a marker with nothing after it": "```python\nprint(1)\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n",
    "an output fenced as python": "```python\nprint(1)\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n```python\nprint(2)\n```\n",
    "two outputs for one block": "```python\nprint(1)\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n```text\n1\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n```text\n1\n```\n",
    # A wrong output, then one under a console block that nothing runs: the old harness
    # compared the code with the second and never with 999.
    "an output under a console block": "```python\nprint(1 + 1)\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n```text\n999\n```\n\n"
    "```console\n$ true\n```\n\n<!--pytest-codeblocks:expected-output-->\n```text\n2\n```\n",
    "marks on an output": "```python\nprint(1)\n```\n\n"
    "<!--pytest-codeblocks:expected-output-->\n<!--pytest.mark.skip(reason='a b c')-->\n"
    "```text\n1\n```\n",
    "skipfile": "<!--pytest-codeblocks:skipfile-->\n\n```python\nprint(1)\n```\n",
}


@pytest.mark.parametrize("text", ODD_PAGES.values(), ids=ODD_PAGES.keys())
def test_odd_pages_are_a_clear_error_naming_the_page(tmp_path, text):
    with pytest.raises(harness.PageError, match=r"docs/page\.md"):
        harness.collect_page(write_page(tmp_path, text), docs=tmp_path)


def test_every_alias_pygments_highlights_as_python_runs(tmp_path):
    page = "".join(
        f"```{info}\nprint({n})\n```\n\n<!--pytest-codeblocks:expected-output-->\n"
        f"```text\n{n}\n```\n\n"
        for n, info in enumerate(["py3", "{.python}", "ipython3", "sage", "bazel",
                                  'python title="x.py"', ".pyi", "numpy"])
    ) + "```pycon\n>>> 1\n```\n"
    blocks = harness.collect_page(write_page(tmp_path, page), docs=tmp_path)
    assert len(blocks) == 9
    assert [harness.run_block(b) for b in blocks[:8]] == [[f"{n}\n"] for n in range(8)]
    with pytest.raises(harness.BlockFailure, match="SyntaxError"):
        harness.run_block(blocks[8])  # shown as Python, so it must run as Python


REGISTERED = """
[[skip]]
page = "page.md"
reason = "an excerpt shown on its own"
blocks = 1

[[xfail]]
page = "page.md"
reason = "raises on purpose to show the error"
blocks = 1

[[importorskip]]
page = "page.md"
module = "no_such_module"
reason = "needs a package we do not install"
blocks = 1
"""
NOT_RUN = {
    "unlisted skip": ('<!--pytest.mark.skip(reason="never listed anywhere")-->', "not listed"),
    "empty reason": ('<!--pytest.mark.skip(reason="")-->', "written reason"),
    "a quote for a reason": ("<!--pytest.mark.skip(reason=\"'\")-->", "written reason"),
    "bare skip": ("<!--pytest.mark.skip-->", "written reason"),
    "old-style skip": ("<!--pytest-codeblocks:skip-->", "written reason"),
    "xfail": ("<!--pytest.mark.xfail-->", "written reason"),
    "xfail(run=False)": ("<!--pytest.mark.xfail(run=False)-->", "written reason"),
    "unlisted importorskip": ("<!--pytest-codeblocks:importorskip(other_module)-->",
                              "not listed"),
    "skipif": ('<!--pytest.mark.skipif(True, reason="never listed anywhere")-->',
               "not listed"),
    "another mark": ("<!--pytest.mark.usefixtures('x')-->", "only skip or xfail"),
    "computed reason": ('<!--pytest.mark.skip(reason="a b c" + "")-->', "literal"),
}


def verdict(tmp_path, marker, registry=REGISTERED):
    (tmp_path / "skips.toml").write_text(registry)
    page = write_page(tmp_path, f"{marker}\n```python\nprint(2)\n```\n\n"
                      "<!--pytest-codeblocks:expected-output-->\n```text\n999\n```\n")
    blocks = harness.collect_page(page, docs=tmp_path)
    (out,) = harness.verdicts("page.md", blocks, tmp_path / "skips.toml")
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytest-codeblocks:skip
@pytest.mark.parametrize(("marker", "why"), NOT_RUN.values(), ids=NOT_RUN.keys())
def test_a_wrong_output_cannot_hide_behind_a_skip_or_xfail(tmp_path, marker, why):
    """Each of these turned the wrong 999 into SKIPPED or XFAIL with exit code 0."""
    out = verdict(tmp_path, marker)
    assert not out.runs and not out.marks
    assert any(why in p and p.startswith("docs/page.md:2") for p in out.problems), out


@pytest.mark.parametrize("marker", [
    '<!--pytest.mark.skip(reason="an excerpt shown on its own")-->',
    '<!--pytest.mark.xfail(reason="raises on purpose to show the error")-->',
    "<!--pytest-codeblocks:importorskip(no_such_module)-->",
])
def test_listed_skips_and_xfails_are_allowed_locally(tmp_path, monkeypatch, marker):
    monkeypatch.setattr(harness, "IN_CI", False)
    out = verdict(tmp_path, marker)
    assert out.problems == [] and not out.runs
    assert len(out.marks) == ("importorskip" not in marker)


def test_under_ci_no_xfail_passes_and_no_import_skips(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "IN_CI", True)
    xfail = verdict(tmp_path, '<!--pytest.mark.xfail(reason="raises on purpose to show '
                              'the error")-->')
    assert xfail.problems and "CI=true" in xfail.problems[0] and not xfail.marks
    missing = verdict(tmp_path, "<!--pytest-codeblocks:importorskip(no_such_module)-->")
    assert missing.problems and "CI=true" in missing.problems[0]


def test_a_listed_count_must_match_the_page(tmp_path):
    out = verdict(tmp_path, '<!--pytest.mark.skip(reason="an excerpt shown on its own")-->',
                  REGISTERED.replace("blocks = 1", "blocks = 2", 1))
    assert any("tests/skips.toml lists 2" in p for p in out.problems)


@pytest.mark.parametrize("reason", ["", "'", "x", "two words"])
def test_the_registry_needs_written_reasons(tmp_path, reason):
    path = tmp_path / "skips.toml"
    path.write_text(f'[[skip]]\npage = "p.md"\nreason = "{reason}"\nblocks = 1\n')
    with pytest.raises(ValueError, match="three words"):
        harness.registry(path)
