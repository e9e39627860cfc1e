"""MkDocs hook: drop the test markers from the Markdown before it is rendered.

``<!--pytest-codeblocks:...-->`` and ``<!--pytest.mark...-->`` lines are for the test
harness, which reads the page source. Left in, Python-Markdown passes them through as
raw HTML, and inside admonitions and tabs they end up wrapped in stray paragraphs.
"""

import re

MARKER = re.compile(r"^[ \t]*<!--[-\s]*(pytest-codeblocks:|pytest\.mark\.).*-->[ \t]*\n", re.M)


def strip_markers(markdown: str) -> str:
    return MARKER.sub("", markdown)


def on_page_markdown(markdown, page, config, files, **kwargs):
    return strip_markers(markdown)
