"""Missing tools: a skip with a how-to locally, a failure under CI=true."""

import pytest
from _pytest.outcomes import Failed, Skipped

from tests import conftest


def test_missing_tool_skips_locally_with_a_how_to(monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(Skipped, match="apt-get install chromium"):
        conftest.require(False, "Chromium", "install it with `apt-get install chromium`")


def test_missing_tool_fails_under_ci(monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(Failed, match="CI=true: Chromium is not available"):
        conftest.require(False, "Chromium", "install it with `apt-get install chromium`")


def test_present_tool_passes(monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", True)
    assert conftest.require(True, "Chromium", "n/a") is None
