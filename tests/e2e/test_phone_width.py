"""On a phone no page scrolls sideways: every page type, every role, at 390 × 844 and 320 × 640.

The pages are found by walking the demo network as each role (tests/page_walk.py: one page of each
kind), then opened in Chromium with the walk's own session. A page fails when the document is wider
than the viewport; the report names the elements that stick out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests import page_walk

pytestmark = pytest.mark.e2e

WIDTHS = ((320, 640), (390, 844))
# With PORTAL_SCREENSHOTS=docs/screenshots the walk also renews the phone screenshots of key pages.
SCREENSHOTS = os.environ.get("PORTAL_SCREENSHOTS")
KEY_PAGES = {
    ("anon", r"^/instruments/$"): "phone-01-catalogue",
    ("anon", r"^/instruments/[A-Z]+-\d+$"): "phone-02-instrument",
    ("anon", r"^/instruments/[A-Z]+-\d+/availability$"): "phone-03-week",
    ("enterprise", r"^/bookings/$"): "phone-05-my-bookings",
    ("enterprise", r"^/vouchers/$"): "phone-06-vouchers",
    ("reviewer", r"^/review/$"): "phone-07-review-desk",
    ("reviewer", r"^/vouchers/claims/\d+$"): "phone-08-claim",
    ("finance", r"^/finance/$"): "phone-09-finance",
}
ROOT = Path(__file__).resolve().parents[2]
PAGES_PER_ROLE = 120
USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131 Mobile"
)
# What sticks out: the document's width, and the outermost elements reaching past the viewport.
# A phone lays a page that is too wide out in a wider viewport (innerWidth grows): measure against
# the screen's width, which the test passes in.
OVERFLOW = """(width) => {
  const clipped = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o !== 'visible' && p.getBoundingClientRect().right <= width + 1) return true;
    }
    return false;
  };
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && !clipped(el)) {
      const cls = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).join('.') : '';
      wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (cls ? '.' + cls : '')
                + ' ' + Math.round(box.left) + '-' + Math.round(box.right));
    }
  }
  // A table cell squeezed to a character or two per line (a long text in a sliver of a column).
  const squeezed = [...document.querySelectorAll('th, td')].filter(cell => {
    const box = cell.getBoundingClientRect();
    return cell.textContent.trim().length >= 4 && box.width > 0 && box.width < 48 && box.height > 90;
  }).map(cell => cell.textContent.trim().slice(0, 12));
  const scroll = document.documentElement.scrollWidth;
  return {scroll, width, wide: wide.slice(0, 6), squeezed: squeezed.slice(0, 4)};
}"""


@pytest.fixture(scope="module")
def shown_kinds() -> dict[str, set[str]]:
    """Page kinds already measured, per language: a page one role has shown is not measured again."""
    return {"zh": set(), "en": set()}


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("role", page_walk.ROLES)
def test_no_page_scrolls_sideways_on_a_phone(
    live_portal, browser, shown_kinds, role: str, language: str
) -> None:
    client = page_walk.signed_in(live_portal.app, role, language, user_agent=USER_AGENT)
    urls = [
        url
        for url, _ in page_walk.walk(
            live_portal.app,
            role,
            language,
            per_kind=1,
            limit=PAGES_PER_ROLE,
            client=client,
            seen_kinds=shown_kinds[language],
        )
    ]
    assert urls or role != "anon", "the anonymous walk reached no page"
    context = browser.new_context(
        user_agent=USER_AGENT,
        extra_http_headers=page_walk.browser_headers(role, language),
        viewport={"width": WIDTHS[0][0], "height": WIDTHS[0][1]},
        is_mobile=True,
        has_touch=True,
    )
    host = live_portal.url.split("//", 1)[1].split(":")[0]
    cookies = [{"name": "lang", "value": language, "domain": host, "path": "/"}]
    session = client.get_cookie("session")
    if session is not None:
        cookies.append({"name": "session", "value": session.value, "domain": host, "path": "/"})
    context.add_cookies(cookies)
    page = context.new_page()
    problems = []
    try:
        for url in urls:
            page.set_viewport_size({"width": WIDTHS[0][0], "height": WIDTHS[0][1]})
            page.goto(live_portal.url + url, wait_until="load")
            if role != "anon" and "/login" in page.url and not url.startswith("/login"):
                problems.append(f"{url}: the browser was sent to sign in (the session did not carry over)")
                continue
            for width, height in WIDTHS:
                page.set_viewport_size({"width": width, "height": height})
                if width == 390:
                    screenshot(page, role, language, url)
                found = page.evaluate(OVERFLOW, width)
                if found["squeezed"]:
                    problems.append(
                        f"{url} at {width}px: squeezed to a character per line: {found['squeezed']}"
                    )
                if found["scroll"] > width + 1:
                    problems.append(
                        f"{url} at {width}px: {found['scroll']}px wide; sticking out: {found['wide']}"
                    )
    finally:
        context.close()
    assert not problems, (
        f"{len(problems)} of {len(urls) * len(WIDTHS)} page views scroll sideways:\n" + "\n".join(problems)
    )


def test_on_a_phone_booking_starts_near_the_top_and_the_end_time_is_shown_whole(live_portal, browser) -> None:
    client = page_walk.signed_in(live_portal.app, "enterprise", "zh", user_agent=USER_AGENT)
    context = browser.new_context(
        user_agent=USER_AGENT,
        extra_http_headers=page_walk.browser_headers("enterprise", "zh"),
        viewport={"width": 390, "height": 844},
        is_mobile=True,
    )
    host = live_portal.url.split("//", 1)[1].split(":")[0]
    context.add_cookies(
        [{"name": "session", "value": client.get_cookie("session").value, "domain": host, "path": "/"}]
    )
    page = context.new_page()
    try:
        page.goto(f"{live_portal.url}/instruments/{bookable_code(live_portal.app)}")
        book = page.locator("#booking-box-top").get_by_role("link", name="预约机时")
        assert book.is_visible() and book.bounding_box()["y"] < 844, (
            "the Book button is below the first screen"
        )
        expect(page.locator("#booking-box")).to_be_hidden()
        book.click()
        grid = page.locator("#week-grid")
        shown = grid.locator("thead th:not(.other-day)")
        assert shown.count() == 2  # the time column and one day
        page.locator(".day-picker a").nth(2).click()
        assert (
            page.locator(".day-picker a.active").inner_text()
            == page.locator(".day-picker a").nth(2).inner_text()
        )
        free = page.locator("#week-grid td:not(.other-day) a.stretched-cell")
        if free.count() == 0:  # that day is full or closed: any day with time to book
            page.locator(".day-picker a").first.click()
            free = page.locator("#week-grid td:not(.other-day) a.stretched-cell")
        free.first.click()
        screenshot(page, "enterprise", "zh", page.url, "phone-04-booking-form")
        ends = page.locator("select[data-detail]")
        detail = page.locator("#ends-at-detail")
        assert detail.inner_text() == ends.locator("option:checked").inner_text()
        last = ends.locator("option").count() - 1
        ends.select_option(index=last)
        assert detail.inner_text() == ends.locator("option").nth(last).inner_text()
        assert page.evaluate("(e) => e.scrollWidth <= e.clientWidth", detail.element_handle())
    finally:
        context.close()


def bookable_code(app) -> str:
    """An instrument open for machine-time booking with an hourly fee (so the end times carry fees)."""
    from sqlalchemy import select

    from portal.booking import services
    from portal.catalog.models import Instrument
    from portal.extensions import db

    with app.app_context():
        for instrument in db.session.scalars(
            select(Instrument)
            .where(
                Instrument.status.in_(services.BOOKABLE_STATUSES), Instrument.fee_per_hour_fen.is_not(None)
            )
            .order_by(Instrument.code)
        ):
            if services.policy_for(instrument).accepts_slots:
                return instrument.code
    raise AssertionError("the demo has no instrument to book")


def screenshot(page, role: str, language: str, url: str, name: str | None = None) -> None:
    """Save the key pages' phone screenshots when asked to (PORTAL_SCREENSHOTS), in Chinese."""
    if not SCREENSHOTS or language != "zh":
        return
    path = url.split("?", 1)[0]
    name = name or next(
        (n for (r, pattern), n in KEY_PAGES.items() if r == role and re.match(pattern, path)), None
    )
    if name:
        folder = ROOT / SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"))
