"""The build-time LaTeX to MathML conversion."""

import pytest

from hooks import mathml


def test_inline_and_display_math_become_mathml():
    page = (
        '<p>A <span class="arithmatex">\\(QK^\\top &lt; 1\\)</span> and</p>'
        '<div class="arithmatex">\\[\\frac{a}{\\sqrt{d_k}}\\]</div>'
    )
    out, errors = mathml.convert_html(page)
    assert errors == []
    assert "arithmatex" not in out
    assert out.count("<math") == 2
    assert '<math display="block">' in out
    assert "<mo>&lt;</mo>" in out or "<mo>&#x3C;</mo>" in out or "&lt;" in out
    assert "<msqrt>" in out


def test_bad_tex_is_reported_and_left_visible():
    page = '<span class="arithmatex">\\(\\frac{a\\)</span>'
    out, errors = mathml.convert_html(page, where="x.md")
    assert out == page
    assert len(errors) == 1 and errors[0].startswith("x.md: cannot convert TeX")


def test_unknown_command_is_an_error():
    with pytest.raises(mathml.TexError, match="nosuchmacro"):
        mathml.tex_to_mathml("\\nosuchmacro{x}", display=False)
