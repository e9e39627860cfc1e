"""The build hook that spares the browser work at load (hooks/lightload.py): code in
closed <details> ships in a <template>, and Material's switching rule is taken out."""

from __future__ import annotations

import re
from pathlib import Path

import material

from hooks import lightload

BLOCK = ('<div class="language-python highlight"><pre><span></span><code>'
         '<span class="n">x</span> <span class="o">=</span> <span class="mi">1</span>'
         "</code></pre></div>")
LAZY = f"<template {lightload.LAZY}>"


def unwrapped(html: str) -> str:
    return re.sub(LAZY + r"(.*?)</template>", r"\1", html, flags=re.DOTALL)


def test_code_in_a_closed_details_goes_in_a_template():
    page = f'<details class="note"><summary>All the code</summary>{BLOCK}</details>'
    out = lightload.lazy_code(page)
    assert out.count(LAZY) == 1
    # the <pre><code> stay (Material gives them their copy button), the tokens move
    assert re.search(r"<pre><span></span><code><template data-md-lazy><span", out)
    assert unwrapped(out) == page


def test_code_a_reader_sees_is_left_alone():
    page = (f"<p>before</p>{BLOCK}"
            f'<details class="note" open="open"><summary>s</summary>{BLOCK}</details>'
            f"<details open><summary>s</summary>{BLOCK}</details>")
    assert lightload.lazy_code(page) == page


def test_nesting_counts_any_closed_ancestor():
    page = ("<details><summary>closed</summary>"
            f'<details open="open"><summary>open inside</summary>{BLOCK}</details>'
            f"{BLOCK}</details>{BLOCK}"
            f'<details open><summary>o</summary><details class="x"><summary>c</summary>'
            f"{BLOCK}</details>{BLOCK}</details>")
    out = lightload.lazy_code(page)
    assert out.count(LAZY) == 3  # two under the first, one under the inner closed one
    first, shown, rest = out.partition(f"</details>{BLOCK}<details open>")
    assert shown and first.count(LAZY) == 2 and rest.count(LAZY) == 1
    assert rest.endswith(f"</details>{BLOCK}</details>")  # in the open one: as it was
    assert unwrapped(out) == page


def test_a_details_word_inside_code_is_not_a_tag():
    code = BLOCK.replace('<span class="mi">1</span>', "&lt;details&gt;")
    page = f"<details><summary>s</summary>{code}{BLOCK}</details>"
    assert lightload.lazy_code(page).count(LAZY) == 2


def test_the_switching_rule_and_nothing_else_leaves_materials_palette():
    folder = Path(material.__file__).parent / "templates" / "assets" / "stylesheets"
    sheets = list(folder.glob("palette.*.min.css"))
    assert sheets
    for sheet in sheets:
        css = sheet.read_text(encoding="utf-8")
        lean = lightload.without_switching_rule(css)
        name = "data-md-color-switching"
        assert name in css and name not in lean
        rule = (f"[{name}] *,[{name}] :after,[{name}] :before"
                "{transition-duration:0s!important}")
        assert len(css) - len(lean) == len(rule)


def test_the_built_site_ships_folded_code_in_templates(site):
    page = (site / "multi-head" / "index.html").read_text(encoding="utf-8")
    assert page.count(LAZY) >= 3
    assert lightload.SCRIPT in page
    assert lightload.lazy_code(unwrapped(page)) == page  # every folded block, once
    for sheet in (site / "assets" / "stylesheets").glob("palette.*.css"):
        assert "data-md-color-switching" not in sheet.read_text(encoding="utf-8")


def test_highlighted_blocks_are_left_out_of_the_search_index():
    page = ('<p>prose with <code>inline</code></p>' + BLOCK
            + '<div class="language-text highlight"><pre><code>2</code></pre></div>'
            + '<div class="highlight"><pre><code>x</code></pre></div>'
            + '<div class="jp-Cell jp-CodeCell jp-Notebook-cell"><div tabindex="0" '
            'class="highlight-ipynb hl-python"><pre>x = 1</pre></div>'
            '<div class="clipboard-copy-txt" id="cell-1">x = 1</div>'
            '<div class="jp-RenderedText jp-OutputArea-output" tabindex="0"><pre>1</pre>'
            "</div></div>"
            + '<div class="admonition note"><p>kept</p></div>')
    out = lightload.unindexed_code(page)
    assert out.count("data-search-exclude") == 6
    assert '<div data-search-exclude class="language-python highlight">' in out
    assert out.replace(" data-search-exclude", "") == page  # nothing else changes


def test_listings_are_set_aside_while_search_reads_the_page_and_put_back():
    titled = BLOCK.replace("<pre>", '<span class="filename">x.py</span><pre>')
    page = lightload.unindexed_code(f"<p>a</p>{BLOCK}<p>b</p>{titled}<pre>raw</pre>")
    lean, blocks = lightload.set_aside(page)
    assert len(blocks) == 2 and "<code>" not in lean and "<pre>raw</pre>" in lean
    assert lean.count("data-lightload-block") == 2
    assert lightload.put_back(lean, blocks) == page


def test_the_built_pages_hold_every_listing(site):
    """The stand-ins never reach a built page (the ground truth would also see it)."""
    left = [p for p in site.rglob("*.html") if "data-lightload-block" in p.read_text()]
    assert not left, left
