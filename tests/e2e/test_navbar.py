"""The navigation bar stays on one line at 1280 px for every role in both languages; secondary links
(the account, the admin console, signing out) are in the user menu, which works by keyboard."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import page_walk
from tests.e2e.test_phone_width import USER_AGENT

pytestmark = pytest.mark.e2e


def _open(live_portal, browser, role: str, language: str, width: int = 1280):
    client = page_walk.signed_in(live_portal.app, role, language, user_agent=USER_AGENT)
    context = browser.new_context(
        user_agent=USER_AGENT,
        extra_http_headers=page_walk.browser_headers(role, language),
        viewport={"width": width, "height": 900},
    )
    host = live_portal.url.split("//", 1)[1].split(":")[0]
    cookies = [{"name": "lang", "value": language, "domain": host, "path": "/"}]
    if client.get_cookie("session") is not None:
        cookies.append(
            {"name": "session", "value": client.get_cookie("session").value, "domain": host, "path": "/"}
        )
    context.add_cookies(cookies)
    page = context.new_page()
    page.goto(f"{live_portal.url}/instruments/")
    return context, page


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_navbar_is_one_line_at_1280_px_for_every_role(live_portal, browser, language: str) -> None:
    lines = {}
    for role in page_walk.ROLES:
        context, page = _open(live_portal, browser, role, language)
        try:
            # One line: the bar is as tall as one row of links, no link breaks inside, nothing overflows.
            lines[role] = page.evaluate(
                """() => {
                  const bar = document.querySelector('nav.navbar');
                  const links = [...bar.querySelectorAll(
                    '.navbar-brand, #nav-main > ul > li > .nav-link, #nav-main > ul > li > .btn')];
                  const boxes = links.map(e => e.getBoundingClientRect());
                  const tallest = Math.max(...boxes.map(b => b.height));
                  const row = Math.max(...boxes.map(b => b.bottom)) - Math.min(...boxes.map(b => b.top));
                  const overflow = bar.scrollWidth > bar.clientWidth + 1;
                  return Math.round(row / 36) + (tallest > 48 ? 1 : 0) + (overflow ? 1 : 0) || 1;
                }"""
            )
        finally:
            context.close()
    assert lines == dict.fromkeys(page_walk.ROLES, 1), f"navbar lines per role: {lines}"


def test_the_user_menu_opens_by_keyboard_and_signs_out(live_portal, browser) -> None:
    context, page = _open(live_portal, browser, "admin", "en")
    try:
        page.locator("#user-menu-button").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#nav-admin")).to_be_visible()
        page.keyboard.press("Escape")
        expect(page.locator("#nav-admin")).to_be_hidden()
        page.locator("#user-menu-button").click()
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/instruments/**")
        assert page.locator("#user-menu").count() == 0
    finally:
        context.close()
