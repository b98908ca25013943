"""On a phone (issue 18): the QR label's short URL, opened signed out, leads through the sign-in back to
the instrument, where the user checks in and, later, out; the booking then shows its used minutes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.booking.models import BookingState
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage.models import UsageSession
from tests.e2e.conftest import CHROMIUM_ARGS, PHONE
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_short_url_checks_in_and_out_on_a_phone(
    served, chromium_path, fake_clock, make_instrument, make_user, make_booking
):
    from playwright.sync_api import sync_playwright

    instrument = make_instrument()
    user = make_user(Role.ENTERPRISE)
    start = clock.utcnow() + timedelta(minutes=10)
    booking = make_booking(instrument, user, start, start + timedelta(hours=1), state=BookingState.CONFIRMED)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(locale="zh-CN", viewport=PHONE, is_mobile=True, has_touch=True)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{served}/i/{instrument.code}")
        page.wait_for_url(re.compile(r"/login"))
        page.get_by_label("用户名").fill(user.username)
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(re.compile(rf"/i/{instrument.code}$"))
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

        page.get_by_role("button", name="签到").click()
        page.wait_for_url(re.compile(rf"/i/{instrument.code}$"))
        assert "已签到" in page.locator(".alert-success").inner_text()
        fake_clock.advance(minutes=80)  # ten minutes before the start, then 70 minutes on: 10 overtime
        page.reload()
        assert "80" in page.locator(f"#usage-{booking.id}").inner_text()
        page.get_by_role("button", name="签退").click()
        page.wait_for_url(re.compile(rf"/i/{instrument.code}$"))
        assert "已签退" in page.locator(".alert-success").inner_text()
        page.goto(f"{served}/bookings/{booking.id}")
        assert "80" in page.locator("#used-minutes").inner_text()
        context.close()
        browser.close()
    assert errors == []
    db.session.rollback()  # a fresh transaction: read what the server committed
    session = db.session.scalars(select(UsageSession)).one()
    assert (session.source.value, session.overtime_minutes) == ("qr", 10)
