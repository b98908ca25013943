"""In a real browser: verification -> voucher application -> approval -> claim -> approval -> public notice
ends -> payable."""

from __future__ import annotations

import io
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import User
from portal.booking import files, records, requests, transitions
from portal.booking.models import BookingMode, FileKind
from portal.catalog.models import Instrument, InstrumentStatus
from portal.core import clock
from portal.extensions import db
from tests.e2e.conftest import open_page
from tests.e2e.test_booking_browser import sign_in
from tests.test_booking_files import PDF

pytestmark = pytest.mark.e2e


def nav(page, name: str) -> None:
    """Follow a link of the main navigation bar."""
    page.get_by_role("navigation", name="主导航").get_by_role("link", name=name, exact=True).click()


def completed_service_for(app, username: str, demo_clock) -> None:
    """A finished, rated, invoiced sample service of the enterprise (done through the real services)."""
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        provider = db.session.scalar(select(User).where(User.username == "provider"))
        instrument = db.session.scalar(
            select(Instrument)
            .where(
                Instrument.institution_id == provider.institution_id,
                Instrument.status == InstrumentStatus.NORMAL,
                Instrument.fee_per_sample_fen.is_not(None),
            )
            .order_by(Instrument.code)
        )
        request = requests.BookingRequest(
            mode=BookingMode.SAMPLE,
            purpose="新产品成分分析",
            sample_count=4,
            sample_description="树脂样品",
            sample_delivery_on=clock.local_today(),  # arrived: the service can be recorded today
        )
        made = requests.request_booking(user, instrument.code, request)
        transitions.confirm_booking(provider, made.id)
        record = records.complete_booking(provider, made.id, records.ServiceReport(samples=4))
        for kind in (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT):
            files.attach_file(provider, record.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
        records.rate_service(user, made.id, 5)


def test_from_verification_to_a_payable_subsidy(live_portal, browser, browser_errors, demo_clock):
    base = live_portal.url
    with live_portal.app.app_context():
        company = db.session.scalar(select(User).where(User.username == "newco")).enterprise.name

    def open_from_queue(tab: str) -> None:
        nav(reviewer, "审核台")
        reviewer.locator("#queue-tabs").get_by_role("link", name=re.compile(tab)).click()
        reviewer.locator("#queue tr", has_text=company).get_by_role("link").click()

    # A new enterprise asks to be verified.
    newco = open_page(browser, browser_errors)
    sign_in(newco, base, "newco")
    nav(newco, "创新券")
    newco.get_by_role("link", name="申请企业认证").click()
    newco.get_by_label("企业类型").select_option(label="创客团队")
    newco.get_by_label("实际控制人").fill("赵新创")
    newco.get_by_role("button", name="提交企业认证申请").click()
    expect(newco.get_by_text("等待科技局审核")).to_be_visible()

    # A reviewer verifies it.
    reviewer = open_page(browser, browser_errors)
    sign_in(reviewer, base, "reviewer")
    open_from_queue("企业认证")
    reviewer.get_by_role("button", name="认证通过").click()
    reviewer.wait_for_url(re.compile(r"/review/\?kind=verification"))

    # The enterprise applies for a voucher, which the reviewer approves.
    newco.reload()
    newco.get_by_role("link", name="申请创新券").click()
    newco.get_by_label("申请创新券额度（元）").fill("30000")
    newco.get_by_label("计划：拟在哪些仪器上测试什么内容，以及原因").fill("树脂新产品成分分析与热性能测试")
    newco.get_by_role("button", name="提交创新券申请").click()
    open_from_queue("创新券申请")
    reviewer.get_by_role("button", name="批准").click()
    assert reviewer.locator("#application-state").inner_text() == "已批准"
    newco.reload()
    assert newco.locator("#voucher-balance").inner_text() == "¥30,000.00"

    # A service is done; the enterprise claims its subsidy.
    completed_service_for(live_portal.app, "newco", demo_clock)
    newco.get_by_role("link", name="新建申领").click()
    newco.locator("input[name=records]").first.check()
    newco.get_by_role("button", name="计算补贴").click()
    total = newco.locator("#subsidy-total").inner_text()
    assert total != "¥0.00"
    assert newco.locator("#checks .check-failed").count() == 0
    newco.get_by_role("button", name="保存为草稿").click()
    newco.get_by_role("button", name="提交科技局").click()
    assert newco.locator("#claim-state").inner_text() == "已提交"

    # The reviewer approves it: into public notice.
    open_from_queue("补贴申领")
    reviewer.get_by_role("button", name="批准").click()
    assert reviewer.locator("#claim-state").inner_text() == "已批准，公示中"
    assert reviewer.asked[-1].startswith("批准该申领")  # it asked first
    claim_url = reviewer.url
    anonymous = open_page(browser, browser_errors)
    anonymous.goto(f"{base}/vouchers/notices")
    expect(anonymous.locator("#notices tr", has_text=company).get_by_text(total)).to_be_visible()

    # The notice period ends; the beat's task makes the claim payable.
    demo_clock.advance(days=8)
    with live_portal.app.app_context():
        from portal.vouchers.tasks import end_public_notice

        assert end_public_notice() >= 1  # as the worker would run it, here
    reviewer.goto(claim_url)
    assert reviewer.locator("#claim-state").inner_text() == "待兑付"
    for page in (newco, reviewer, anonymous):
        page.context.close()
