"""Joining the waitlist from the pages (issue 18): a busy cell of the week view and a request refused
because the time is taken both lead to a CSRF-protected form; the waitlist page shows the offer with
its deadline, and accepting books the time while declining passes it on."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from sqlalchemy import select

from portal.booking import transitions
from portal.booking.models import Blackout, BlackoutKind, Booking, BookingState
from portal.core import clock
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.credit.models import Violation, ViolationKind
from portal.credit.services import enterprise_suspended_until
from portal.extensions import db
from portal.waitlist.models import EntryState, WaitlistEntry
from tests import test_waitlist
from tests.factories import extract_csrf, login
from tests.test_waitlist import SLOT, entry_state, join

world = test_waitlist.world  # the same fixture: an instrument, a held hour and enterprises to wait for it

WEEK = "2026-12-07"


def page(client, url: str, **kwargs) -> str:
    response = client.get(url, **kwargs)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def join_link(html: str) -> str:
    """The waitlist link of the week view's busy cell at 09:00 on Wednesday 9 December."""
    links = [unescape(href) for href in re.findall(r'href="(/waitlist/join\?[^"]+)"', html)]
    at = clock.iso_utc(SLOT[0])
    chosen = [link for link in links if f"at={at}" in link]
    assert chosen, links
    return chosen[0]


def form_for(world, html: str | None, wanted: str = "slot", **extra: str) -> dict[str, str]:
    """The join form as the page posts it, for the world's held hour (with the page's CSRF token)."""
    token = {"csrf_token": extract_csrf(html)} if html is not None else {}
    return {
        **token,
        "instrument": world["instrument"].code,
        "starts_at": clock.iso_utc(SLOT[0]) or "",
        "ends_at": clock.iso_utc(SLOT[1]) or "",
        "wanted": wanted,
        **extra,
    }


def entries(world, who: str) -> list[WaitlistEntry]:
    db.session.rollback()
    return list(
        db.session.scalars(
            select(WaitlistEntry).where(WaitlistEntry.enterprise_id == world[who].enterprise_id)
        )
    )


def test_a_busy_cell_of_the_week_view_leads_to_the_waitlist(client, world):
    code = world["instrument"].code
    login(client, world["first"].username)
    week = page(client, f"/instruments/{code}/availability?week={WEEK}")
    assert 'id="waitlist-hint"' in week
    form = page(client, join_link(week))
    assert "2026-12-09 09:00–10:00" in form and 'name="wanted"' in form
    assert 'for="purpose"' in form  # every visible field is labelled
    done = client.post("/waitlist/join", data=form_for(world, form, purpose="XRD 物相分析"))
    assert done.status_code == 302 and done.headers["Location"].endswith("/waitlist/")
    [entry] = entries(world, "first")
    assert (entry.state, entry.starts_at, entry.ends_at, entry.length_minutes) == (
        EntryState.WAITING,
        *SLOT,
        None,
    )
    assert entry.purpose == "XRD 物相分析"
    audited = db.session.scalar(
        select(AuditEvent.actor_id).where(
            AuditEvent.action == "waitlist.waiting", AuditEvent.object_id == str(entry.id)
        )
    )
    assert audited == world["first"].id
    listed = page(client, "/waitlist/")
    assert "2026-12-09 09:00–10:00" in listed and f"/waitlist/{entry.id}/cancel" in listed


def test_the_page_can_wait_for_any_free_period_as_long_that_day(client, world):
    code = world["instrument"].code
    login(client, world["first"].username)
    form = page(client, f"/waitlist/join?instrument={code}&at={clock.iso_utc(SLOT[0])}")
    assert "2026-12-09 当天任意空闲的 60 分钟" in form  # the users speak Chinese
    client.post("/waitlist/join", data=form_for(world, form, "day"))
    [entry] = entries(world, "first")
    assert entry.length_minutes == 60
    assert clock.format_local(entry.starts_at) == "2026-12-09 00:00"
    assert entry.ends_at - entry.starts_at == timedelta(days=1)


def test_only_enterprises_see_the_link_and_the_form(client, world):
    code = world["instrument"].code
    anonymous = page(client, f"/instruments/{code}/availability?week={WEEK}")
    assert "/waitlist/join" not in anonymous
    login(client, world["provider"].username)
    assert "/waitlist/join" not in page(client, f"/instruments/{code}/availability?week={WEEK}")
    answer = client.get(f"/waitlist/join?instrument={code}&at={clock.iso_utc(SLOT[0])}")
    assert answer.status_code == 403


def test_a_cell_that_is_free_now_or_ones_own_booking_leads_back_to_the_week(app, client, world):
    code = world["instrument"].code
    holder = app.test_client()
    login(holder, world["holder"].username)
    own = holder.get(f"/waitlist/join?instrument={code}&at={clock.iso_utc(SLOT[0])}")
    assert own.status_code == 302 and f"/instruments/{code}/availability" in own.headers["Location"]
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    login(client, world["first"].username)
    free = client.get(f"/waitlist/join?instrument={code}&at={clock.iso_utc(SLOT[0])}")
    assert free.status_code == 302 and entries(world, "first") == []
    bad = client.get(f"/waitlist/join?instrument={code}&at=tomorrow")
    assert bad.status_code == 400
    assert client.get(f"/waitlist/join?instrument=NO-SUCH&at={clock.iso_utc(SLOT[0])}").status_code == 404


def test_a_request_for_taken_time_offers_the_waitlist_with_what_was_typed(client, world):
    code = world["instrument"].code
    login(client, world["first"].username)
    shown = page(client, f"/instruments/{code}/book?start={clock.iso_utc(SLOT[0])}")
    assert 'id="join-waitlist"' in shown
    # The booking form posted after the time was taken: refused, and the waitlist offered instead.
    refused = client.post(
        f"/instruments/{code}/book",
        data={
            "csrf_token": extract_csrf(shown),
            "starts_at": clock.iso_utc(SLOT[0]),
            "ends_at": clock.iso_utc(SLOT[1]),
            "purpose": "失效分析",
        },
    ).get_data(as_text=True)
    offer = re.search(r'<form[^>]*id="join-waitlist".*?</form>', refused, re.S)
    assert offer, refused
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', offer.group(0)))
    assert fields["starts_at"] == clock.iso_utc(SLOT[0]) and fields["ends_at"] == clock.iso_utc(SLOT[1])
    assert fields["purpose"] == "失效分析" and fields["instrument"] == code
    client.post("/waitlist/join", data=fields)
    [entry] = entries(world, "first")
    assert (entry.starts_at, entry.ends_at, entry.purpose) == (*SLOT, "失效分析")


def test_no_waitlist_where_a_closure_stands_in_the_way(client, world):
    code = world["instrument"].code
    later = SLOT[0] + timedelta(days=1)
    db.session.add(
        Blackout(
            instrument_id=world["instrument"].id,
            kind=BlackoutKind.MAINTENANCE,
            starts_at=later,
            ends_at=later + timedelta(hours=2),
            reason="年度校准",
        )
    )
    db.session.commit()
    login(client, world["first"].username)
    shown = page(client, f"/instruments/{code}/book?start={clock.iso_utc(later)}")
    assert 'id="join-waitlist"' not in shown
    week = page(client, f"/instruments/{code}/availability?week={WEEK}")
    assert clock.iso_utc(later) not in "".join(re.findall(r"/waitlist/join\?[^\"]+", week))


def test_a_suspended_enterprise_is_told_why_and_keeps_what_it_typed(client, world, make_booking):
    code = world["instrument"].code
    for days in (3, 2, 1):
        past = SLOT[0] - timedelta(days=7 + days)
        missed = make_booking(
            world["instrument"], world["first"], past, past + timedelta(hours=1), state=BookingState.NO_SHOW
        )
        db.session.add(
            Violation(
                enterprise_id=world["first"].enterprise_id,
                booking_id=missed.id,
                kind=ViolationKind.NO_SHOW,
                occurred_at=world["clock"]() - timedelta(days=days),
            )
        )
    db.session.commit()
    login(client, world["first"].username)
    form = page(client, f"/waitlist/join?instrument={code}&at={clock.iso_utc(SLOT[0])}")
    again = client.post("/waitlist/join", data=form_for(world, form, purpose="急需检测"))
    html = again.get_data(as_text=True)
    until = enterprise_suspended_until(world["first"].enterprise_id)
    summary = re.search(r'id="error-summary".*?</div>', html, re.S)
    assert again.status_code == 200 and summary and clock.format_local(until) in summary.group(0)
    assert "急需检测" in html  # what was typed is shown again
    assert entries(world, "first") == []


def test_the_offer_is_shown_with_its_deadline_and_declining_passes_it_on(client, world):
    first, second = join(world, "first"), join(world, "second")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    offered = entry_state(first.id)
    login(client, world["first"].username)
    listed = page(client, "/waitlist/")
    assert clock.format_local(offered.offered_until) in listed
    assert f"/waitlist/{first.id}/accept" in listed and f"/waitlist/{first.id}/decline" in listed
    declined = client.post(f"/waitlist/{first.id}/decline", data={"csrf_token": extract_csrf(listed)})
    assert declined.status_code == 302
    assert entry_state(first.id).state is EntryState.DECLINED
    assert entry_state(second.id).state is EntryState.OFFERED


def test_accepting_on_the_page_books_the_time(client, world):
    entry = join(world, "first")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    login(client, world["first"].username)
    listed = page(client, "/waitlist/")
    taken = client.post(f"/waitlist/{entry.id}/accept", data={"csrf_token": extract_csrf(listed)})
    booking = db.session.get_one(Booking, entry_state(entry.id).offer_booking_id, populate_existing=True)
    assert taken.status_code == 302 and taken.headers["Location"].endswith(f"/bookings/{booking.id}")
    assert (booking.state, booking.offered_until, booking.enterprise_id) == (
        BookingState.REQUESTED,
        None,
        world["first"].enterprise_id,
    )
    assert (booking.starts_at, booking.ends_at) == SLOT


@pytest.mark.parametrize("action", ["accept", "decline", "cancel"])
def test_another_enterprises_entry_is_not_found(client, world, action):
    entry = join(world, "first")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    login(client, world["other"].username)
    listed = page(client, "/waitlist/")
    assert f"/waitlist/{entry.id}/" not in listed
    answer = client.post(f"/waitlist/{entry.id}/{action}", data={"csrf_token": extract_csrf(listed)})
    assert answer.status_code == 404
    assert entry_state(entry.id).state is EntryState.OFFERED


def test_joining_needs_the_csrf_token(client, world):
    login(client, world["first"].username)
    answer = client.post("/waitlist/join", data=form_for(world, None))
    assert answer.status_code in (200, 400) and entries(world, "first") == []


def test_a_provider_role_cannot_join(client, world):
    login(client, world["provider"].username)
    assert client.get("/waitlist/").status_code == 403
    assert Role.PROVIDER is world["provider"].role


def test_a_request_refused_by_held_time_may_wait_one_refused_by_a_closure_may_not(world):
    from portal.booking.availability import Calendar, Span, conflict_error, period_to_wait_for

    calendar = Calendar.load(world["instrument"], SLOT[0], SLOT[1] + timedelta(days=1))
    end = clock.iso_utc(SLOT[1])
    held = conflict_error([Span(*SLOT, "booking")])
    offered = conflict_error([Span(*SLOT, "offer")])
    closed = conflict_error([Span(*SLOT, "maintenance", "年度校准")])
    assert period_to_wait_for(calendar, SLOT[0], end, True, held) == SLOT
    assert period_to_wait_for(calendar, SLOT[0], end, True, offered) == SLOT
    assert period_to_wait_for(calendar, SLOT[0], end, True, closed) is None
    # Not refused: only a start no longer free, and only because of held time, may wait.
    assert period_to_wait_for(calendar, SLOT[0], None, False, None) == SLOT  # the shortest booking
    assert period_to_wait_for(calendar, SLOT[0], end, True, None) is None
    assert period_to_wait_for(calendar, SLOT[1] + timedelta(hours=10), None, False, None) is None  # closed


def test_an_offer_for_any_period_of_a_length_shows_the_time_offered(client, world):
    from portal.waitlist import services

    day_start, day_end, length = services.any_time_that_day(*SLOT)
    entry = join(world, "first", day_start, day_end, length)
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    assert entry_state(entry.id).state is EntryState.OFFERED
    login(client, world["first"].username)
    listed = page(client, "/waitlist/")
    row = re.search(rf"<tr>(?:(?!</tr>).)*/waitlist/{entry.id}/accept.*?</tr>", listed, re.S)
    # The earliest start on the grid that overlaps the freed hour; the wish itself shows as its day.
    assert row and "2026-12-09 08:30–09:30" in row.group(0) and "00:00" not in row.group(0)
