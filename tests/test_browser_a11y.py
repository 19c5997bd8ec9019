"""Accessibility: axe-core's WCAG 2.1 A and AA rules find nothing on any page, in headless Chromium.

axe-core is the script bundled with the axe-playwright-python package (pinned in requirements-dev.txt),
injected into each page after it has run; nothing is fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import axe_playwright_python
import pytest

from tests.browser import settle
from tests.test_browser_public import public  # noqa: F401 (the public-mode server fixture)

AXE = (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text(encoding="utf-8")
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page) -> list[str]:
    """axe-core's WCAG 2.1 AA violations on the page as it stands, one line each."""
    page.evaluate(AXE)
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_AA)
    return [f"{v['id']} ({v['impact']}): {len(v['nodes'])} element(s), first {v['nodes'][0]['target']}: "
            f"{v['nodes'][0].get('failureSummary', '')}" for v in result["violations"]]


@pytest.mark.parametrize("path", ["/", "/map", "/rollout", "/data", "/public"])
def test_every_internal_page_passes_wcag_aa(server, page, path):
    page.goto(server + path)
    settle(page)
    page.wait_for_timeout(1000)  # charts and maps drawn
    assert violations(page) == []


def test_the_public_server_passes_wcag_aa(public, page):  # noqa: F811
    url, _, _ = public
    page.goto(url)
    settle(page)
    page.wait_for_timeout(1000)
    assert violations(page) == []


def test_the_check_finds_a_contrast_failure(server, page):
    """The check itself: a caption coloured like Streamlit's default (3.9:1 on white) is found."""
    page.goto(server)
    settle(page)
    page.evaluate("""() => { const p = document.createElement('p'); p.textContent = 'faint caption';
                     p.style.color = '#828180'; p.style.background = '#ffffff';
                     document.querySelector('[data-testid=stMain]').appendChild(p); }""")
    assert any(v.startswith("color-contrast") for v in violations(page))
