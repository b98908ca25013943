"""In a real browser: an enterprise books a slot, the provider confirms it and records the service,
the enterprise rates it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import Institution
from portal.booking.models import Booking
from portal.catalog.models import Instrument, InstrumentStatus
from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from tests.e2e.conftest import open_page
from tests.test_booking_files import PDF

pytestmark = pytest.mark.e2e


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(r"/instruments/"))


def test_book_confirm_record_and_rate(live_portal, browser, browser_errors, demo_clock, tmp_path):
    base = live_portal.url
    with live_portal.app.app_context():
        instrument = db.session.scalar(
            select(Instrument)
            .join(Institution)
            .where(Institution.name == "聊城大学", Instrument.status == InstrumentStatus.NORMAL)
            .order_by(Instrument.code)
        )
        code = instrument.code

    # The enterprise picks the first free time next week and asks for it.
    enterprise = open_page(browser, browser_errors)
    sign_in(enterprise, base, "enterprise")
    enterprise.goto(f"{base}/instruments/{code}")
    enterprise.get_by_role("link", name="预约机时").click()
    enterprise.get_by_role("link", name="下一周").click()
    enterprise.locator("#week-grid a.stretched-cell").first.click()
    enterprise.wait_for_url(re.compile(r"/book\?start="))
    enterprise.get_by_label("结束").select_option(index=0)
    enterprise.get_by_label("测试目的").fill("新材料样品的物相分析")
    enterprise.get_by_role("button", name="提交预约申请").click()
    enterprise.wait_for_url(re.compile(r"/bookings/\d+$"))
    assert enterprise.locator("#booking-state").inner_text() == "待确认"
    booking_url = enterprise.url

    # The provider of 聊城大学 finds it in the queue and confirms it.
    provider = open_page(browser, browser_errors)
    sign_in(provider, base, "provider")
    provider.get_by_role("link", name="预约申请").click()
    provider.locator(f'a[href="{booking_url.removeprefix(base)}"]').click()
    provider.get_by_role("button", name="确认预约").click()
    assert provider.locator("#booking-state").inner_text() == "已确认"

    # Time passes: the slot has been used; the provider records the service with the invoice.
    with live_portal.app.app_context():
        booking = db.session.get(Booking, int(booking_url.rsplit("/", 1)[1]))
        demo_clock.set(booking.ends_at + timedelta(minutes=5))
    provider.reload()
    provider.get_by_label("实际使用机时").fill("1")
    invoice = tmp_path / "发票.pdf"
    invoice.write_bytes(PDF)
    provider.get_by_label("发票").set_input_files(str(invoice))
    provider.get_by_role("button", name="登记服务").click()
    assert provider.locator("#booking-state").inner_text() == "已完成"
    expect(provider.locator("#service-files").get_by_text("发票.pdf")).to_be_visible()

    # The enterprise confirms the service and rates it.
    enterprise.goto(booking_url)
    enterprise.get_by_label("非常满意").check()
    enterprise.get_by_role("button", name="确认服务并评价").click()
    assert enterprise.locator("#service-rating").inner_text().startswith("非常满意")
    enterprise.context.close()
    provider.context.close()
