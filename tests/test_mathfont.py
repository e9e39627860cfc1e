"""The build hook that cuts the math font down to the glyphs the formulas use."""

from __future__ import annotations

import io
import re
import unicodedata

import pytest
from fontTools.ttLib import TTFont

from hooks import mathfont
from tests.conftest import ROOT, mkdocs_build

FULL_FONT = ROOT / "docs" / mathfont.SOURCE


@pytest.fixture(scope="module")
def full_font() -> bytes:
    return FULL_FONT.read_bytes()


def cmap(data: bytes) -> dict[int, str]:
    return TTFont(io.BytesIO(data)).getBestCmap()


def test_single_letter_identifiers_are_drawn_in_math_italic():
    page = (
        "<p>x outside math is not counted</p>"
        "<math><mi>x</mi><mo>=</mo><mi>h</mi><mi>δ</mi><mi>max</mi>"
        '<mi mathvariant="normal">d</mi><mn>2</mn></math>'
    )
    chars = mathfont.math_chars(page)
    # math-auto: x -> U+1D465, h -> U+210E (Planck constant), δ -> U+1D6FF
    assert {"\U0001d465", "\u210e", "\U0001d6ff"} <= chars
    # several letters, or mathvariant="normal", stay upright: no italic m, a or d
    assert not {"\U0001d45a", "\U0001d44e", "\U0001d451"} & chars
    assert {"x", "=", "h", "m", "a", "d", "2"} <= chars
    assert "p" not in chars and "o" not in chars  # from "outside", not from math


def test_radicals_entities_and_whitespace():
    chars = mathfont.math_chars("<math>\n<msqrt><mi>k</mi></msqrt><mo>&lt;</mo></math>")
    assert mathfont.RADICAL in chars  # drawn by <msqrt>, not written in the text
    assert "<" in chars
    assert "\n" not in chars


def test_the_italic_table_follows_unicode():
    """Every mapping lands on the mathematical italic form of the same letter."""
    for letter, italic in mathfont.ITALIC.items():
        name = unicodedata.name(italic)
        if letter == "h":
            assert name == "PLANCK CONSTANT"
            continue
        # "GREEK SMALL LETTER ALPHA" -> "MATHEMATICAL ITALIC SMALL ALPHA"
        plain = unicodedata.name(letter)
        for word in ("LATIN ", "GREEK ", "LETTER ", "LUNATE "):
            plain = plain.replace(word, "")
        assert name == f"MATHEMATICAL ITALIC {plain}", (letter, name)


def test_subset_keeps_the_math_table_and_only_the_glyphs_asked_for(full_font):
    chars = set("(x)=\u2211") | {mathfont.ITALIC["x"]}
    data = mathfont.subset_font(full_font, chars)
    font = TTFont(io.BytesIO(data))
    assert font.flavor == "woff2"
    assert "MATH" in font, "the subset lost the OpenType MATH table"
    assert {ord(c) for c in chars} <= set(font.getBestCmap())
    assert ord("y") not in font.getBestCmap()
    assert len(data) < len(full_font) / 20
    # the larger sizes of the parenthesis and of the sum, which MathML stretches to
    variants = font["MATH"].table.MathVariants
    vertical = dict(zip(variants.VertGlyphCoverage.glyphs,
                        variants.VertGlyphConstruction))
    paren = font.getBestCmap()[ord("(")]
    assert vertical[paren].VariantCount > 1
    assert all(v.VariantGlyph in font.getGlyphOrder()
               for v in vertical[paren].MathGlyphVariantRecord)


def test_subset_is_the_same_bytes_for_the_same_input(full_font):
    assert mathfont.subset_font(full_font, set("ab")) == mathfont.subset_font(
        full_font, set("ab"))


def write_site(root, pages: dict[str, str]):
    site, docs = root / "site", root / "docs"
    (docs / "assets" / "fonts").mkdir(parents=True)
    (docs / mathfont.SOURCE).write_bytes(FULL_FONT.read_bytes())
    (site / "assets" / "fonts").mkdir(parents=True)
    (site / mathfont.SOURCE).write_bytes(FULL_FONT.read_bytes())  # as MkDocs copies it
    for path, body in pages.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(f"<html><head><title>t</title></head><body>{body}</body>")
    return site, docs


def test_the_site_gets_a_hashed_subset_declared_on_math_pages_only(tmp_path):
    site, docs = write_site(tmp_path, {
        "index.html": "<p>No math here.</p>",
        "a/index.html": "<math><mi>q</mi><mo>+</mo><mn>1</mn></math>",
        "b/c/index.html": "<math><msqrt><mi>k</mi></msqrt></math>",
    })
    summary = mathfont.write_site_font(site, docs, "/project/", cache=tmp_path / "cache")
    assert summary["pages"] == 2
    assert not (site / mathfont.SOURCE).exists(), "the full font is still in the site"
    (font,) = (site / "assets" / "fonts").glob("*.woff2")
    assert re.fullmatch(r"stix-two-math\.[0-9a-f]{10}\.woff2", font.name)
    assert summary["path"] == f"assets/fonts/{font.name}"
    covered = set(cmap(font.read_bytes()))
    for ch in "q+1k" + mathfont.ITALIC["q"] + mathfont.ITALIC["k"] + mathfont.RADICAL:
        assert ord(ch) in covered, f"{ch!r} is not in the subset"
    rule = f'url("/project/assets/fonts/{font.name}")'
    assert rule in (site / "a/index.html").read_text()
    assert rule in (site / "b/c/index.html").read_text()
    assert mathfont.MARKER not in (site / "index.html").read_text()
    assert (site / "a/index.html").read_text().count(mathfont.MARKER) == 1


def test_a_site_without_math_ships_no_math_font(tmp_path):
    site, docs = write_site(tmp_path, {"index.html": "<p>No math.</p>"})
    assert mathfont.write_site_font(site, docs, "/")["path"] is None
    assert list((site / "assets" / "fonts").glob("*.woff2")) == []


def test_the_cache_is_used_when_nothing_changed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = mathfont.cached_subset(FULL_FONT.read_bytes(), set("xy"), cache)

    def fail(*args):
        raise AssertionError("subset again although the cache has it")

    monkeypatch.setattr(mathfont, "subset_font", fail)
    assert mathfont.cached_subset(FULL_FONT.read_bytes(), set("xy"), cache) == first
    with pytest.raises(AssertionError, match="subset again"):
        mathfont.cached_subset(FULL_FONT.read_bytes(), set("xyz"), cache)


def test_a_build_ships_the_subset_that_covers_its_formulas(scratch_project):
    """The real hook in a real strict build: a new formula brings its glyphs."""
    (scratch_project / "docs" / "index.md").write_text(
        "# Home\n\nA formula: $\\sqrt{d_k} \\le \\Omega$.\n"
    )
    build = mkdocs_build(scratch_project / "site", scratch_project / "mkdocs.yml")
    assert build.returncode == 0, build.log
    site = scratch_project / "site"
    (font,) = (site / "assets" / "fonts").glob("*.woff2")
    covered = set(cmap(font.read_bytes()))
    for ch in ["\u2264", "\u03a9", mathfont.ITALIC["d"], mathfont.ITALIC["k"],
               mathfont.RADICAL]:
        assert ord(ch) in covered, f"{ch!r} ({unicodedata.name(ch)}) is missing"
    assert font.name in (site / "index.html").read_text()
    assert font.stat().st_size < 20_000
