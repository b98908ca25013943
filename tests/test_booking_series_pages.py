"""The recurring booking's pages (issue 18): from the booking form to the series form, the dates and
their clashes listed before booking, the series' page with all its dates, cancelling this and the
following from it, and the provider's confirm all."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.booking.models import Booking, BookingSeries
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import extract_csrf, login
from tests.test_booking_rules import WEEKDAY_HOURS
from tests.test_booking_series import WEDNESDAYS

START = clock.iso_utc(WEDNESDAYS[0])


@pytest.fixture
def world(app, fake_clock, make_institution, make_instrument, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    other = make_user(Role.ENTERPRISE)
    make_booking(instrument, other, WEDNESDAYS[1], WEDNESDAYS[1] + timedelta(hours=1))  # the 2nd is taken
    return {
        "instrument": instrument,
        "provider": make_user(Role.PROVIDER, institution=host),
        "enterprise": make_user(Role.ENTERPRISE),
    }


def series_form(page: str, **changes) -> dict:
    form = {
        "csrf_token": extract_csrf(page),
        "starts_at": START,
        "operation": "self",
        "ends_at": clock.iso_utc(WEDNESDAYS[0] + timedelta(hours=1)),
        "every": "week",
        "interval": "1",
        "weekdays": ["2"],
        "ends_by": "count",
        "count": "4",
        "until": "",
        "purpose": "每周例行检测",
    }
    form.update(changes)
    return form


def test_clashes_are_listed_before_booking_and_can_be_skipped(client, world):
    login(client, world["enterprise"].username)
    code = world["instrument"].code
    slot = client.get(f"/instruments/{code}/book?start={START}")
    link = re.search(r'href="([^"]+)" id="repeat-link"', slot.text).group(1).replace("&amp;", "&")
    page = client.get(link)
    assert page.status_code == 200
    assert re.search(r'<input checked[^>]*id="weekdays-2"', page.text)  # Wednesday, the start's
    checked = client.post(link, data=series_form(page.text, preview="y"))
    assert checked.status_code == 200
    assert "3 of 4 dates can be booked" in checked.text or "4 个日期中有 3 个可以预约" in checked.text
    assert checked.text.count('class="series-clash"') == 1
    assert db.session.scalar(select(BookingSeries.id)) is None  # checking books nothing
    refused = client.post(link, data=series_form(checked.text, submit="y"))
    assert refused.status_code == 200 and 'id="error-summary"' in refused.text
    assert "每周例行检测" in refused.text  # what was typed is kept
    assert db.session.scalar(select(BookingSeries.id)) is None
    booked = client.post(link, data=series_form(refused.text, submit="y", skip_conflicts="y"))
    assert booked.status_code == 302
    series_id = db.session.scalar(select(BookingSeries.id))
    assert booked.headers["Location"].endswith(f"/bookings/series/{series_id}")
    shown = client.get(booked.headers["Location"])
    assert '<dd class="col-sm-8" id="series-rule">每周星期三，共 4 次</dd>' in shown.text
    assert 'id="cancel-series-form"' in shown.text and "data-confirm=" in shown.text  # it asks first
    assert shown.text.count("/bookings/") >= 3 and shown.text.count('border">') == 1  # one date skipped


def test_the_booking_page_leads_to_its_series_where_this_and_the_following_are_cancelled(client, world):
    login(client, world["enterprise"].username)
    code = world["instrument"].code
    link = f"/instruments/{code}/book-series?start={START}&operation=self"
    page = client.get(link)
    client.post(link, data=series_form(page.text, submit="y", skip_conflicts="y"))
    bookings = db.session.scalars(
        select(Booking).where(Booking.series_id.is_not(None)).order_by(Booking.starts_at)
    )
    first, second, third = bookings.all()
    detail = client.get(f"/bookings/{second.id}")
    series_link = re.search(r'href="([^"]+)">[^<]*</a>\s*· <a href="([^"]+)"', detail.text)
    assert series_link, "the booking page links to its series and to cancelling from it"
    cancel_page = client.get(series_link.group(2).replace("&amp;", "&").split("#")[0])
    assert f'<option selected value="{second.id}">' in cancel_page.text
    done = client.post(
        f"/bookings/series/{second.series_id}/cancel",
        data={"csrf_token": extract_csrf(cancel_page.text), "from_booking_id": str(second.id), "reason": ""},
    )
    assert done.status_code == 302
    db.session.rollback()
    states = [
        db.session.get(Booking, b.id, populate_existing=True).state.value for b in (first, second, third)
    ]
    assert states == ["requested", "cancelled", "cancelled"]


def test_the_provider_confirms_all_from_the_series_page(client, world):
    login(client, world["enterprise"].username)
    link = f"/instruments/{world['instrument'].code}/book-series?start={START}&operation=self"
    client.post(link, data=series_form(client.get(link).text, submit="y", skip_conflicts="y"))
    series_id = db.session.scalar(select(BookingSeries.id))
    client.post("/logout", data={"csrf_token": extract_csrf(client.get("/account").text)})
    login(client, world["provider"].username)
    page = client.get(f"/bookings/series/{series_id}")
    assert 'id="confirm-series"' in page.text and 'id="cancel-series"' in page.text
    done = client.post(f"/bookings/series/{series_id}/confirm", data={"csrf_token": extract_csrf(page.text)})
    assert done.status_code == 302
    db.session.rollback()
    states = db.session.scalars(select(Booking.state).where(Booking.series_id == series_id)).all()
    assert {s.value for s in states} == {"confirmed"}
    assert 'id="confirm-series"' not in client.get(f"/bookings/series/{series_id}").text
