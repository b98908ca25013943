"""In a real browser, a voucher at the point of payment (issue 21): the enterprise books and chooses to
pay only its share; the provider records the service and the subsidy is reserved at once; the
enterprise sees its share; the provider submits the redemption; two reviewers approve; the public
notice ends; finance pays the provider."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import Institution
from portal.booking.models import Booking
from portal.catalog.models import Instrument, InstrumentStatus
from portal.extensions import db
from portal.vouchers.models import Claim, Scheme
from tests.e2e.conftest import open_page
from tests.e2e.test_booking_browser import sign_in
from tests.e2e.test_voucher_browser import nav
from tests.test_booking_files import PDF

pytestmark = pytest.mark.e2e


def _instrument_of_liaocheng_university(app) -> str:
    with app.app_context():
        return db.session.scalar(
            select(Instrument.code)
            .join(Institution)
            .where(Institution.name == "聊城大学", Instrument.status == InstrumentStatus.NORMAL)
            .order_by(Instrument.code)
        )


def _book_paying_only_the_share(enterprise, base: str, code: str) -> str:
    enterprise.goto(f"{base}/instruments/{code}")
    enterprise.get_by_role("link", name="预约机时").click()
    enterprise.get_by_role("link", name="下一周").click()
    enterprise.locator("#week-grid a.stretched-cell").first.click()
    enterprise.wait_for_url(re.compile(r"/book\?start="))
    enterprise.get_by_label("结束").select_option(index=0)
    enterprise.get_by_label("测试目的").fill("新材料样品的物相分析")
    enterprise.get_by_label("只付自付部分，由服务机构兑付创新券").check()
    enterprise.get_by_role("button", name="提交预约申请").click()
    enterprise.wait_for_url(re.compile(r"/bookings/\d+$"))
    return enterprise.url


def _record_the_service(provider, app, demo_clock, booking_url: str, tmp_path) -> None:
    provider.get_by_role("button", name="确认预约").click()
    with app.app_context():
        booking = db.session.get(Booking, int(booking_url.rsplit("/", 1)[1]))
        demo_clock.set(booking.ends_at + timedelta(minutes=5))
    provider.reload()
    provider.get_by_label("实际使用机时").fill("1")
    for label, name in (
        ("合同", "合同.pdf"),
        ("发票", "发票.pdf"),
        ("付款凭证", "付款凭证.pdf"),
        ("服务结果", "结果.pdf"),
    ):
        document = tmp_path / name
        document.write_bytes(PDF)
        provider.get_by_label(label, exact=True).set_input_files(str(document))
    provider.get_by_role("button", name="登记服务").click()
    assert provider.locator("#booking-state").inner_text() == "已完成"


def test_a_provider_redeems_a_voucher_at_payment(live_portal, browser, browser_errors, demo_clock, tmp_path):
    base, app = live_portal.url, live_portal.app
    with app.app_context():  # two reviewers decide this one: four eyes from the first fen
        for scheme in db.session.scalars(select(Scheme)):
            scheme.four_eyes_threshold_fen = 1
        db.session.commit()
    code = _instrument_of_liaocheng_university(app)

    enterprise = open_page(browser, browser_errors)
    sign_in(enterprise, base, "enterprise")
    booking_url = _book_paying_only_the_share(enterprise, base, code)

    provider = open_page(browser, browser_errors)
    sign_in(provider, base, "provider")
    provider.goto(booking_url)
    _record_the_service(provider, app, demo_clock, booking_url, tmp_path)
    # Reserved at once: the panel shows what the voucher pays and the enterprise's share.
    expect(provider.locator("#redemption-state")).to_have_text("已预留，待服务机构提交兑付")
    share = provider.locator("#enterprise-share").inner_text()

    enterprise.goto(booking_url)
    assert enterprise.locator("#enterprise-share").inner_text() == share
    enterprise.get_by_label("非常满意").check()
    enterprise.get_by_role("button", name="确认服务并评价").click()

    # The provider submits the redemption with the enterprise's payment of its share.
    provider.locator("#user-menu-button").click()  # the provider's voucher links are in its menu
    provider.get_by_role("link", name="创新券兑付").click()
    provider.locator("#redemptions").get_by_role("link", name="提交兑付").first.click()
    expect(provider.get_by_label("企业已缴付的自付金额（元）")).to_have_value(
        share.lstrip("¥").replace(",", "")
    )
    provider.get_by_role("button", name="向科技局提交兑付").click()
    assert provider.locator("#claim-state").inner_text() == "已提交"
    claim_url = provider.url
    claim_id = int(claim_url.rsplit("/", 1)[1])

    # Two reviewers approve it.
    for username, state in (("reviewer", "待复核"), ("reviewer2", "已批准，公示中")):
        reviewer = open_page(browser, browser_errors)
        sign_in(reviewer, base, username)
        reviewer.goto(f"{base}/vouchers/claims/{claim_id}")
        expect(reviewer.locator("#at-payment")).to_be_visible()
        reviewer.get_by_role("button", name="批准").click()
        assert reviewer.locator("#claim-state").inner_text() == state
        reviewer.context.close()

    # The notice ends; finance pays the provider.
    demo_clock.advance(days=8)
    with app.app_context():
        from portal.vouchers.tasks import end_public_notice  # as the worker runs it

        assert end_public_notice() >= 1
        assert db.session.get(Claim, claim_id).state.value == "payable"
    provider.goto(claim_url)
    assert provider.locator("#claim-state").inner_text() == "待兑付"

    # Finance pays the month's batch: the provider's line, into its verified account.
    finance = open_page(browser, browser_errors)
    sign_in(finance, base, "finance")
    nav(finance, "财务")
    finance.get_by_role("link", name="兑付批次").click()
    finance.get_by_role("button", name="生成批次").click()
    finance.wait_for_url(re.compile(r"/finance/batches/\d+$"))
    line = finance.locator("#payments tr", has_text="聊城大学")
    expect(line).to_contain_text(f"#{claim_id}")
    with finance.expect_download():
        finance.get_by_role("button", name="导出给银行（CSV）").click()
    finance.reload()
    finance.get_by_label("兑付银行流水号").fill("CCB-20261214-0001")
    finance.get_by_role("button", name="标记批次已兑付").click()
    assert finance.locator("#batch-state").inner_text() == "已兑付"
    provider.goto(claim_url)
    assert provider.locator("#claim-state").inner_text() == "已兑付"
    for page in (enterprise, provider, finance):
        page.context.close()
