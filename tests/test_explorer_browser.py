"""The attention explorer in a real browser: Playwright driving the system's Chromium
against the built site (the fixtures of tests/test_browser.py).

Every number the widget shows is read back from the page and compared with
``explorer_data()`` computed here, for the mouse, the keyboard, every head and both
sentences; the widget survives Material's instant navigation (the page is not
reloaded: a marker set on ``window`` survives); its bars stand out from the
background in light and dark mode; it works embedded on a page three folders deep.
No test may leave a console error or a request to another host behind.
"""

from __future__ import annotations

import re

import pytest

from snippets.explorer import EXPLORER_SENTENCES, explorer_data
from tests.conftest import mkdocs_build
from tests.test_browser import SCREENSHOTS, TAKE_SCREENSHOTS, serve_directory
from tests.test_browser import browser, server, visit  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

READY = ".attention-explorer[data-explorer-ready='true']"

STATE = """(root) => {
  const q = (sel) => [...root.querySelectorAll(sel)];
  const buttons = q(".attention-explorer__token");
  const head = root.querySelector("select[id$='-head']");
  const sentence = root.querySelector("select[id$='-sentence']");
  return {
    tokens: buttons.map((b) => b.textContent),
    checked: buttons.map((b) => b.getAttribute("aria-checked")),
    tabbable: buttons.map((b) => b.tabIndex),
    head: head.selectedOptions[0].textContent,
    sentence: sentence ? sentence.selectedOptions[0].textContent : null,
    keys: q(".attention-explorer__key").map((e) => e.textContent),
    values: q(".attention-explorer__value").map((e) => e.textContent),
    widths: q(".attention-explorer__bar").map((e) => parseFloat(e.style.width)),
    live: root.querySelector("[aria-live]").textContent,
    controls: q("select").length,
  };
}"""


@pytest.fixture(scope="module")
def data():
    return explorer_data()


def state(page, nth=0):
    page.wait_for_selector(READY)
    return page.locator(".attention-explorer").nth(nth).evaluate(STATE)


def expect_row(shown, data, sentence_id, head_name, token_index):
    """The widget shows row ``token_index`` of that head: numbers, bars and speech."""
    (s,) = [s for s in data["sentences"] if s["id"] == sentence_id]
    (head,) = [h for h in s["heads"] if h["name"] == head_name]
    row = head["weights"][token_index]
    assert shown["tokens"] == s["tokens"] and shown["keys"] == s["tokens"]
    assert shown["head"] == head_name
    assert shown["checked"] == [
        "true" if i == token_index else "false" for i in range(len(s["tokens"]))
    ]
    # one tab stop for the group: the selected token
    assert shown["tabbable"] == [0 if i == token_index else -1 for i in range(len(row))]
    assert shown["values"] == [f"{w:.4f}" for w in row]
    assert shown["widths"] == pytest.approx([100 * w for w in row], abs=1e-6)
    spoken = ", ".join(f"{t} {w:.4f}" for t, w in zip(s["tokens"], row))
    assert shown["live"] == f"{s['tokens'][token_index]} attends to: {spoken}"


def instant(v, server):
    """Let Material's instant navigation take over links, as on the deployed site.

    Material follows a link without reloading only when its URL is in sitemap.xml,
    whose URLs carry site_url's port (8000 unless SITE_URL is set); the test server
    has another port, so the sitemap is served with the test server's address."""

    def fulfill(route):
        response = route.fetch()
        body = re.sub(r"<loc>https?://[^/<]+", f"<loc>{server}", response.text())
        route.fulfill(response=response, body=body)

    v.page.route("**/sitemap.xml", fulfill)
    return v


def follow(page, go, url):
    """Run ``go`` (a click, or a step through history) and wait until Material has
    swapped in the content of ``url``: the old article is gone, so the explorer
    read next is the new page's, never the one that is about to be replaced."""
    old = page.locator("article").element_handle()
    go()
    page.wait_for_url(url)
    page.wait_for_function("(old) => !old.isConnected", arg=old)


def clean(v):
    assert v.errors == [], "\n".join(v.errors)
    assert v.offsite == [], v.offsite


def test_hovering_a_token_shows_its_row(server, visit, data):
    v = visit()
    v.page.goto(server + "/explorer/", wait_until="load")
    first = data["sentences"][0]
    # data-token="sat" on the page: the row of "sat" is shown first
    expect_row(state(v.page), data, "cat-sat", "hand-built head", 2)
    tokens = v.page.locator(".attention-explorer__token")
    for i in [0, 1, 5, 3, 4, 2]:
        tokens.nth(i).hover()
        expect_row(state(v.page), data, "cat-sat", "hand-built head", i)
    assert state(v.page)["sentence"] == first["title"]
    clean(v)


def test_the_keyboard_selects_tokens(server, visit, data):
    v = visit()
    v.page.goto(server + "/explorer/", wait_until="load")
    v.page.wait_for_selector(READY)
    v.page.mouse.move(0, 0)
    head = v.page.get_by_label("Head", exact=True)
    head.focus()
    v.page.keyboard.press("Tab")  # from the head menu into the tokens: lands on "sat"
    active = lambda: v.page.evaluate("document.activeElement.textContent")  # noqa: E731
    assert active() == "sat"
    expect_row(state(v.page), data, "cat-sat", "hand-built head", 2)
    steps = [("ArrowRight", 3), ("ArrowRight", 4), ("ArrowLeft", 3), ("ArrowDown", 4),
             ("ArrowUp", 3), ("End", 5), ("ArrowRight", 0), ("ArrowLeft", 5),
             ("Home", 0), ("ArrowLeft", 5)]
    for key, index in steps:
        v.page.keyboard.press(key)
        assert active() == data["sentences"][0]["tokens"][index]
        expect_row(state(v.page), data, "cat-sat", "hand-built head", index)
    v.page.keyboard.press("Shift+Tab")  # one tab stop: back to the head menu
    assert v.page.evaluate("document.activeElement.id").endswith("-head")
    v.page.keyboard.press("Tab")  # and back to the token selected last
    assert active() == "mat"
    expect_row(state(v.page), data, "cat-sat", "hand-built head", 5)
    clean(v)


def test_the_tokens_are_an_accessible_radio_group(server, visit):
    v = visit()
    v.page.goto(server + "/explorer/", wait_until="load")
    v.page.wait_for_selector(READY)
    group = v.page.get_by_role("radiogroup", name="Query token")
    assert group.get_by_role("radio").count() == 6
    assert group.get_by_role("radio", name="sat (token 3)").get_attribute(
        "aria-checked") == "true"
    assert v.page.get_by_role("combobox", name="Head").count() == 1
    assert v.page.get_by_role("combobox", name="Sentence").count() == 1
    assert v.page.get_by_role("status").count() >= 1
    clean(v)


def test_switching_heads_shows_that_heads_row(server, visit, data):
    v = visit()
    v.page.goto(server + "/explorer/", wait_until="load")
    v.page.wait_for_selector(READY)
    head = v.page.get_by_label("Head", exact=True)
    shown = []
    for h in data["sentences"][0]["heads"]:
        head.select_option(label=h["name"])
        now = state(v.page)
        expect_row(now, data, "cat-sat", h["name"], 2)
        shown.append(tuple(now["values"]))
        v.page.locator(".attention-explorer__token").nth(1).hover()
        expect_row(state(v.page), data, "cat-sat", h["name"], 1)
        v.page.locator(".attention-explorer__token").nth(2).hover()
        note = v.page.locator(".attention-explorer__note").text_content()
        assert ("untrained" in note) == (h["name"] != "hand-built head")
    assert len(set(shown)) == len(shown), "every head shows a different row"
    clean(v)


def test_switching_sentences(server, visit, data):
    v = visit()
    v.page.goto(server + "/explorer/", wait_until="load")
    v.page.wait_for_selector(READY)
    v.page.get_by_label("Head", exact=True).select_option(label="head 3")
    v.page.get_by_label("Sentence", exact=True).select_option(
        label=EXPLORER_SENTENCES["mat-sat"])
    expect_row(state(v.page), data, "mat-sat", "head 3", 2)
    v.page.locator(".attention-explorer__token").nth(5).hover()
    expect_row(state(v.page), data, "mat-sat", "head 3", 5)
    clean(v)


def test_it_survives_instant_navigation(server, visit, data):
    """Material swaps the page without reloading it: the explorer is set up again on
    the new content (once), and the JavaScript state of the window survives."""
    v = instant(visit(), server)
    page = v.page
    page.goto(server + "/explorer/", wait_until="load")
    page.wait_for_selector(READY)
    page.evaluate("window.__explorerMarker = 'still here'")
    nav = page.locator("nav.md-nav--primary")
    for _ in range(2):
        home = nav.get_by_role("link", name="What is self-attention", exact=True).first
        follow(page, home.click, server + "/attention/")
        page.wait_for_selector("h1:text('What is self-attention?')")
        explorer = nav.get_by_role("link", name="Attention explorer", exact=True).first
        follow(page, explorer.click, server + "/explorer/")
        assert page.evaluate("window.__explorerMarker") == "still here", "page reloaded"
        now = state(page)
        expect_row(now, data, "cat-sat", "hand-built head", 2)
        assert now["controls"] == 2, "set up twice"
        assert page.locator(".attention-explorer__tokens").count() == 1
        page.locator(".attention-explorer__token").nth(5).hover()
        expect_row(state(page), data, "cat-sat", "hand-built head", 5)
        page.get_by_label("Head", exact=True).select_option(label="head 4")
        expect_row(state(page), data, "cat-sat", "head 4", 5)
    page.mouse.move(0, 0)  # else the token under the pointer is hovered on return
    follow(page, page.go_back, server + "/attention/")  # Material handles history too
    follow(page, page.go_forward, server + "/explorer/")
    expect_row(state(page), data, "cat-sat", "hand-built head", 2)
    assert page.evaluate("window.__explorerMarker") == "still here"
    clean(v)


def luminance(rgb):
    def channel(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def rgb(css, background=(255, 255, 255)):
    """A computed CSS colour as (r, g, b), blended over ``background`` if translucent
    (Material's text colours are black or white with an alpha)."""
    r, g, b, *alpha = [float(x) for x in re.findall(r"[\d.]+", css)]
    a = alpha[0] if alpha else 1.0
    return tuple(a * c + (1 - a) * under for c, under in zip((r, g, b), background))


COLOURS = """(root) => {
  const style = (sel, prop) => getComputedStyle(root.querySelector(sel))[prop];
  return {
    scheme: document.body.getAttribute("data-md-color-scheme"),
    bar: style(".attention-explorer__bar", "backgroundColor"),
    background: getComputedStyle(root).backgroundColor,
    page: getComputedStyle(document.body).backgroundColor,
    text: style(".attention-explorer__value", "color"),
    token: style(".attention-explorer__token[aria-checked='true']", "color"),
    transition: style(".attention-explorer__bar", "transitionDuration"),
  };
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_bars_and_numbers_are_visible_in_both_schemes(scheme, server, visit, data):
    from axe_playwright_python.sync_playwright import Axe

    v = visit(scheme)
    v.page.goto(server + "/explorer/", wait_until="load")
    v.page.wait_for_selector(READY)
    root = v.page.locator(".attention-explorer").first
    colours = root.evaluate(COLOURS)
    assert colours["scheme"] == ("slate" if scheme == "dark" else "default")
    assert colours["background"] == colours["page"]
    # WCAG: 3:1 for a graphic (the bar), 4.5:1 for text (the numbers)
    background = rgb(colours["background"])
    assert contrast(rgb(colours["bar"], background), background) >= 3, colours
    assert contrast(rgb(colours["text"], background), background) >= 4.5, colours
    assert contrast(rgb(colours["token"], background), background) >= 4.5, colours
    assert colours["transition"] != "0s"
    # The bars are drawn at their length: the bar of "cat" in the row of "sat"
    v.page.wait_for_timeout(300)  # let the width transition finish
    ratio = root.evaluate("""(root) => {
      const bars = root.querySelectorAll(".attention-explorer__bar");
      return [...bars].map((b) => b.getBoundingClientRect().width
                           / b.parentElement.getBoundingClientRect().width);
    }""")
    sat_row = data["sentences"][0]["heads"][0]["weights"][2]
    assert ratio == pytest.approx(sat_row, abs=0.01)
    if TAKE_SCREENSHOTS:
        SCREENSHOTS.mkdir(exist_ok=True)
        root.screenshot(path=str(SCREENSHOTS / f"explorer-widget-{scheme}.png"))
    problems = [
        f"axe {violation['id']}: {violation['help']}"
        for violation in Axe().run(v.page, context=".attention-explorer")
        .response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert problems == []
    clean(v)


def test_reduced_motion_turns_the_animation_off(server, visit):
    v = visit()
    v.page.emulate_media(reduced_motion="reduce")
    v.page.goto(server + "/explorer/", wait_until="load")
    v.page.wait_for_selector(READY)
    colours = v.page.locator(".attention-explorer").first.evaluate(COLOURS)
    assert colours["transition"] == "0s"
    clean(v)


# Embedded elsewhere: a small site of its own, with the widget on the home page and on
# a page three folders deep, linked to each other.

HOME = """# Home

<div class="attention-explorer" data-src="assets/explorer/attention.json"
     data-sentence="mat-sat" data-head="head 2" data-token="cat"></div>

[Deep page](deep/er/page.md)
"""

DEEP = """# Deep page

<div class="attention-explorer"
     data-src="../../../assets/explorer/attention.json"></div>

<div class="attention-explorer" data-src="../../../assets/explorer/attention.json"
     data-sentence="cat-sat" data-token="mat"></div>

[Home](../../index.md)
"""


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """A scratch copy of the project with two pages that embed the explorer."""
    import shutil

    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("embedded")
    ignore = shutil.ignore_patterns("__pycache__", "*.md", "notebooks")
    for name in ("hooks", "docs"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    # Only the modules the explorer's data needs: the build runs every generator.
    (root / "snippets").mkdir()
    for module in ("__init__", "attention", "multi_head", "explorer"):
        shutil.copy(ROOT / "snippets" / f"{module}.py", root / "snippets")
    config = (ROOT / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^nav:\n.*?(?=^\S)", "", config)
    (root / "mkdocs.yml").write_text(config)
    (root / "docs" / "index.md").write_text(HOME)
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "docs" / "deep" / "er" / "page.md").write_text(DEEP)
    build = mkdocs_build(root / "site", root / "mkdocs.yml")
    assert build.returncode == 0, build.log
    with serve_directory(root / "site") as url:
        yield url


def test_embedded_on_a_nested_page_and_the_home_page(embedded, visit, data):
    v = instant(visit(), embedded)
    page = v.page
    page.goto(embedded + "/deep/er/page/", wait_until="load")
    page.wait_for_selector(READY + " >> nth=1")
    expect_row(state(page, 0), data, "cat-sat", "hand-built head", 0)
    mat = data["sentences"][0]["tokens"].index("mat")
    second = state(page, 1)
    expect_row(second, data, "cat-sat", "hand-built head", mat)
    assert second["sentence"] is None and second["controls"] == 1  # fixed sentence
    ids = page.evaluate("[...document.querySelectorAll('[id]')].map((e) => e.id)")
    assert len(ids) == len(set(ids)), "two explorers on a page share an id"
    page.locator(".attention-explorer").nth(1).locator(
        ".attention-explorer__token").nth(1).hover()
    expect_row(state(page, 1), data, "cat-sat", "hand-built head", 1)
    expect_row(state(page, 0), data, "cat-sat", "hand-built head", 0)  # untouched
    page.evaluate("window.__explorerMarker = 'still here'")
    # Instant navigation to a page at another depth: data-src is resolved per page.
    follow(page, page.locator("article").get_by_role("link", name="Home").click,
           embedded + "/")
    swapped = data["sentences"][1]
    expect_row(state(page), data, "mat-sat", "head 2", swapped["tokens"].index("cat"))
    page.locator(".attention-explorer__token").nth(2).hover()
    expect_row(state(page), data, "mat-sat", "head 2", 2)
    follow(page, page.locator("article").get_by_role("link", name="Deep page").click,
           embedded + "/deep/er/page/")
    page.wait_for_selector(READY + " >> nth=1")
    expect_row(state(page, 1), data, "cat-sat", "hand-built head", mat)
    assert page.evaluate("window.__explorerMarker") == "still here", "page reloaded"
    clean(v)


def test_a_missing_data_file_is_reported(embedded, visit):
    """The control: a wrong data-src is an error on the page and in the console,
    which the tests above would have caught."""
    v = visit()
    v.page.goto(embedded + "/", wait_until="load")
    v.page.evaluate("""() => {
      const div = document.createElement("div");
      div.className = "attention-explorer";
      div.setAttribute("data-src", "no/such/file.json");
      document.querySelector("article").append(div);
      window.attentionExplorer.init();
    }""")
    v.page.wait_for_selector(".attention-explorer[data-explorer-ready='error']")
    text = v.page.locator("[data-explorer-ready='error']").text_content()
    assert "could not start" in text and "404" in text
    assert any("attention explorer" in e for e in v.errors)
