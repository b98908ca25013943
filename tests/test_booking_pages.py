"""Booking pages: the week view, the slot form offering only valid ends, and the provider's settings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

from sqlalchemy import select

from portal.booking.models import Blackout, Booking, BookingPolicy, BookingState
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import extract_csrf, login
from tests.test_booking_rules import WEEKDAY_HOURS


def test_week_view_marks_free_held_closed_and_links_only_bookable_starts(
    client, fake_clock, make_instrument, make_user, make_booking
):
    instrument = make_instrument(opening_hours=WEEKDAY_HOURS)
    make_booking(
        instrument,
        make_user(),
        datetime(2026, 12, 9, 1, 0, tzinfo=UTC),
        datetime(2026, 12, 9, 2, 0, tzinfo=UTC),
    )
    user = make_user()
    login(client, user.username)
    page = client.get(f"/instruments/{instrument.code}/availability?week=2026-12-07").get_data(as_text=True)
    statuses = dict(
        (start, status)
        for status, start in re.findall(r'<td class="cell-(\w+)[^"]*" data-start="([^"]+)"', page)
    )
    assert statuses["2026-12-09T01:00:00Z"] == "held"  # Wed 09:00
    assert statuses["2026-12-09T02:00:00Z"] == "free"  # Wed 10:00
    assert statuses["2026-12-09T04:00:00Z"] == "closed"  # Wed 12:00, lunch
    assert statuses["2026-12-07T00:30:00Z"] == "past"  # Mon 08:30, before "now"
    links = re.findall(r'/instruments/[^/]+/book\?start=([^"]+)"', page)
    assert "2026-12-09T02:00:00Z" in links
    assert "2026-12-09T01:00:00Z" not in links
    # 11:30 is free, but a 60-minute booking would run into the lunch break: no link.
    assert statuses["2026-12-09T03:30:00Z"] == "free" and "2026-12-09T03:30:00Z" not in links
    assert "2026-12-14" in page  # the next week is one click away


def test_the_slot_form_offers_only_valid_ends_and_books(
    client, fake_clock, make_instrument, make_user, make_booking
):
    instrument = make_instrument(opening_hours=WEEKDAY_HOURS)
    make_booking(
        instrument,
        make_user(),
        datetime(2026, 12, 9, 3, 0, tzinfo=UTC),
        datetime(2026, 12, 9, 4, 0, tzinfo=UTC),
    )  # Wed 11:00-12:00 is taken
    user = make_user()
    login(client, user.username)
    page = client.get(f"/instruments/{instrument.code}/book?start=2026-12-09T01:00:00Z").get_data(
        as_text=True
    )
    ends_select = page.split('name="ends_at"', 1)[1].split("</select>", 1)[0]
    ends = re.findall(r'<option value="([^"]+)"', ends_select)
    assert ends == [
        "2026-12-09T02:00:00Z",
        "2026-12-09T02:30:00Z",
        "2026-12-09T03:00:00Z",
    ]  # 10:00, 10:30, 11:00
    response = client.post(
        f"/instruments/{instrument.code}/book",
        data={
            "csrf_token": extract_csrf(page),
            "starts_at": "2026-12-09T01:00:00Z",
            "ends_at": "2026-12-09T02:30:00Z",
            "purpose": "形貌观察",
            "purpose_category": "research",
        },
    )
    assert response.status_code == 302
    booking = db.session.scalar(select(Booking).where(Booking.enterprise_id == user.enterprise_id))
    assert (booking.state, booking.ends_at, booking.purpose_category) == (
        BookingState.REQUESTED,
        datetime(2026, 12, 9, 2, 30, tzinfo=UTC),
        "research",
    )


def test_a_tampered_end_is_rechecked_by_the_server(client, fake_clock, make_instrument, make_user):
    instrument = make_instrument(opening_hours=WEEKDAY_HOURS)
    user = make_user()
    login(client, user.username)
    page = client.get(f"/instruments/{instrument.code}/book?start=2026-12-09T01:00:00Z").get_data(
        as_text=True
    )
    response = client.post(
        f"/instruments/{instrument.code}/book",
        data={
            "csrf_token": extract_csrf(page),
            "starts_at": "2026-12-09T01:00:00Z",
            "ends_at": "2026-12-09T05:00:00Z",  # 13:00: not offered, runs into lunch
            "purpose": "x",
        },
    )
    assert response.status_code == 200
    assert db.session.scalar(select(Booking)) is None


def test_only_enterprises_reach_the_booking_form(client, fake_clock, make_instrument, make_user):
    instrument = make_instrument(opening_hours=WEEKDAY_HOURS)
    assert client.get(f"/instruments/{instrument.code}/book?start=2026-12-09T01:00:00Z").status_code == 302
    provider = make_user(Role.PROVIDER)
    login(client, provider.username)
    assert client.get(f"/instruments/{instrument.code}/book?start=2026-12-09T01:00:00Z").status_code == 403


def test_providers_manage_only_their_own_instruments(
    client, fake_clock, make_institution, make_instrument, make_user
):
    host = make_institution()
    mine = make_instrument(institution=host)
    theirs = make_instrument(institution=make_institution())
    provider = make_user(Role.PROVIDER, institution=host)
    login(client, provider.username)
    assert client.get(f"/manage/instruments/{mine.code}").status_code == 200
    assert client.get(f"/manage/instruments/{theirs.code}").status_code == 404
    listing = client.get("/manage/instruments").get_data(as_text=True)
    assert mine.code in listing and theirs.code not in listing


def test_our_instruments_come_fifty_a_page_and_are_found_by_code_name_or_model(
    client, fake_clock, make_institution, make_instrument, make_user
):
    host = make_institution()
    mine = [make_instrument(institution=host) for _ in range(50)]
    mine.append(make_instrument(institution=host, name="同步热分析仪", model="STA 449 F3"))
    theirs = make_instrument(institution=make_institution(), model="STA 449 F5")
    login(client, make_user(Role.PROVIDER, institution=host).username)

    def codes(**query: str) -> list[str]:
        page = client.get("/manage/instruments", query_string=query).get_data(as_text=True)
        return re.findall(r'<td class="font-monospace">([^<]+)</td>', page)

    ordered = sorted(i.code for i in mine)
    assert codes() == ordered[:50]
    assert codes(page="2") == ordered[50:]
    assert codes(q="sta 449") == [mine[-1].code]  # the model, any case; never another institution's
    assert codes(q="热分析") == [mine[-1].code]
    assert codes(q=mine[7].code) == [mine[7].code]
    assert codes(q="%") == []  # a LIKE wildcard is a plain character
    assert theirs.code not in client.get("/manage/instruments?page=2").get_data(as_text=True)
    empty = client.get("/manage/instruments", query_string={"q": "<b>无此仪器</b>"}).get_data(as_text=True)
    assert "本单位没有与“&lt;b&gt;无此仪器&lt;/b&gt;”相符的仪器。" in empty


def _settings_page(client, instrument):
    page = client.get(f"/manage/instruments/{instrument.code}").get_data(as_text=True)
    return page, extract_csrf(page)


def test_provider_changes_rules_hours_and_closures(
    client, fake_clock, make_institution, make_instrument, make_user, make_booking
):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    provider = make_user(Role.PROVIDER, institution=host)
    login(client, provider.username)
    _page, token = _settings_page(client, instrument)
    rules = {
        "csrf_token": token,
        "policy-accepts_slots": "y",
        "policy-step_minutes": "30",
        "policy-min_minutes": "30",
        "policy-max_minutes": "240",
        "policy-buffer_minutes": "30",
        "policy-min_notice_hours": "2",
        "policy-max_days_ahead": "30",
        "policy-cancel_cutoff_hours": "12",
        "policy-no_show_grace_minutes": "45",
        "policy-submit": "1",
    }
    assert client.post(f"/manage/instruments/{instrument.code}", data=rules).status_code == 302
    policy = db.session.get(BookingPolicy, instrument.id)
    assert (policy.min_minutes, policy.buffer_minutes, policy.accepts_samples) == (30, 30, False)
    assert policy.no_show_grace_minutes == 45

    bad = client.post(f"/manage/instruments/{instrument.code}", data={**rules, "policy-min_minutes": "300"})
    assert bad.status_code == 200 and db.session.get(BookingPolicy, instrument.id).min_minutes == 30

    hours = {
        "csrf_token": token,
        "hours-submit": "1",
        "hours-d0_0_open": "09:00",
        "hours-d0_0_close": "11:00",
        "hours-d5_0_open": "08:00",
        "hours-d5_0_close": "12:00",
    }
    assert client.post(f"/manage/instruments/{instrument.code}", data=hours).status_code == 302
    db.session.refresh(instrument)
    assert [(h.weekday, h.opens_at, h.closes_at) for h in instrument.opening_hours] == [
        (0, time(9, 0), time(11, 0)),
        (5, time(8, 0), time(12, 0)),
    ]
    half = client.post(f"/manage/instruments/{instrument.code}", data={**hours, "hours-d5_0_close": ""})
    assert half.status_code == 200 and len(instrument.opening_hours) == 2

    make_booking(
        instrument,
        make_user(),
        datetime(2026, 12, 12, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 12, 1, 0, tzinfo=UTC),
    )
    closure = {
        "csrf_token": token,
        "blackout-submit": "1",
        "blackout-kind": "maintenance",
        "blackout-starts_at": "2026-12-12T08:00",
        "blackout-ends_at": "2026-12-12T12:00",
        "blackout-reason": "保养",
    }
    clash = client.post(f"/manage/instruments/{instrument.code}", data=closure)
    assert clash.status_code == 200 and "08:00" in clash.get_data(
        as_text=True
    )  # names the booking in the way
    assert db.session.scalar(select(Blackout)) is None
    ok = client.post(
        f"/manage/instruments/{instrument.code}",
        data={**closure, "blackout-starts_at": "2026-12-19T08:00", "blackout-ends_at": "2026-12-19T12:00"},
    )
    assert ok.status_code == 302
    blackout = db.session.scalar(select(Blackout))
    assert blackout.starts_at == datetime(2026, 12, 19, 0, 0, tzinfo=UTC)  # entered in Beijing time
    actions = set(
        db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == instrument.code))
    )
    assert {"instrument.policy_changed", "instrument.hours_changed", "instrument.blackout_added"} <= actions
