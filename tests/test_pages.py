"""The helpers that read pages for the number checks."""

from tests import pages

TEXT = """# Title

Intro with 3 tokens and a weight of 0.0900.

```python
x = 12345  # code is not prose
```

## Numbers

| row | weight |
| --- | ---: |
| 1 | 0.0900 |
| 2 | −1.5 |

## Next

Other 7.
"""


def test_prose_drops_fences():
    assert "12345" not in pages.prose(TEXT)
    assert "0.0900" in pages.prose(TEXT)


def test_section_stops_at_the_next_heading():
    body = pages.section(TEXT, "Numbers")
    assert "0.0900" in body and "Other" not in body


def test_tables_and_numbers():
    (table,) = pages.tables(TEXT)
    assert table == [["row", "weight"], ["1", "0.0900"], ["2", "−1.5"]]
    assert pages.numbers(pages.section(TEXT, "Numbers")) == [1.0, 0.09, 2.0, -1.5]
    assert pages.numbers("x_1 and 2e-3 and v2") == [0.002]


def test_a_comment_in_code_is_no_heading():
    text = "## Code\n\n```python\n# a comment\nx = 1\n```\n\nAfter 2.\n\n## Next\n\nOther 3.\n"
    body = pages.section(text, "Code")
    assert "After 2." in body and "Other" not in body
    assert pages.numbers(pages.prose(body)) == [2.0]
