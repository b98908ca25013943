"""In a real browser: a provider sets an instrument to 待修 (confirming the bookings it strands), and the
anonymous catalogue, list and record, shows it at once although the list was in its cache."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.accounts.models import Institution
from portal.booking.models import Booking, BookingState
from portal.catalog.models import Instrument, InstrumentPhoto, InstrumentStatus
from portal.core import clock
from portal.extensions import db
from tests.e2e.conftest import open_page
from tests.e2e.test_booking_browser import sign_in

pytestmark = pytest.mark.e2e


def badges(page) -> list[str]:
    return page.locator("span.badge").all_inner_texts()


def test_a_provider_marks_an_instrument_awaiting_repair_and_visitors_see_it_at_once(
    live_portal, browser, browser_errors
):
    base = live_portal.url
    with live_portal.app.app_context():
        # An instrument of 聊城大学 in service, with a photo and a confirmed booking still to come.
        code = db.session.scalar(
            select(Instrument.code)
            .join(Institution)
            .join(InstrumentPhoto, InstrumentPhoto.instrument_id == Instrument.id)
            .join(Booking, Booking.instrument_id == Instrument.id)
            .where(
                Institution.name == "聊城大学",
                Instrument.status == InstrumentStatus.NORMAL,
                Booking.state == BookingState.CONFIRMED,
                Booking.ends_at > clock.utcnow(),
            )
            .order_by(Instrument.code)
        )
    assert code, "the demo has no instrument of 聊城大学 with a photo and a confirmed booking to come"

    # A visitor searches for it: the page goes into the visitors' cache; the photo is there.
    visitor = open_page(browser, browser_errors)
    visitor.goto(f"{base}/instruments/?q={code}")
    row = visitor.locator("table.catalog-table tbody tr").first
    assert row.locator("span.badge").inner_text() == "正常"
    thumbnail = row.locator("img.catalog-thumbnail")
    assert thumbnail.get_attribute("alt") == ""  # decorative: the instrument's name beside it is the link
    assert visitor.evaluate("img => img.naturalWidth", thumbnail.element_handle()) == 320
    visitor.goto(f"{base}/instruments/{code}")
    assert visitor.locator("#instrument-photos img").first.get_attribute("alt")

    # The provider opens the instrument's catalogue entry from the list of the institution's instruments.
    provider = open_page(browser, browser_errors)
    sign_in(provider, base, "provider")
    provider.get_by_role("link", name="本单位仪器").click()
    provider.locator("tr", has_text=code).get_by_role("link", name="仪器信息").click()
    provider.wait_for_url(re.compile(rf"/manage/instruments/{code}/record$"))
    provider.get_by_label("仪器现状").select_option(label="待修")
    provider.get_by_role("button", name="保存", exact=True).click()

    # First the confirmed bookings it strands; then saving tells their enterprises.
    stranded = provider.locator("#stranded")
    stranded.wait_for()
    assert stranded.locator("a[href^='/bookings/']").count() >= 1
    assert provider.get_by_label("仪器现状").input_value() == "awaiting_repair"  # the choice is kept
    provider.get_by_role("button", name="保存并通知相关企业").click()
    provider.wait_for_url(re.compile(rf"/manage/instruments/{code}/record$"))
    assert "已通知" in provider.locator(".alert-success").inner_text()

    # The visitor's list and record show it at once.
    visitor.goto(f"{base}/instruments/?q={code}")
    assert visitor.locator("table.catalog-table tbody tr").first.locator("span.badge").inner_text() == "待修"
    visitor.goto(f"{base}/instruments/{code}")
    assert "待修" in badges(visitor)
    expect(visitor.locator("#booking-box").get_by_text("该仪器目前的状态不能预约。")).to_be_visible()
