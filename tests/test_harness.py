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
    with pytest.raises(RuntimeError, match="no-such-marker"):
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
