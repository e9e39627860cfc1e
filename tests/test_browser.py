"""The built site in a real browser: Playwright driving the system's Chromium.

The site is served by the test itself on 127.0.0.1, gzipped as GitHub Pages serves
it (``tests/siteserver.py``); every request to any other host is blocked and
reported, and each page is checked in light and dark mode. One browser serves every
browser test of a worker, and the pages are checked several at a time: each step is
started in every open page before the first one is waited for.

axe-core runs in full once per page (light). In dark mode only its colour rules run
(colour contrast, links told apart from text): the palette switch changes the
colours and nothing else, neither the DOM nor what assistive technology is told,
which ``test_dark_mode_changes_only_colours`` checks. The checks whose outcome
differs per scheme run in both: the contrast of highlighted code, and figures
keeping their contrast in dark mode.

Screenshots of every page in both schemes go to ``screenshots/`` (git-ignored) when
``SCREENSHOTS=1`` is set. Without a browser these tests skip locally and fail under
CI=true.
"""

from __future__ import annotations

import difflib
import functools
import io
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest

from hooks import mathfont
from tests import page as page_check
from tests.conftest import ROOT, require
from tests.siteserver import serve_directory

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "screenshots"
TAKE_SCREENSHOTS = os.environ.get("SCREENSHOTS", "") not in ("", "0")
SCHEMES = ("light", "dark")
OPEN_AT_ONCE = 6  # pages loading and being checked at the same time
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# axe-core's rules whose outcome depends on colours: the rest read the DOM alone.
AXE_COLOUR_RULES = ["color-contrast", "link-in-text-block"]


def find_browser() -> str | None:
    """$CHROMIUM_PATH, else the usual names on PATH."""
    if os.environ.get("CHROMIUM_PATH"):
        return os.environ["CHROMIUM_PATH"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def site_pages(site: Path) -> list[str]:
    """URL paths of every page of the built site."""
    pages = []
    for index in sorted(site.rglob("index.html")):
        rel = index.parent.relative_to(site).as_posix()
        if rel.startswith(("assets", "search")):
            continue
        pages.append("/" if rel == "." else f"/{rel}/")
    return pages


def page_paths() -> list[str]:
    """The URL path of every page, from docs/ (known before the site is built); only
    the page that `make page` checks when it builds that page alone."""
    if os.environ.get(page_check.ENV):
        one = page_check.check_page(os.environ[page_check.ENV])
        return ["/" if one == "index" else f"/{one}/"]
    paths = []
    for src in sorted((ROOT / "docs").rglob("*.md")) + sorted(
        (ROOT / "docs" / "notebooks").glob("*.py")
    ):
        rel = src.relative_to(ROOT / "docs").with_suffix("").as_posix()
        paths.append("/" if rel == "index" else f"/{rel.removesuffix('/index')}/")
    return paths


# test_explorer_browser.py imports these fixtures, and pytest makes a fixture of each
# module that holds one: _SHARED lets the second find what the first started, so a
# worker runs one server and one browser.
_SHARED: dict = {}


@pytest.fixture(scope="session")
def server(site):
    if "server" in _SHARED:
        yield _SHARED["server"]
        return
    with serve_directory(site) as url:
        _SHARED["server"] = url
        yield url
        del _SHARED["server"]


@pytest.fixture(scope="session")
def browser():
    """One Chromium for every browser test of this worker."""
    if "browser" in _SHARED:
        yield _SHARED["browser"]
        return
    executable = find_browser()
    require(
        executable is not None and Path(executable).exists(),
        "Chromium",
        "install it with `apt-get install chromium` (or set CHROMIUM_PATH)",
    )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        _SHARED["browser"] = b
        yield b
        del _SHARED["browser"]
        b.close()


PHONE = {"width": 412, "height": 823}  # Lighthouse's mobile preset (a Moto G Power)


class Visit:
    """A browser page that records console errors and blocks off-site requests."""

    def __init__(self, browser, scheme="light", phone=False):
        self.scheme = scheme
        self.context = browser.new_context(
            viewport=PHONE if phone else {"width": 1280, "height": 900},
            color_scheme="dark" if scheme == "dark" else "light",
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.offsite: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        self.context.route("**/*", self._route)

    def _console(self, message):
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    def _route(self, route):
        host = urlsplit(route.request.url).hostname
        if host in ("127.0.0.1", None) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def close(self):
        self.context.close()


@pytest.fixture
def visit(browser):
    visits = []

    def make(scheme="light"):
        v = Visit(browser, scheme)
        visits.append(v)
        return v

    yield make
    for v in visits:
        v.close()


CHECK_PAGE = """() => {
  const article = document.querySelector("article.md-content__inner, article");
  const clone = article.cloneNode(true);
  clone.querySelectorAll("pre, code, math, script, style").forEach((e) => e.remove());
  const text = clone.innerText;
  const imgs = [...article.querySelectorAll("img")].map((img) => ({
    src: img.getAttribute("src"), alt: img.getAttribute("alt") || "",
    ok: img.complete && img.naturalWidth > 0, w: img.getBoundingClientRect().width,
  }));
  return {
    text,
    arithmatex: article.querySelectorAll(".arithmatex").length,
    imgs,
  };
}"""

TRANSITIONS_DONE = """() => Promise.race([
  Promise.allSettled(document.getAnimations().map((a) => a.finished)),
  new Promise((done) => setTimeout(done, 2000)),
])"""

# Figures that load when scrolled to (the notebooks' plots): load them all now.
LOAD_LAZY_IMAGES = """async () => {
  const lazy = [...document.querySelectorAll("article img[loading=lazy]")];
  lazy.forEach((img) => { img.loading = "eager"; });
  await Promise.all(lazy.map((img) => img.complete ? null
    : new Promise((done) => { img.onload = img.onerror = done; })));
}"""

# Material sets a code block up (its copy button...) when it comes into view: scroll
# to every code block a reader can see, in turn, and list those left without one.
COPY_BUTTONS = """async () => {
  const frame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  const blocks = [...document.querySelectorAll("article pre")]
    .filter((pre) => pre.querySelector("code") && pre.checkVisibility());
  for (const pre of blocks) {
    pre.scrollIntoView({block: "center"});
    await frame(); await frame();
  }
  await frame();
  window.scrollTo(0, 0);
  const copy = "button.md-clipboard, button.md-code__button[data-md-type='copy']";
  return {
    blocks: blocks.length,
    missing: blocks.filter((pre) => !pre.querySelector(copy))
      .map((pre) => (pre.closest(".highlight")?.querySelector(".filename")?.textContent
                     || pre.textContent.trim().split("\\n")[0]).slice(0, 60)),
  };
}"""


# The colour of a highlighted token comes from its class, its block's language class
# and the scheme. Each distinct (language, class) on the page is drawn once in a
# fresh block at the top of the article and measured there: what getComputedStyle
# says of blocks off screen or in closed <details> (not drawn, content-visibility)
# can be stale, and styling all of them would take seconds a page.
CODE_COLOURS = """() => {
  const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = c.map((x) => { x /= 255;
      return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const kinds = new Map();
  // Code in closed <details> waits in a <template> until opened (hooks/lightload.py).
  // Notebook code cells are <pre> without <code>, in nbconvert's own wrapper.
  const BLOCK = "div.highlight, div.highlight-ipynb";
  const folded = [...document.querySelectorAll("article pre code template")]
    .flatMap((t) => [...t.content.querySelectorAll("span[class]")]
      .map((span) => [span, t.closest(BLOCK)]));
  const shown = [...document.querySelectorAll("article pre span[class]")]
    .map((span) => [span, span.closest(BLOCK)]);
  for (const [span, block] of [...shown, ...folded]) {
    if (!span.textContent.trim()) continue;
    const key = (block ? block.className : "") + "|" + span.className;
    if (!kinds.has(key)) kinds.set(key, [block, span.className]);
  }
  const article = document.querySelector("article");
  const out = [];
  for (const [real, cls] of kinds.values()) {
    const block = document.createElement("div");
    block.className = real ? real.className : "";
    block.innerHTML = '<pre><code><span></span></code></pre>';
    block.querySelector("span").className = cls;
    block.querySelector("span").textContent = "token";
    // beside the real block, so that the styles of its ancestors apply
    if (real) real.before(block); else article.prepend(block);
    const code = block.querySelector("code");
    const fg = getComputedStyle(block.querySelector("span")).color;
    const bg = getComputedStyle(code).backgroundColor;
    block.remove();
    const [a, b] = [lum(rgb(fg)), lum(rgb(bg))].sort((x, y) => y - x);
    out.push({ cls, fg, bg, ratio: (a + 0.05) / (b + 0.05) });
  }
  return out;
}"""


def code_contrast_problems(page) -> list[str]:
    """WCAG AA (4.5:1) for every distinct colour of highlighted code on the page."""
    return [
        f"code .{c['cls']} {c['fg']} on {c['bg']}: contrast {c['ratio']:.2f} < 4.5"
        for c in page.evaluate(CODE_COLOURS)
        if c["ratio"] < 4.5
    ]


def _luminance_spread(png: bytes) -> tuple[float, float]:
    from PIL import Image, ImageStat

    image = Image.open(io.BytesIO(png)).convert("L")
    stat = ImageStat.Stat(image)
    return stat.mean[0], stat.stddev[0]


def dark_figure_problems(page) -> list[str]:
    """Figures must keep their contrast on a dark page (no black-on-black)."""
    problems = []
    images = page.locator("article img")
    for i in range(images.count()):
        img = images.nth(i)
        img.scroll_into_view_if_needed()
        mean, spread = _luminance_spread(img.screenshot())
        # A legible figure has contrast inside it; black-on-black has none.
        if spread < 20:
            problems.append(f"figure {img.get_attribute('src')} has no contrast in dark "
                            f"mode (mean {mean:.0f}, spread {spread:.0f})")
    return problems


def start(page, name: str, function: str, arg=None) -> None:
    """Start the async JavaScript ``function`` in ``page`` and return at once: the
    browser goes on with it while other pages are looked at. ``result`` waits."""
    page.evaluate(f"(arg) => {{ window.__check_{name} = ({function})(arg); }}", arg)


def result(page, name: str):
    """What ``start(page, name, ...)`` came to, once it has."""
    return page.evaluate(f"() => window.__check_{name}")


def start_axe(page, rules: list[str] | None = None) -> None:
    """Start axe-core in ``page`` without waiting for it (``axe_problems`` collects).
    Code blocks are left to code_contrast_problems: axe checks every highlighted
    span one by one, which takes seconds a page and finds nothing more."""
    from axe_playwright_python.base import AXE_SCRIPT

    options = {"resultTypes": ["violations"]}
    if rules is not None:
        options["runOnly"] = {"type": "rule", "values": rules}
    page.evaluate(AXE_SCRIPT)
    start(page, "axe", "(options) => axe.run({exclude: [['pre']]}, options)"
                       ".then((r) => r.violations)", options)


def axe_problems(page) -> list[str]:
    """The serious and critical violations axe found (see ``start_axe``)."""
    return [
        f"axe {v['id']}: {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in result(page, "axe")
        if v["impact"] in ("serious", "critical")
    ]


def check_pages(browser, jobs: list[tuple[str, str]]) -> dict[tuple[str, str], list]:
    """Load each ``(url, scheme)`` and list what is wrong with it: console errors,
    requests off 127.0.0.1, raw TeX, figures that did not load or have no alt text,
    code blocks a reader can see that get no copy button, highlighted code under
    WCAG AA contrast, figures without contrast in dark mode and axe-core's serious
    and critical violations. ``OPEN_AT_ONCE`` pages are open at a time; each step is
    started in all of them before any is waited for."""
    reports = {}
    for first in range(0, len(jobs), OPEN_AT_ONCE):
        batch = jobs[first:first + OPEN_AT_ONCE]
        # Light mode on a phone's width, dark mode on a desktop's: a layout fault of
        # either width that puts text on the wrong background shows in axe's
        # colour rules (in light mode, the one where code's background is pale).
        visits = [Visit(browser, scheme, phone=scheme == "light") for _, scheme in batch]
        try:
            for v, (url, _) in zip(visits, batch):
                v.page.goto(url, wait_until="commit")
            for v in visits:
                v.page.wait_for_load_state("load")
                v.page.evaluate("document.fonts.ready.then(() => null)")
                if v.scheme == "light":  # copy buttons do not depend on colours
                    start(v.page, "copy", COPY_BUTTONS)
            for v, (url, _) in zip(visits, batch):
                v.problems = []
                if v.scheme == "light":
                    copy = result(v.page, "copy")
                    v.problems += [f"code block without a copy button: {m!r}"
                                   for m in copy["missing"]]
                v.page.evaluate(LOAD_LAZY_IMAGES)
                info = v.page.evaluate(CHECK_PAGE)
                if info["arithmatex"] or any(t in info["text"]
                                             for t in ("$$", "\\frac", "\\(")):
                    v.problems.append("raw TeX is visible")
                for img in info["imgs"]:
                    if not img["ok"] or img["w"] <= 0:
                        v.problems.append(f"figure {img['src']} did not load")
                    if not img["alt"].strip():
                        v.problems.append(f"figure {img['src']} has no alt text")
                v.problems += code_contrast_problems(v.page)
                if v.scheme == "dark":
                    v.problems += dark_figure_problems(v.page)
                # axe reads colours once transitions have settled. Material fades link
                # and inline-code colours (125 ms), and this site removed the rule that
                # stopped that while the scheme switches (hooks/lightload.py); one
                # dark-mode run flagged a summary whose contrast four reruns found fine.
                v.page.evaluate(TRANSITIONS_DONE)
                start_axe(v.page, None if v.scheme == "light" else AXE_COLOUR_RULES)
            for v, (url, scheme) in zip(visits, batch):
                v.problems += axe_problems(v.page)
                if TAKE_SCREENSHOTS:
                    SCREENSHOTS.mkdir(exist_ok=True)
                    name = urlsplit(url).path.strip("/").replace("/", "-") or "index"
                    v.page.screenshot(
                        path=str(SCREENSHOTS / f"{name}-{scheme}.jpg"), full_page=True,
                        type="jpeg", quality=60, scale="css", animations="disabled")
                v.problems += v.errors + [f"request to {u}" for u in v.offsite]
                reports[(url, scheme)] = v.problems
        finally:
            for v in visits:
                v.close()
    return reports


@pytest.fixture(scope="session")
def page_reports(site, server, browser):
    """Every page in both schemes, checked once for the whole run (see check_pages)."""
    jobs = [(server + path, scheme) for path in page_paths() for scheme in SCHEMES]
    return {(urlsplit(url).path, scheme): problems
            for (url, scheme), problems in check_pages(browser, jobs).items()}


@pytest.mark.xdist_group("browser-pages")
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("path", page_paths())
def test_page_renders_cleanly_offline_and_accessibly(path, scheme, site, page_reports):
    """No console error, no request off 127.0.0.1, math rendered (no raw TeX), every
    figure loaded with a size and an alt text, a copy button on every code block a
    reader can see, highlighted code at WCAG AA contrast, figures legible in dark
    mode, and no serious or critical axe-core violation."""
    assert (site / path.strip("/") / "index.html").exists(), f"{path} was not built"
    problems = page_reports[(path, scheme)]
    assert not problems, f"{path} ({scheme}):\n" + "\n".join(problems)


PLANTED = """<!doctype html><html lang="en"><head><title>planted</title>
<style>pre code { background: #fff } .low { color: #999; background: #aaa } .tok { color: #ccc }
img { display: block } @media (prefers-color-scheme: dark) { body { background: #000 } }
</style>
</head><body><main><article>
<h1>Planted faults</h1>
<p>Raw TeX: $$\\frac{a}{b}$$</p>
<p class="low">Text too light to read on white.</p>
<img src="figure.svg"><img src="missing.png" alt="a figure that is not there">
<pre><code><span class="tok">light_token</span> = 1</code></pre>
<script>console.error("planted error");</script>
<script src="https://cdn.example.invalid/x.js"></script>
</article></main></body></html>"""


def test_the_page_check_catches_what_it_looks_for(browser, tmp_path):
    """The control: a page with one of each fault, through the same concurrent check
    as the site's pages, in both schemes."""
    (tmp_path / "index.html").write_text(PLANTED)
    (tmp_path / "figure.svg").write_text(  # black on nothing: black on a dark page
        '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80">'
        '<text x="10" y="50" font-size="40" fill="black">dark</text></svg>')
    with serve_directory(tmp_path) as url:
        reports = check_pages(browser, [(url + "/", "light"), (url + "/", "dark")])
    light, dark = reports[(url + "/", "light")], reports[(url + "/", "dark")]
    expected_light = [
        "raw TeX is visible",
        "figure missing.png did not load",
        "figure figure.svg has no alt text",
        "code block without a copy button",
        "code .tok rgb(204, 204, 204) on rgb(255, 255, 255)",
        "axe color-contrast",
        "axe image-alt",
        "console error: planted error",
        "request to https://cdn.example.invalid/x.js",
    ]
    for fault in expected_light:
        assert any(p.startswith(fault) for p in light), (fault, light)
    # Dark mode: the colour checks, and the figure without contrast on a dark page;
    # the DOM-only axe rules ran once, in light.
    for fault in ["code .tok", "axe color-contrast", "figure figure.svg has no contrast"]:
        assert any(p.startswith(fault) for p in dark), (fault, dark)
    assert not any(p.startswith(("axe image-alt", "code block without")) for p in dark)


SETTLE = "() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 100)))"
SEARCH_READY = """() => !document.querySelector(".md-search-result__meta")
                  .textContent.includes("Initializing")"""


@pytest.mark.parametrize("path", ["/", "/attention/"])
def test_dark_mode_changes_only_colours(path, server, visit):
    """Why axe's DOM rules run in light mode only: what assistive technology is told
    about the page (its accessibility tree) is the same in both schemes."""
    trees = {}
    for scheme in SCHEMES:
        v = visit(scheme)
        v.page.goto(server + path, wait_until="networkidle")
        v.page.wait_for_function(SEARCH_READY)
        v.page.evaluate(SETTLE)  # code blocks in view have been set up
        trees[scheme] = v.page.locator("body").aria_snapshot()
        assert v.page.evaluate("document.body.dataset.mdColorScheme") == (
            "slate" if scheme == "dark" else "default")
    diff = difflib.unified_diff(trees["light"].splitlines(), trees["dark"].splitlines(),
                                "light", "dark", lineterm="")
    assert trees["light"] == trees["dark"], "\n".join(diff)


def test_every_built_page_is_checked(site):
    """The page list the browser tests use (from docs/) is every page that was built."""
    assert sorted(site_pages(site)) == sorted(page_paths())


def test_dark_figure_check_catches_black_on_black(server, visit):
    """The check above is not a rubber stamp: a black drawing on the dark page fails."""
    v = visit("dark")
    v.page.goto(server + "/", wait_until="load")
    v.page.evaluate("""() => {
      const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="80">'
        + '<text x="10" y="50" font-size="40" fill="black">dark</text></svg>';
      const img = document.createElement("img");
      img.src = "data:image/svg+xml," + encodeURIComponent(svg);
      img.alt = "test";
      document.querySelector("article").prepend(img);
      return img.decode();
    }""")
    assert len(dark_figure_problems(v.page)) == 1


def test_palette_toggle_switches_to_dark_and_it_persists(site, server, visit):
    v = visit("light")
    v.page.goto(server + "/", wait_until="load")
    scheme = lambda: v.page.evaluate("document.body.getAttribute('data-md-color-scheme')")  # noqa: E731
    seen = {scheme()}
    for _ in range(3):  # the toggle cycles: system preference -> light -> dark
        v.page.locator("form[data-md-component='palette'] label:visible").first.click()
        seen.add(scheme())
        if scheme() == "slate":
            break
    assert scheme() == "slate", f"the toggle never reached dark mode (saw {seen})"
    background = v.page.evaluate(
        "getComputedStyle(document.body).getPropertyValue('--md-default-bg-color')"
    )
    assert background.strip() not in ("", "#fff", "#ffffff", "white")
    v.page.goto(server + "/diagram/", wait_until="load")
    assert scheme() == "slate", "dark mode did not persist across pages"
    assert not dark_figure_problems(v.page)


OPEN_FOLDED = """async (summary) => {
  const details = document.evaluate(
    `//article//details[summary[contains(., "${summary}")]]`, document, null,
    XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
  const folded = details.querySelectorAll("template").length;
  details.querySelector("summary").click();
  const pre = details.querySelector("pre");
  await new Promise((r) => setTimeout(r, 100));
  pre.scrollIntoView({block: "center"});
  const copy = "button.md-clipboard, button.md-code__button[data-md-type='copy']";
  const until = performance.now() + 5000;  // Material sets blocks up when they show
  while (!pre.querySelector(copy) && performance.now() < until)
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)));
  const code = pre.querySelector("code");
  return {folded, left: details.querySelectorAll("template").length,
          tokens: code.querySelectorAll("span[class]").length,
          text: code.textContent, copy: !!pre.querySelector(copy)};
}"""


@pytest.mark.parametrize("instant", [False, True], ids=["loaded", "after-instant-navigation"])
def test_folded_code_is_there_when_its_details_open(server, visit, site, instant):
    """Code in a closed <details> ships in a <template> (hooks/lightload.py): opening
    it puts back the highlighted code the build wrote, with its copy button, also on a
    page that Material's instant navigation brought in."""
    built = lxml.html.fromstring((site / "attention" / "index.html").read_bytes())
    summary = "All the code on this page"
    details = built.xpath(f'//article//details[summary[contains(., "{summary}")]]')[0]
    expected = details.xpath(".//pre/code")[0].text_content()
    v = visit()
    if instant:
        v.page.goto(server + "/", wait_until="load")
        v.page.locator("nav.md-nav--primary a[href$='attention/']").first.click()
        v.page.wait_for_url("**/attention/")
        v.page.wait_for_function("() => !!document.querySelector('article details')")
    else:
        v.page.goto(server + "/attention/", wait_until="load")
    got = v.page.evaluate(OPEN_FOLDED, summary)
    assert got["folded"] >= 1 and got["left"] == 0, got
    assert got["tokens"] > 100 and got["copy"], {k: got[k] for k in ("tokens", "copy")}
    assert got["text"] == expected
    assert not v.errors


def test_printing_unfolds_all_code(server, visit):
    v = visit()
    v.page.goto(server + "/attention/", wait_until="load")
    assert v.page.evaluate("document.querySelectorAll('template[data-md-lazy]').length")
    v.page.evaluate("dispatchEvent(new Event('beforeprint'))")
    assert v.page.evaluate("document.querySelectorAll('template[data-md-lazy]').length") == 0


def test_the_check_catches_an_offsite_request(server, visit):
    """The blocking route is not a rubber stamp: a page that asks another host is seen."""
    v = visit()
    v.page.goto(server + "/", wait_until="load")
    v.page.evaluate("() => { const s = document.createElement('script');"
                    " s.src = 'https://cdn.example.invalid/x.js'; document.head.append(s); }")
    v.page.wait_for_timeout(200)
    assert v.offsite == ["https://cdn.example.invalid/x.js"]


# The math font: every formula is drawn with glyphs of the subset the build ships.

MATH_TEXT = """(italic) => {
  const chars = new Set();
  for (const math of document.querySelectorAll("math")) {
    const walker = document.createTreeWalker(math, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) for (const c of walker.currentNode.data) chars.add(c);
    for (const mi of math.querySelectorAll("mi:not([mathvariant])")) {
      const t = mi.textContent.trim();
      if ([...t].length === 1 && italic[t]) chars.add(italic[t]);
    }
    if (math.querySelector("msqrt, mroot")) chars.add("\\u221a");
  }
  return [...chars].filter((c) => !/\\s/.test(c) || c === "\\u00a0");
}"""

# Draw every formula with the subset, then with the full font (served by the test),
# and compare the width of every element of every formula: a glyph the subset lacks
# comes from a fallback font and changes some width. (Heights are left out: the box
# of a Greek italic letter comes out 2 px shorter with the subset, with the same
# glyph outline and metrics in both fonts.)
MATH_BOXES = """async (full) => {
  const face = new FontFace("STIX Two Math Full", `url(${full})`);
  document.fonts.add(await face.load());
  // A font loads when something is first drawn with it: math inside a closed
  // <details> is not, so load the page's own math font for its text first.
  const text = [...document.querySelectorAll("article math")].map((e) => e.textContent);
  await document.fonts.load('16px "STIX Two Math"', text.join("") || "x");
  const style = document.createElement("style");
  document.head.append(style);
  const boxes = () => [...document.querySelectorAll("article math, article math *")]
    .map((e) => Math.round(e.getBoundingClientRect().width * 100));
  await document.fonts.ready;
  const subset = boxes();
  style.textContent = 'math { font-family: "STIX Two Math Full", math !important; }';
  await document.fonts.ready;
  const fullBoxes = boxes();
  const els = [...document.querySelectorAll("article math, article math *")];
  const differ = [];
  els.forEach((e, i) => {
    if (subset[i] !== fullBoxes[i])
      differ.push(e.tagName.toLowerCase() + ": " + e.textContent.slice(0, 30));
  });
  return {elements: els.length, differ: differ.slice(0, 10), count: differ.length};
}"""

FULL_FONT_PATH = "/__full-math-font__.woff2"


def glyph_problems(browser, urls: list[str], subset: bytes | None = None) -> dict:
    """What the math of each page would draw without its own font: its characters
    the served subset lacks (after the same italic mapping the browser applies), and
    elements of its formulas whose size changes when drawn with the full font.
    ``subset`` replaces the served font (for the control). All pages at once."""
    from fontTools.ttLib import TTFont

    full = (ROOT / "docs" / mathfont.SOURCE).read_bytes()
    full_cmap = set(TTFont(io.BytesIO(full)).getBestCmap())
    visits = [Visit(browser) for _ in urls]
    served: dict[str, bytes] = {}  # font URL -> bytes, for every page

    def font(route, v):
        if route.request.url.endswith(FULL_FONT_PATH):
            route.fulfill(body=full, content_type="font/woff2")
        elif subset is not None:
            route.fulfill(body=subset, content_type="font/woff2")
        else:
            response = route.fetch()
            v.font = served[route.request.url] = response.body()
            route.fulfill(response=response)

    problems = {}
    try:
        for v, url in zip(visits, urls):
            v.font = subset
            # one-argument handler: Playwright passes the request as a second one
            v.page.route("**/*.woff2", functools.partial(font, v=v))
            v.page.goto(url, wait_until="commit")
        for v in visits:
            v.page.wait_for_load_state("load")
            v.page.evaluate("document.fonts.ready.then(() => null)")
            v.chars = v.page.evaluate(MATH_TEXT, mathfont.ITALIC)
            start(v.page, "boxes", MATH_BOXES, FULL_FONT_PATH)
        for v, url in zip(visits, urls):
            found = []
            if v.font is None:
                found.append("the page has math but loaded no math font")
            else:
                covered = set(TTFont(io.BytesIO(v.font)).getBestCmap())
                found += [f"U+{ord(c):04X} {c!r} is not in the math font"
                          for c in sorted(v.chars) if ord(c) in full_cmap - covered]
            boxes = result(v.page, "boxes")
            if boxes["count"]:
                found.append(f"{boxes['count']} of {boxes['elements']} formula elements "
                             f"change width with the full font: {boxes['differ']}")
            problems[url] = found + v.errors
    finally:
        for v in visits:
            v.close()
    if subset is None and len(set(served.values())) > 1:
        raise AssertionError(f"pages load different math fonts: {sorted(served)}")
    return problems


def math_pages(site: Path) -> list[str]:
    return [p for p in site_pages(site)
            if "<math" in (site / p.strip("/") / "index.html").read_text()]


@pytest.mark.xdist_group("browser-pages")
def test_every_formula_is_drawn_with_glyphs_of_the_shipped_font(site, server, browser):
    pages = math_pages(site)
    assert "/attention/" in pages
    problems = glyph_problems(browser, [server + p for p in pages])
    assert not any(problems.values()), problems


def test_the_glyph_check_catches_a_missing_glyph(site, server, browser):
    """The control: the same page with a subset that lacks "=" fails both ways."""
    chars = set()
    for page in math_pages(site):
        chars |= mathfont.math_chars((site / page.strip("/") / "index.html").read_text())
    lacking = mathfont.subset_font((ROOT / "docs" / mathfont.SOURCE).read_bytes(),
                                   chars - {"="})
    (problems,) = glyph_problems(browser, [server + "/attention/"], lacking).values()
    assert any(p.startswith("U+003D '='") for p in problems), problems
    assert any("change width with the full font" in p for p in problems), problems


def test_pages_without_math_load_no_math_font(site, server, visit):
    v = visit()
    fonts = []
    v.page.on("request", lambda r: fonts.append(r.url) if ".woff2" in r.url else None)
    v.page.goto(server + "/404.html", wait_until="load")  # every other page has math
    assert "<math" not in (site / "404.html").read_text()
    assert fonts == []
    v.page.goto(server + "/attention/", wait_until="load")
    family = v.page.evaluate(
        "() => getComputedStyle(document.querySelector('article math')).fontFamily")
    assert "STIX Two Math" in family
    assert v.page.evaluate("document.fonts.ready.then(() =>"
                           " document.fonts.check('16px \"STIX Two Math\"'))")
    assert [urlsplit(u).path for u in fonts] == [
        "/" + p.relative_to(site).as_posix()
        for p in (site / "assets" / "fonts").glob("*.woff2")]
