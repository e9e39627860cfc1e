"""MkDocs hook: small accessibility fixes to the theme's HTML.

Material's search overlay is a ``role="dialog"`` with no accessible name, which
axe-core reports as a serious violation; give it one.
"""

SEARCH_DIALOG = '<div class="md-search" data-md-component="search" role="dialog">'
NAMED_DIALOG = (
    '<div class="md-search" data-md-component="search" role="dialog" aria-label="Search">'
)


def name_search_dialog(html: str) -> str:
    return html.replace(SEARCH_DIALOG, NAMED_DIALOG)


def on_post_page(output, page, config, **kwargs):
    return name_search_dialog(output)
