"""In a real browser (issue 17): an unqualified user is refused self-operated time and books
staff-operated time at the staff price; the provider grants the qualification, and the user then
books self-operated time at the self price."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.booking.models import Booking
from portal.catalog import prices
from portal.catalog.models import Instrument
from portal.extensions import db
from portal.qualifications.models import UseRules
from tests.e2e.conftest import open_page
from tests.e2e.test_booking_browser import sign_in

pytestmark = pytest.mark.e2e


def _ask_for_a_slot(page, base: str, code: str, nth: int) -> None:
    page.goto(f"{base}/instruments/{code}")
    page.get_by_role("link", name="预约机时").first.click()
    page.get_by_role("link", name="下一周").click()
    page.locator("#week-grid a.stretched-cell").nth(nth).click()
    page.wait_for_url(re.compile(r"/book\?start="))


def _submit(page) -> None:
    page.get_by_label("结束").select_option(index=0)
    page.get_by_label("测试目的").fill("新材料样品的物相分析")
    page.get_by_role("button", name="提交预约申请").click()


def test_refused_self_time_staff_time_then_granted(live_portal, browser, browser_errors, demo_clock):
    base = live_portal.url
    with live_portal.app.app_context():
        instrument = db.session.scalar(
            select(Instrument)
            .join(UseRules, UseRules.instrument_id == Instrument.id)
            .where(UseRules.requires_qualification)
            .order_by(Instrument.code)
        )
        code = instrument.code
        staff_price = prices.price_for(instrument, "enterprise", "staff").unit_price_fen
        self_price = prices.price_for(instrument, "enterprise", "self").unit_price_fen

    user = open_page(browser, browser_errors)
    sign_in(user, base, "enterprise2")  # a verified high-tech enterprise: the enterprise prices
    _ask_for_a_slot(user, base, code, 0)
    _submit(user)
    assert "上机资格" in user.locator(".alert-danger").first.inner_text()
    user.locator("#operation-staff").click()
    user.wait_for_url(re.compile(r"operation=staff"))
    _submit(user)
    user.wait_for_url(re.compile(r"/bookings/\d+$"))
    with live_portal.app.app_context():
        booking = db.session.get(Booking, int(user.url.rsplit("/", 1)[1]))
        assert (booking.operation, booking.unit_price_fen) == ("staff", staff_price)

    provider = open_page(browser, browser_errors)
    sign_in(provider, base, "provider")
    provider.goto(f"{base}/manage/instruments/{code}/qualifications")
    provider.locator("#grant-form").get_by_label("用户名").fill("enterprise2")
    provider.get_by_label("有效期至（含当日）").fill("2027-12-31")
    provider.get_by_role("button", name="授予资格").click()
    expect(provider.locator("#qualifications").get_by_text("enterprise2")).to_be_visible()

    _ask_for_a_slot(user, base, code, 3)
    _submit(user)
    user.wait_for_url(re.compile(r"/bookings/\d+$"))
    with live_portal.app.app_context():
        booking = db.session.get(Booking, int(user.url.rsplit("/", 1)[1]))
        assert (booking.operation, booking.unit_price_fen) == ("self", self_price)
    user.context.close()
    provider.context.close()
