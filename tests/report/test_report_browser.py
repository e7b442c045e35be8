"""The run report in a real headless browser: loads with no console error, every image shows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from headless_browser import file_url, find_chromium, visit

# both report modules' tests on one xdist worker: conftest's demo-like run trains once
pytestmark = pytest.mark.xdist_group("report")

SCREENSHOT = Path("/tmp/report_screenshot.png")


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed")
    return exe


def test_report_displays_in_headless_chromium(chromium, demo_report):
    path, _ = demo_report
    page = path.read_text()
    seen = visit(file_url(path), screenshot=bool(os.environ.get("UNREID_SCREENSHOT")))
    assert seen.console_errors == []
    assert len(seen.images) == page.count("<img") > 100  # curves, ranked lists, sheets
    not_shown = [i for i in seen.images if not (i["complete"] and i["natural"] > 0)]
    assert not_shown == []
    assert all(i["shown"] > 0 and i["display"] != "none" for i in seen.images)
    # opens from disk: the page itself and inline data, nothing from a network
    assert seen.requests and all(u.startswith(("file:", "data:")) for u in seen.requests)
    if seen.screenshot is not None:
        SCREENSHOT.write_bytes(seen.screenshot)


def test_the_browser_check_catches_a_broken_page(chromium, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="nowhere.png" alt="x"><script>console.error("boom")</script></body></html>'
    )
    seen = visit(file_url(bad))
    assert any("boom" in e for e in seen.console_errors)
    assert any("ERR_FILE_NOT_FOUND" in e or "Failed to load" in e for e in seen.console_errors)
    assert [i["natural"] for i in seen.images] == [0]
