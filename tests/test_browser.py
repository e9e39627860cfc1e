"""The built site in a real browser: Playwright driving the system's Chromium.

The site is served by the test itself on 127.0.0.1, every request to any other host
is blocked and reported, and each page is checked in light and dark mode. A
screenshot of every page in both schemes goes to ``screenshots/`` (git-ignored).
Without a browser these tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, require

pytestmark = pytest.mark.browser

SCREENSHOTS = ROOT / "screenshots"
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


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


@contextlib.contextmanager
def serve_directory(directory: Path):
    """Serve a folder on 127.0.0.1 (a free port) for as long as the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server(site):
    with serve_directory(site) as url:
        yield url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    executable = find_browser()
    require(
        executable is not None and Path(executable).exists(),
        "Chromium",
        "install it with `apt-get install chromium` (or set CHROMIUM_PATH)",
    )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield b
        b.close()


class Visit:
    """A browser page that records console errors and blocks off-site requests."""

    def __init__(self, browser, scheme="light"):
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 900},
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
  const article = document.querySelector("article.md-content__inner");
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
    math: article.querySelectorAll("math").length,
    pre: article.querySelectorAll("pre > code").length,
    copy: article.querySelectorAll("pre button.md-clipboard, button.md-code__button[data-md-type='copy']").length,
    imgs,
  };
}"""


CODE_COLOURS = """() => {
  const rgb = (s) => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = c.map((x) => { x /= 255;
      return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const seen = new Map();
  for (const span of document.querySelectorAll("article pre code span[class]")) {
    if (!span.textContent.trim()) continue;
    const fg = getComputedStyle(span).color;
    const bg = getComputedStyle(span.closest("code")).backgroundColor;
    const key = fg + "|" + bg;
    if (seen.has(key)) continue;
    const [a, b] = [lum(rgb(fg)), lum(rgb(bg))].sort((x, y) => y - x);
    seen.set(key, { cls: span.className, fg, bg, ratio: (a + 0.05) / (b + 0.05) });
  }
  return [...seen.values()];
}"""


def code_contrast_problems(page) -> list[str]:
    """WCAG AA (4.5:1) for every distinct colour of highlighted code on the page."""
    return [
        f"code .{c['cls']} {c['fg']} on {c['bg']}: contrast {c['ratio']:.2f} < 4.5"
        for c in page.evaluate(CODE_COLOURS)
        if c["ratio"] < 4.5
    ]


def page_paths() -> list[str]:
    """The URL path of every page, from docs/ (known before the site is built)."""
    paths = []
    for src in sorted((ROOT / "docs").rglob("*.md")) + sorted(
        (ROOT / "docs" / "notebooks").glob("*.py")
    ):
        rel = src.relative_to(ROOT / "docs").with_suffix("").as_posix()
        paths.append("/" if rel == "index" else f"/{rel.removesuffix('/index')}/")
    return paths


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("path", page_paths())
def test_page_renders_cleanly_offline_and_accessibly(path, scheme, site, server, visit):
    """No console error, no request off 127.0.0.1, math rendered (no raw TeX), every
    figure loaded with a size and an alt text, a copy button on code, and no serious
    or critical axe-core violation. Saves a full-page screenshot."""
    from axe_playwright_python.sync_playwright import Axe

    assert (site / path.strip("/") / "index.html").exists(), f"{path} was not built"
    v = visit(scheme)
    v.page.goto(server + path, wait_until="load")
    v.page.evaluate("document.fonts.ready")
    info = v.page.evaluate(CHECK_PAGE)
    SCREENSHOTS.mkdir(exist_ok=True)
    name = path.strip("/").replace("/", "-") or "index"
    v.page.screenshot(path=str(SCREENSHOTS / f"{name}-{scheme}.jpg"), full_page=True,
                      type="jpeg", quality=60, scale="css", animations="disabled")
    problems = list(v.errors) + [f"request to {u}" for u in v.offsite]
    if info["arithmatex"] or any(t in info["text"] for t in ("$$", "\\frac", "\\(")):
        problems.append("raw TeX is visible")
    for img in info["imgs"]:
        if not img["ok"] or img["w"] <= 0:
            problems.append(f"figure {img['src']} did not load")
        if not img["alt"].strip():
            problems.append(f"figure {img['src']} has no alt text")
    if info["pre"] and info["copy"] == 0:
        problems.append("code blocks but no copy button")
    problems += code_contrast_problems(v.page)
    if scheme == "dark":
        problems += dark_figure_problems(v.page)
    # Code blocks are left to code_contrast_problems: axe checks every highlighted
    # span one by one, which takes seconds a page and finds nothing more.
    for violation in Axe().run(v.page, context={"exclude": [["pre"]]}).response["violations"]:
        if violation["impact"] in ("serious", "critical"):
            targets = [n["target"] for n in violation["nodes"][:3]]
            problems.append(f"axe {violation['id']}: {violation['help']} at {targets}")
    assert not problems, f"{path} ({scheme}):\n" + "\n".join(problems)


def test_math_is_mathml_with_the_bundled_font(site, server, visit):
    v = visit()
    v.page.goto(server + "/attention/", wait_until="load")
    family = v.page.evaluate(
        "() => getComputedStyle(document.querySelector('article math')).fontFamily"
    )
    assert "STIX Two Math" in family
    loaded = v.page.evaluate(
        "async () => { await document.fonts.ready;"
        " return document.fonts.check('16px \"STIX Two Math\"'); }"
    )
    assert loaded


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


def test_the_check_catches_an_offsite_request(server, visit):
    """The blocking route is not a rubber stamp: a page that asks another host is seen."""
    v = visit()
    v.page.goto(server + "/", wait_until="load")
    v.page.evaluate("() => { const s = document.createElement('script');"
                    " s.src = 'https://cdn.example.invalid/x.js'; document.head.append(s); }")
    v.page.wait_for_timeout(200)
    assert v.offsite == ["https://cdn.example.invalid/x.js"]
