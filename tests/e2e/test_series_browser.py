"""On a phone (issue 18): an enterprise repeats a slot weekly from the booking form, sees the dates and
the clash before booking, books the others, and cancels the last dates from the series' page; every
page fits 390 pixels and axe-core finds nothing."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.booking.models import Booking
from portal.core.permissions import Role
from portal.extensions import db
from tests.e2e.conftest import CHROMIUM_ARGS, PHONE
from tests.e2e.test_accessibility import DOM_CHECKS, axe_source, axe_violations, describe
from tests.factories import PASSWORD
from tests.test_booking_series import WEDNESDAYS

pytestmark = pytest.mark.e2e


def check_page(page, source: str) -> None:
    """The page fits the phone's width, axe-core finds nothing, nor do the portal's own DOM checks."""
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], page.url
    violations = axe_violations(page, source)
    assert not violations, describe(page.url, page.url, violations)
    assert page.evaluate(DOM_CHECKS) == [], page.url


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_weekly_series_on_a_phone(
    served, chromium_path, fake_clock, make_instrument, make_user, make_booking
):
    from playwright.sync_api import sync_playwright

    instrument = make_instrument()
    user = make_user(Role.ENTERPRISE)
    make_booking(instrument, make_user(Role.ENTERPRISE), WEDNESDAYS[1], WEDNESDAYS[1] + timedelta(hours=1))
    source, errors = axe_source(), []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        context = browser.new_context(locale="zh-CN", viewport=PHONE, is_mobile=True, has_touch=True)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{served}/login")
        page.get_by_label("用户名").fill(user.username)
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(re.compile(r"/instruments/"))
        start = WEDNESDAYS[0].isoformat().replace("+00:00", "Z")
        page.goto(f"{served}/instruments/{instrument.code}/book?start={start}")
        page.locator("#repeat-link").click()
        page.wait_for_url(re.compile(r"/book-series\?"))
        page.get_by_label("测试目的").fill("每周例行检测")
        page.get_by_role("button", name="检查日期").click()
        assert page.locator("#series-summary").inner_text() == "4 个日期中有 3 个可以预约。"
        assert page.locator("tr.series-clash").count() == 1
        check_page(page, source)
        page.get_by_label("跳过有冲突的日期，预约其余日期").check()
        page.get_by_role("button", name="提交周期预约").click()
        page.wait_for_url(re.compile(r"/bookings/series/\d+$"))
        assert page.locator("#series-rule").inner_text() == "每周星期三，共 4 次"
        check_page(page, source)
        page.get_by_label("取消", exact=True).select_option(index=2)  # from the third Wednesday on
        page.get_by_role("button", name="取消这些日期").click()
        page.wait_for_url(re.compile(r"/bookings/series/\d+$"))
        assert "这些日期已取消。" in page.content()
        check_page(page, source)
        series_url = page.url
        page.goto(f"{served}/language/en")  # the same pages in English
        for url in (series_url, f"{served}/instruments/{instrument.code}/book-series?start={start}"):
            page.goto(url)
            assert page.locator("html").get_attribute("lang") == "en"
            check_page(page, source)
        browser.close()
    assert errors == []
    db.session.rollback()
    states = db.session.scalars(
        select(Booking.state).where(Booking.series_id.is_not(None)).order_by(Booking.starts_at)
    )
    assert [s.value for s in states] == ["requested", "cancelled", "cancelled"]
