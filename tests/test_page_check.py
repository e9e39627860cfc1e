"""tests/page.py: `make page PAGE=x` checks one page against a build of it alone."""

from __future__ import annotations

import pytest
import yaml

from tests import page


def test_every_markdown_page_can_be_checked_alone():
    assert "masks" in page.pages() and "multi-head" in page.pages()
    assert page.check_page("masks.md") == "masks"


@pytest.mark.parametrize("bad", ["nope", "", None, 3, "notebooks/playground"])
def test_an_unknown_page_is_refused_with_the_list(bad):
    with pytest.raises(ValueError, match=r"PAGE must be one of .*masks.*, got"):
        page.check_page(bad)


def test_the_command_runs_the_page_its_tests_and_its_browser_check():
    cmd = page.command("multi-head")
    assert str(page.DOCS / "multi-head.md") in cmd
    assert str(page.ROOT / "tests" / "test_multi_head.py") in cmd
    browser = [c for c in cmd if c.startswith("tests/test_browser.py::")]
    assert [c.rsplit("[", 1)[1] for c in browser] == ["/multi-head/-light]",
                                                      "/multi-head/-dark]"]


def test_the_config_builds_that_page_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(page, "CONFIG", tmp_path / ".mkdocs-page.yml")
    config = yaml.safe_load(page.write_config("masks").read_text())
    assert config["INHERIT"] == "mkdocs.yml" and config["strict"] is False
    assert config["exclude_docs"].split() == ["/*.md", "!/masks.md", "/notebooks/"]


def test_main_refuses_a_bad_page_without_running_anything(capsys):
    assert page.main(["nope"]) == 2
    assert "PAGE must be one of" in capsys.readouterr().out
    assert page.main([]) == 2
