"""The waitlist (issue 18, deliverable 6): freed time is offered to the first in line, held for it
(others get 409 slot_offered), taken by accepting, moved on by declining or lapsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.booking import no_shows, requests, transitions
from portal.booking.models import Booking, BookingMode, BookingState
from portal.booking.services import list_bookings
from portal.core.errors import InvalidTransition, SlotOffered
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.waitlist import offers, services
from portal.waitlist.models import EntryState, WaitlistEntry
from tests.factories import extract_csrf, login
from tests.test_booking_rules import WEEKDAY_HOURS, bearer

WEDNESDAY_9 = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)  # 09:00 in Liaocheng
SLOT = (WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))


@pytest.fixture
def world(app, fake_clock, make_institution, make_instrument, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    holder, first, second, other = (make_user(Role.ENTERPRISE) for _ in range(4))
    held = make_booking(instrument, holder, *SLOT, state=BookingState.CONFIRMED)
    return {
        "instrument": instrument,
        "provider": make_user(Role.PROVIDER, institution=host),
        "holder": holder,
        "first": first,
        "second": second,
        "other": other,
        "held": held,
        "clock": fake_clock,
        "make_booking": make_booking,
    }


def join(world, who: str, start=SLOT[0], end=SLOT[1], length=None) -> WaitlistEntry:
    return services.join_waitlist(world[who], world["instrument"].code, start, end, length)


def entry_state(entry_id: int) -> WaitlistEntry:
    db.session.rollback()
    return db.session.get_one(WaitlistEntry, entry_id, populate_existing=True)


def ask(world, who: str, start=SLOT[0], end=SLOT[1]) -> Booking:
    return requests.request_booking(
        world[who],
        world["instrument"].code,
        requests.BookingRequest(mode=BookingMode.SLOT, starts_at=start, ends_at=end),
    )


def test_a_cancelled_slot_is_offered_to_the_first_in_line_and_held_for_it(world):
    first, second = join(world, "first"), join(world, "second")
    transitions.cancel_booking(world["holder"], world["held"].id, "计划有变")
    offered = entry_state(first.id)
    assert offered.state is EntryState.OFFERED
    assert offered.offered_until == world["clock"]() + timedelta(hours=2)
    assert entry_state(second.id).state is EntryState.WAITING
    hold = db.session.get_one(Booking, offered.offer_booking_id)
    assert (hold.starts_at, hold.ends_at, hold.state) == (*SLOT, BookingState.REQUESTED)
    assert hold.enterprise_id == world["first"].enterprise_id and hold.offered_until == offered.offered_until
    told = db.session.scalars(
        select(Notification.recipient_id).where(Notification.kind == "waitlist.offered")
    )
    assert set(told) == {world["first"].id}
    with pytest.raises(SlotOffered):
        ask(world, "other")


def test_accepting_books_it_and_the_provider_hears_of_it(client, world):
    entry = join(world, "first")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    answer = client.post(f"/api/v1/waitlist/{entry.id}/accept", headers=bearer(client, world["first"]))
    assert answer.status_code == 201, answer.json
    assert answer.json["state"] == "requested" and answer.json["offered_until"] is None
    assert entry_state(entry.id).state is EntryState.ACCEPTED
    told = db.session.scalars(
        select(Notification.recipient_id).where(Notification.kind == "booking.requested")
    )
    assert set(told) == {world["provider"].id}
    transitions.confirm_booking(world["provider"], answer.json["id"])  # now an ordinary request


def test_the_provider_can_neither_see_nor_confirm_an_offer_not_yet_accepted(world):
    entry = join(world, "first")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    offer_id = entry_state(entry.id).offer_booking_id
    assert offer_id not in {b.id for b in list_bookings(world["provider"]).items}
    with pytest.raises(InvalidTransition):
        transitions.confirm_booking(world["provider"], offer_id)


def test_declining_moves_the_offer_on(world):
    first, second = join(world, "first"), join(world, "second")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    services.decline_offer(world["first"], first.id)
    assert entry_state(first.id).state is EntryState.DECLINED
    assert entry_state(second.id).state is EntryState.OFFERED
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.offered_until.is_not(None), Booking.state == "requested")
        )
        == 1
    )


def test_a_lapsed_offer_moves_on_and_then_the_time_is_free(world):
    first, second = join(world, "first"), join(world, "second")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    world["clock"].advance(hours=2)
    assert offers.lapse_offers() == 1
    assert entry_state(first.id).state is EntryState.EXPIRED
    assert entry_state(second.id).state is EntryState.OFFERED
    with pytest.raises(InvalidTransition):
        services.accept_offer(world["first"], first.id)
    world["clock"].advance(hours=2)
    assert offers.lapse_offers() == 1
    assert ask(world, "other").state is BookingState.REQUESTED  # nobody left in line


@pytest.mark.parametrize("how", ["reject", "expire", "provider_cancel"])
def test_rejected_expired_and_cancelled_requests_free_time_too(world, how):
    held = world["held"]
    held.state = BookingState.REQUESTED
    db.session.commit()
    entry = join(world, "first")
    if how == "reject":
        transitions.reject_booking(world["provider"], held.id, "设备检修")
    elif how == "expire":
        transitions.expire_unanswered(SLOT[0])  # its time has come without an answer
    else:
        transitions.cancel_booking(world["provider"], held.id, "设备检修")
    assert entry_state(entry.id).state is EntryState.OFFERED


def test_a_no_show_releases_the_rest_of_its_slot_to_any_period_of_a_length(world):
    start = SLOT[0]
    long_hold = world["held"]
    long_hold.ends_at = long_hold.held_until = start + timedelta(hours=2)
    db.session.commit()
    entry = join(world, "first", start, start + timedelta(hours=3), length=60)
    world["clock"].set(start + timedelta(minutes=30))
    assert no_shows.mark_no_shows() == 1
    offered = entry_state(entry.id)
    assert offered.state is EntryState.OFFERED
    hold = db.session.get_one(Booking, offered.offer_booking_id)
    assert hold.ends_at - hold.starts_at == timedelta(hours=1)
    assert hold.starts_at >= world["clock"]() and hold.starts_at < start + timedelta(hours=2)


def test_a_waiting_entry_whose_time_fits_nothing_keeps_its_place(world, make_booking):
    entry = join(world, "first", SLOT[0], SLOT[1] + timedelta(hours=1))  # wants 09:00-11:00
    make_booking(
        world["instrument"],
        world["other"],
        SLOT[1],
        SLOT[1] + timedelta(hours=1),
        state=BookingState.CONFIRMED,
    )
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    assert entry_state(entry.id).state is EntryState.WAITING


def body(world, start: datetime, end: datetime) -> dict:
    return {
        "instrument_code": world["instrument"].code,
        "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
    }


def test_the_api_lists_joins_and_cancels(client, world):
    headers = bearer(client, world["first"])
    made = client.post(
        "/api/v1/waitlist",
        json=body(world, SLOT[0], SLOT[1]),
        headers=headers,
    )
    assert made.status_code == 201, made.json
    assert made.json["state"] == "waiting" and made.json["offered_until"] is None
    assert [e["id"] for e in client.get("/api/v1/waitlist", headers=headers).json["items"]] == [
        made.json["id"]
    ]
    other = bearer(client, world["other"])
    assert client.post(f"/api/v1/waitlist/{made.json['id']}/cancel", headers=other).status_code == 404
    cancelled = client.post(f"/api/v1/waitlist/{made.json['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    bad = client.post(
        "/api/v1/waitlist",
        json=body(world, SLOT[1], SLOT[0]),
        headers=headers,
    )
    assert bad.status_code == 422


def test_the_api_answers_409_slot_offered(client, world):
    join(world, "first")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    answer = client.post(
        "/api/v1/bookings",
        json=body(world, SLOT[0], SLOT[1]),
        headers=bearer(client, world["other"]),
    )
    assert answer.status_code == 409 and answer.json["error"]["code"] == "slot_offered"


def test_postgresql_itself_keeps_offers_and_bookings_apart(world):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL; SQLite relies on BEGIN IMMEDIATE")
    join(world, "first")
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    with pytest.raises(IntegrityError, match="no_double_booking"):
        world["make_booking"](world["instrument"], world["other"], *SLOT, state=BookingState.REQUESTED)
    db.session.rollback()


def test_the_enterprise_accepts_on_its_waitlist_page(client, world):
    entry = join(world, "first")
    waiting = join(world, "first", SLOT[1], SLOT[1] + timedelta(hours=1))
    transitions.cancel_booking(world["holder"], world["held"].id, None)
    login(client, world["first"].username)
    page = client.get("/waitlist/").get_data(as_text=True)
    assert f"/waitlist/{entry.id}/accept" in page and f"/waitlist/{waiting.id}/cancel" in page
    posted = client.post(f"/waitlist/{entry.id}/accept", data={"csrf_token": extract_csrf(page)})
    booking_id = entry_state(entry.id).offer_booking_id
    assert posted.status_code == 302 and posted.headers["Location"].endswith(f"/bookings/{booking_id}")
    assert entry_state(entry.id).state is EntryState.ACCEPTED
    left = client.post(f"/waitlist/{waiting.id}/cancel", data={"csrf_token": extract_csrf(page)})
    assert left.status_code == 302 and entry_state(waiting.id).state is EntryState.CANCELLED
