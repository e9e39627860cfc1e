"""The attention explorer in a real browser: Playwright driving the system's Chromium
against the built site (the fixtures of tests/test_browser.py).

Every number the widget shows is read back from the page and compared with
``explorer_data()`` computed here, for the mouse, the keyboard, every head and both
sentences; the widget survives Material's instant navigation (the page is not
reloaded: a marker set on ``window`` survives); its bars stand out from the
background in light and dark mode; it works embedded on a page three folders deep.
No test may leave a console error or a request to another host behind.

SmolLM2: picking it fetches one sentence's file (and nothing before); for a layer
and a head picked in the menus, the bars, the numbers and the heatmap's pixels are
the file's weights (tests/test_explorer.py checks the file against the model); the
heatmap hatches the masked cells above the diagonal; pointing at a cell reads its
weight; the widget fits a phone's width.
"""

from __future__ import annotations

import json
import re

import pytest

from snippets.explorer import EXPLORER_SENTENCES, SMOLLM2_FILE, explorer_data
from tests.conftest import mkdocs_build
from tests.test_explorer import heads
from tests.test_browser import SCREENSHOTS, TAKE_SCREENSHOTS, serve_directory
from tests.test_browser import browser, server, visit  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

READY = ".attention-explorer[data-explorer-ready='true']"
SHOWN = READY + ":not([data-explorer-loading])"  # and no SmolLM2 file on its way

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
    layer: root.querySelector("select[id$='-layer']").closest("[hidden]") ? null
      : root.querySelector("select[id$='-layer']").selectedOptions[0].textContent,
    readout: root.querySelector(".attention-explorer__readout").textContent,
  };
}"""


@pytest.fixture(scope="module")
def data():
    return explorer_data()


def state(page, nth=0):
    """What explorer ``nth`` shows, once it is set up and has nothing on its way."""
    root = page.locator(".attention-explorer").nth(nth)
    page.wait_for_function("(root) => root.getAttribute('data-explorer-ready') === "
                           "'true' && !root.hasAttribute('data-explorer-loading')",
                           arg=root.element_handle())
    return root.evaluate(STATE)


def expect_values(shown, tokens, rows, head_name, token_index):
    """The widget shows row ``token_index`` of ``rows``: numbers, bars and speech."""
    row = rows[token_index]
    assert shown["tokens"] == tokens and shown["keys"] == tokens
    assert shown["head"] == head_name
    assert shown["checked"] == [
        "true" if i == token_index else "false" for i in range(len(tokens))
    ]
    # one tab stop for the group: the selected token
    assert shown["tabbable"] == [0 if i == token_index else -1 for i in range(len(row))]
    assert shown["values"] == [f"{w:.4f}" for w in row]
    assert shown["widths"] == pytest.approx([100 * w for w in row], abs=1e-6)
    said = [t.replace("\u2423", " ").strip() or t for t in tokens]  # ␣ is a space
    spoken = ", ".join(f"{t} {w:.4f}" for t, w in zip(said, row))
    assert shown["live"] == f"{said[token_index]} attends to: {spoken}"


def expect_row(shown, data, sentence_id, head_name, token_index):
    """The widget shows row ``token_index`` of that head of the small heads."""
    (s,) = [s for s in data["sentences"] if s["id"] == sentence_id]
    (head,) = [h for h in s["heads"] if h["name"] == head_name]
    expect_values(shown, s["tokens"], head["weights"], head_name, token_index)
    assert shown["layer"] is None  # no layer menu for them

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
    assert v.page.get_by_role("combobox", name="Model").count() == 1
    assert v.page.get_by_role("combobox", name="Layer").count() == 0  # hidden
    heatmap = v.page.get_by_role("img", name=re.compile(r"^Heatmap of all 6 × 6 "
                                                        r"weights of hand-built head"))
    assert heatmap.count() == 1
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
        assert now["controls"] == 4, "set up twice"  # model, sentence, layer, head
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


def test_other_pages_do_not_download_the_widget(server, visit, data):
    """explorer.js, on every page, fetches the widget and its data only where there
    is one: here after an instant navigation from a page without it."""
    v = instant(visit(), server)
    page = v.page
    fetched = []
    page.on("request", lambda r: fetched.append(r.url.rsplit("/", 1)[-1]))
    page.goto(server + "/scaling/", wait_until="load")  # a page with no widget
    page.wait_for_timeout(300)
    assert "explorer.js" in fetched
    assert "explorer-widget.js" not in fetched and "attention.json" not in fetched
    nav = page.locator("nav.md-nav--primary")
    explorer = nav.get_by_role("link", name="Attention explorer", exact=True).first
    follow(page, explorer.click, server + "/explorer/")
    expect_row(state(page), data, "cat-sat", "hand-built head", 2)
    assert fetched.count("explorer-widget.js") == 1
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


# SmolLM2: its files, fetched when picked.


@pytest.fixture(scope="module")
def files(site):
    """SmolLM2's file of each sentence, as the built site serves it."""
    return {path.stem: json.loads(path.read_text())
            for path in (site / "assets" / "explorer" / "smollm2").glob("*.json")}


# The heatmap, read back: for every cell, the mean colour of its inside (clear of the
# outlines), and how many of its pixels differ from that mean (the hatching); and the
# two colours the widget mixes, the background (weight 0) and the bars' (weight 1).
HEATMAP = """(root) => {
  const canvas = root.querySelector("canvas");
  const T = root.querySelectorAll(".attention-explorer__token").length;
  const px = canvas.width;
  const image = canvas.getContext("2d").getImageData(0, 0, px, px).data;
  const cells = [];
  for (let i = 0; i < T; i++) {
    const row = [];
    for (let j = 0; j < T; j++) {
      const x0 = Math.round(j * px / T) + 3, x1 = Math.round((j + 1) * px / T) - 3;
      const y0 = Math.round(i * px / T) + 3, y1 = Math.round((i + 1) * px / T) - 3;
      const sum = [0, 0, 0], seen = new Set();
      let n = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
        const k = 4 * (y * px + x);
        for (let c = 0; c < 3; c++) sum[c] += image[k + c];
        seen.add(image[k] + "," + image[k + 1] + "," + image[k + 2]);
        n++;
      }
      row.push({mean: sum.map((v) => v / n), colours: seen.size});
    }
    cells.push(row);
  }
  const style = (e) => getComputedStyle(e).backgroundColor;
  return {cells, background: style(root),
          bar: style(root.querySelector(".attention-explorer__bar"))};
}"""


def expect_heatmap(page, rows, causal):
    """The heatmap draws ``rows``: each cell's colour, mixed from the background to
    the bars' colour by its weight, gives the weight back to within 0.01 (8-bit
    colour); the masked cells above the diagonal are hatched, the others plain."""
    page.wait_for_selector(".attention-explorer canvas[data-drawn]")
    drawn = page.locator(".attention-explorer").first.evaluate(HEATMAP)
    zero, one = rgb(drawn["background"]), rgb(drawn["bar"])
    c = max(range(3), key=lambda k: abs(one[k] - zero[k]))  # the most telling channel
    T = len(rows)
    assert len(drawn["cells"]) == T
    for i in range(T):
        for j in range(T):
            cell = drawn["cells"][i][j]
            if causal and j > i:
                assert cell["colours"] > 1, f"cell ({i}, {j}) above the diagonal is hatched"
                continue
            assert cell["colours"] == 1, (i, j)
            weight = (cell["mean"][c] - zero[c]) / (one[c] - zero[c])
            assert weight == pytest.approx(rows[i][j], abs=0.01), (i, j)


def pick(page, label, option):
    page.get_by_label(label, exact=True).select_option(label=option)
    page.wait_for_selector(SHOWN)


def test_picking_smollm2_fetches_its_file_then_and_only_then(server, visit, data):
    v = visit()
    fetched = []
    v.page.on("request", lambda r: fetched.append(r.url) if "/smollm2/" in r.url else 0)
    v.page.goto(server + "/explorer/", wait_until="load")
    expect_row(state(v.page), data, "cat-sat", "hand-built head", 2)
    v.page.wait_for_timeout(300)
    assert fetched == [], "the first load fetches none of SmolLM2's files"
    pick(v.page, "Model", data["smollm2"]["name"] + " (trained)")
    assert fetched == [server + "/assets/explorer/" + SMOLLM2_FILE.format("cat-sat")]
    pick(v.page, "Sentence", data["smollm2"]["sentences"][2]["title"])
    pick(v.page, "Sentence", data["smollm2"]["sentences"][0]["title"])  # cached now
    assert len(fetched) == 2 and fetched[1].endswith("/repeated.json")
    clean(v)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_smollm2_layer_and_head_show_the_files_weights(scheme, server, visit, data,
                                                       files):
    """Menus, bars, numbers and heatmap for heads picked across the model, on the
    sentence and on the repeated sequence; the small heads again after it."""
    v = visit(scheme)
    page = v.page
    page.goto(server + "/explorer/", wait_until="load")
    page.mouse.move(0, 0)
    state(page)
    pick(page, "Model", data["smollm2"]["name"] + " (trained)")
    cat = files["cat-sat"]
    shown = state(page)
    assert shown["layer"] == "layer 0" and shown["head"] == "head 0"
    options = page.get_by_label("Layer", exact=True).locator("option")
    assert options.all_text_contents() == [f"layer {n}" for n in range(cat["layers"])]
    options = page.get_by_label("Head", exact=True).locator("option")
    assert options.all_text_contents() == [f"head {n}" for n in range(cat["heads"])]
    sat = cat["tokens"].index("\u2423sat")
    assert sat == 2  # the token selected before is still selected
    expect_values(shown, cat["tokens"], heads(cat)[0, 0], "head 0", sat)
    for layer, head in [(11, 1), (29, 8), (0, 5)]:
        pick(page, "Layer", f"layer {layer}")
        pick(page, "Head", f"head {head}")
        rows = heads(cat)[layer, head]
        shown = state(page)
        assert shown["layer"] == f"layer {layer}"
        expect_values(shown, cat["tokens"], rows, f"head {head}", sat)
        expect_heatmap(page, rows, causal=True)
        page.locator(".attention-explorer__token").nth(6).hover()
        expect_values(state(page), cat["tokens"], rows, f"head {head}", 6)
        page.locator(".attention-explorer__token").nth(sat).hover()
        page.mouse.move(0, 0)  # off the tokens, which the next sentence moves
        note = page.locator(".attention-explorer__note").text_content()
        group = cat["heads"] // cat["kv_heads"]
        assert f"Layer {layer}, head {head} of" in note
        assert f"share key/value head {head // group}" in note
    repeated = files["repeated"]
    pick(page, "Sentence", data["smollm2"]["sentences"][2]["title"])
    pick(page, "Layer", "layer 18")
    pick(page, "Head", "head 6")
    rows = heads(repeated)[18, 6]
    expect_values(state(page), repeated["tokens"], rows, "head 6", sat)
    expect_heatmap(page, rows, causal=True)
    pick(page, "Model", "Hand-built and untrained heads")  # and back
    expect_row(state(page), data, "cat-sat", "hand-built head", sat)
    expect_heatmap(page, data["sentences"][0]["heads"][0]["weights"], causal=False)
    if TAKE_SCREENSHOTS:
        SCREENSHOTS.mkdir(exist_ok=True)
        page.locator(".attention-explorer").first.screenshot(
            path=str(SCREENSHOTS / f"explorer-smollm2-{scheme}.png"))
    clean(v)


def test_the_heatmap_follows_a_change_of_scheme(server, visit, data):
    """The palette that follows the system switches to dark while the page is open:
    the heatmap is drawn again in the dark scheme's colours."""
    v = visit()
    page = v.page
    page.goto(server + "/explorer/", wait_until="load")
    state(page)
    rows = data["sentences"][0]["heads"][0]["weights"]
    expect_heatmap(page, rows, causal=False)
    before = page.locator(".attention-explorer").first.evaluate(HEATMAP)["background"]
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("document.body.getAttribute('data-md-color-scheme') "
                           "=== 'slate'")
    after = page.locator(".attention-explorer").first.evaluate(HEATMAP)
    assert after["background"] != before
    expect_heatmap(page, rows, causal=False)
    clean(v)


def test_pointing_at_a_cell_reads_its_weight(server, visit, data, files):
    v = visit()
    page = v.page
    page.goto(server + "/explorer/", wait_until="load")
    state(page)
    pick(page, "Model", data["smollm2"]["name"] + " (trained)")
    pick(page, "Layer", "layer 11")
    pick(page, "Head", "head 1")
    cat = files["cat-sat"]
    rows, tokens = heads(cat)[11, 1], cat["tokens"]
    canvas = page.locator(".attention-explorer canvas").first
    canvas.scroll_into_view_if_needed()  # the mouse reaches only what is in view
    box = canvas.bounding_box()
    T = len(tokens)

    def point(i, j):
        page.mouse.move(box["x"] + (j + 0.5) * box["width"] / T,
                        box["y"] + (i + 0.5) * box["height"] / T)
        return state(page)

    shown = point(2, 1)
    expect_values(shown, tokens, rows, "head 1", 2)
    assert shown["readout"] == f"\u201c{tokens[2]}\u201d \u2192 \u201c{tokens[1]}\u201d: " \
                               f"{rows[2][1]:.4f}"
    shown = point(4, 6)  # above the diagonal: masked
    expect_values(shown, tokens, rows, "head 1", 4)
    assert shown["readout"] == (f"\u201c{tokens[4]}\u201d cannot see \u201c{tokens[6]}"
                                "\u201d: it comes later (masked).")
    page.mouse.move(0, 0)
    assert state(page)["readout"] == "Point at a cell to read its weight."
    clean(v)


def test_it_fits_a_phone(server, browser, data):
    """At a phone's width (390 CSS pixels), nothing in the widget is wider than
    the page, and the heatmap is there, square, below the bars."""
    context = browser.new_context(viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        page.goto(server + "/explorer/", wait_until="load")
        page.wait_for_selector(SHOWN)
        pick(page, "Model", data["smollm2"]["name"] + " (trained)")
        pick(page, "Sentence", data["smollm2"]["sentences"][2]["title"])
        sizes = page.locator(".attention-explorer").first.evaluate("""(root) => {
          const box = (sel) => root.querySelector(sel).getBoundingClientRect();
          return {page: document.documentElement.clientWidth,
                  wide: [...root.querySelectorAll("*")].filter((e) =>
                    e.getBoundingClientRect().right > document.documentElement.clientWidth)
                    .map((e) => e.className || e.tagName),
                  canvas: box("canvas"), table: box("table"),
                  inside: root.querySelector("canvas").clientWidth,
                  bitmap: root.querySelector("canvas").width};
        }""")
        assert sizes["wide"] == [], sizes["wide"]
        canvas = sizes["canvas"]
        assert canvas["width"] == pytest.approx(canvas["height"], abs=1)
        assert canvas["width"] >= 200 and canvas["top"] >= sizes["table"]["bottom"]
        assert sizes["bitmap"] == round(2 * sizes["inside"])  # sharp on a 2x screen
        page.locator(".attention-explorer__token").nth(3).tap()
        assert page.locator(".attention-explorer").first.get_attribute(
            "data-token-index") == "3"
    finally:
        context.close()


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

<div class="attention-explorer" data-src="../../../assets/explorer/attention.json"
     data-sentence="repeated" data-model="smollm2" data-layer="18" data-head="head 6"
     data-token="You"></div>

[Home](../../index.md)
"""


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, site):
    """A scratch copy of the project with two pages that embed the explorer.

    It is also a warm build that cannot read the model: its cache holds the data of
    the site's build (the ``site`` fixture fills it), and its model file has the
    right folder, name and size (so the same cache key) but only zeros inside. Had
    the build read the model, it would have failed."""
    import shutil

    from figures.explorer import CACHE, cache_key, code_files
    from snippets.smollm2 import gguf_path
    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("embedded")
    ignore = shutil.ignore_patterns("__pycache__", "*.md", "notebooks")
    for name in ("hooks", "docs"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    # Only the modules the explorer's data needs: the build runs every generator.
    (root / "snippets").mkdir()
    shutil.copy(ROOT / "snippets" / "__init__.py", root / "snippets")
    for path in code_files():
        shutil.copy(path, root / "snippets")
    (root / "figures").mkdir()
    for module in ("__init__", "svg", "explorer"):
        shutil.copy(ROOT / "figures" / f"{module}.py", root / "figures")
    real = gguf_path()
    fake = root / ".cache" / "models" / real.parent.name / real.name
    fake.parent.mkdir(parents=True)
    with fake.open("wb") as f:
        f.truncate(real.stat().st_size)  # zeros, as many as the model's bytes
    key = cache_key()
    (root / ".cache" / "explorer").mkdir()
    shutil.copy(CACHE / f"smollm2-{key}.json", root / ".cache" / "explorer")
    config = (ROOT / "mkdocs.yml").read_text()
    config = re.sub(r"(?ms)^nav:\n.*?(?=^\S)", "", config)
    (root / "mkdocs.yml").write_text(config)
    (root / "docs" / "index.md").write_text(HOME)
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "docs" / "deep" / "er" / "page.md").write_text(DEEP)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SMOLLM2_GGUF", raising=False)  # the fake file, nothing else
        build = mkdocs_build(root / "site", root / "mkdocs.yml")
    assert build.returncode == 0, build.log
    # the same key there, and no other file: the build read the cache, nothing else
    assert [p.name for p in (root / ".cache" / "explorer").glob("*.json")] == [
        f"smollm2-{key}.json"]
    with serve_directory(root / "site") as url:
        yield url


def test_embedded_on_a_nested_page_and_the_home_page(embedded, visit, data, files):
    v = instant(visit(), embedded)
    page = v.page
    page.goto(embedded + "/deep/er/page/", wait_until="load")
    page.wait_for_selector(READY + " >> nth=2")
    expect_row(state(page, 0), data, "cat-sat", "hand-built head", 0)
    mat = data["sentences"][0]["tokens"].index("mat")
    second = state(page, 1)
    expect_row(second, data, "cat-sat", "hand-built head", mat)
    assert second["sentence"] is None and second["controls"] == 3  # fixed sentence
    third = state(page, 2)  # opens on SmolLM2, layer 18, head 6, the token "You"
    repeated = files["repeated"]
    you = repeated["tokens"].index("You")
    expect_values(third, repeated["tokens"], heads(repeated)[18, 6], "head 6", you)
    assert third["layer"] == "layer 18" and third["sentence"] is None
    assert third["controls"] == 2  # layer and head: only SmolLM2 has this sentence
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
