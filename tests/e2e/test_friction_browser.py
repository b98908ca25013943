"""In a real browser: the service form keeps what was typed and the chosen file after an error; a
decline asks first, and dismissing the question changes nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import Institution, User
from portal.booking.models import Booking, BookingMode, BookingState
from portal.catalog.models import Instrument, InstrumentStatus
from portal.core import clock
from portal.extensions import db
from tests.e2e.conftest import open_page
from tests.e2e.test_booking_browser import sign_in
from tests.test_booking_files import PDF

pytestmark = pytest.mark.e2e


def _bookings(app) -> tuple[int, int]:
    """A request far ahead and a confirmed two-hour slot that ended an hour ago, on one of 聊城大学's
    instruments for the demo enterprise (written directly: no service makes a booking in the past)."""
    with app.app_context():
        instrument = db.session.scalar(
            select(Instrument)
            .join(Institution)
            .where(Institution.name == "聊城大学", Instrument.status == InstrumentStatus.NORMAL)
            .order_by(Instrument.code.desc())
        )
        user = db.session.scalar(select(User).where(User.username == "enterprise"))
        now = clock.utcnow()
        made = []
        for state, starts in (
            (BookingState.REQUESTED, now + timedelta(days=40)),
            (BookingState.CONFIRMED, now - timedelta(hours=3)),
        ):
            row = Booking(
                instrument_id=instrument.id,
                enterprise_id=user.enterprise_id,
                requested_by_id=user.id,
                mode=BookingMode.SLOT,
                state=state,
                starts_at=starts,
                ends_at=starts + timedelta(hours=2),
                held_until=starts + timedelta(hours=2),
                purpose="浏览器测试",
            )
            db.session.add(row)
            db.session.flush()
            made.append(row.id)
        db.session.commit()
        return made[0], made[1]


def test_the_service_form_keeps_input_and_decline_asks_first(
    live_portal, browser, browser_errors, demo_clock, tmp_path
):
    base = live_portal.url
    request_id, confirmed_id = _bookings(live_portal.app)
    provider = open_page(browser, browser_errors)
    sign_in(provider, base, "provider")

    # More hours than booked, no reason: the page says so at the field and keeps everything.
    provider.goto(f"{base}/bookings/{confirmed_id}")
    provider.get_by_label("实际使用机时").fill("2.5")
    provider.get_by_label("结果摘要").fill("完成全部测试")
    invoice = tmp_path / "发票.pdf"
    invoice.write_bytes(PDF)
    provider.get_by_label("发票").set_input_files(str(invoice))
    provider.get_by_role("button", name="登记服务").click()
    assert provider.get_by_label("实际使用机时").input_value() == "2.5"
    assert provider.get_by_label("结果摘要").input_value() == "完成全部测试"
    reason = provider.get_by_label("机时超出预约的原因")
    assert "is-invalid" in reason.get_attribute("class")
    assert "发票.pdf" in provider.locator("#invoice-again").inner_text()  # kept: not chosen again
    reason.fill("样品较多，延长半小时")
    provider.get_by_role("button", name="登记服务").click()
    provider.wait_for_selector("#service-files")
    expect(provider.locator("#service-files").get_by_text("发票.pdf")).to_be_visible()
    assert "样品较多" in provider.locator("#service-hours").inner_text()

    # Declining asks first; "cancel" in the dialog keeps the request and what was typed.
    provider.goto(f"{base}/bookings/{request_id}")
    provider.locator("#reject-reason").fill("当天仪器校准")  # the decline form's reason box
    provider.answers.append(False)
    provider.get_by_role("button", name="以此理由拒绝").click()
    assert provider.locator("#reject-reason").input_value() == "当天仪器校准"
    with live_portal.app.app_context():
        assert db.session.get(Booking, request_id).state is BookingState.REQUESTED
    provider.asked.clear()
    provider.get_by_role("button", name="以此理由拒绝").click()
    provider.wait_for_url(re.compile(rf"/bookings/{request_id}$"))
    provider.wait_for_selector(".alert-success")
    assert provider.asked and "不能撤销" in provider.asked[0]
    with live_portal.app.app_context():
        assert db.session.get(Booking, request_id).state is BookingState.REJECTED
    provider.context.close()
