"""In a real browser: every dashboard chart is drawn, and the public page shows the network."""

from __future__ import annotations

import pytest

from tests.e2e.test_booking_browser import sign_in

pytestmark = pytest.mark.e2e

CHARTS = ("burn", "utilisation", "county", "category", "kind")


def test_every_chart_is_drawn_with_visible_bars(live_server, page):
    sign_in(page, live_server, "reviewer")
    page.goto(f"{live_server}/dashboard/")
    for chart in CHARTS:
        svg = page.locator(f"#chart-{chart} svg")
        assert svg.count() == 1, chart
        box = svg.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 50, chart
        bars = svg.locator("rect.bar")
        drawn = [b for b in bars.all() if (bb := b.bounding_box()) and bb["width"] > 0 and bb["height"] > 0]
        assert drawn, f"{chart}: no bar drawn"
    # The burn-down has its forecast, its running total and the budget line.
    assert page.locator("#chart-burn svg polyline.line").count() == 3
    assert int(page.locator("#fig-instruments").get_attribute("data-value")) == 1204  # 1202 + 2 in Shanghai


def test_the_public_page_shows_the_network_without_login(live_server, page):
    page.goto(f"{live_server}/network/")
    assert page.locator("#pub-instruments").inner_text() == "1,204"
    assert page.locator("#most-used tbody tr").count() == 10
