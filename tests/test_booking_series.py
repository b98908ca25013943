"""Recurring bookings (issue 18, deliverable 7): the rule's dates, clashes listed before booking and
skipped or refusing the whole, one notification per series, cancelling this and following or all,
the provider confirming all, and who sees and does what."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.booking import series, settings, transitions
from portal.booking.models import BlackoutKind, Booking, BookingMode, BookingSeries, BookingState
from portal.booking.recurrence import Repeat, occurrence_times
from portal.booking.signals import booking_violation
from portal.core import clock
from portal.core.errors import Forbidden, InvalidTransition, NotFound, SeriesConflicts, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.waitlist import services as waitlist
from tests.test_booking_rules import WEEKDAY_HOURS, bearer

SHANGHAI_OFFSET = timedelta(hours=8)


def at(text: str) -> datetime:
    """'2026-12-09 09:00' Beijing time as aware UTC."""
    local = datetime.fromisoformat(text)
    return clock.local_datetime_to_utc(local.date(), local.time())


def local_texts(times) -> list[str]:
    return [clock.format_local(start) for start, _end in times]


# --- the rule's dates (pure) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "repeat", "dates"),
    [
        # Daily, every other day, three times.
        ("2026-12-09 09:00", Repeat("day", 2, count=3), ["2026-12-09", "2026-12-11", "2026-12-13"]),
        # Daily until a day, inclusive.
        (
            "2026-12-30 09:00",
            Repeat("day", 1, until=date(2027, 1, 1)),
            ["2026-12-30", "2026-12-31", "2027-01-01"],
        ),
        # Weekly on Monday, Wednesday and Friday from a Wednesday: the Monday before is not one.
        (
            "2026-12-09 09:00",
            Repeat("week", 1, (0, 2, 4), count=5),
            ["2026-12-09", "2026-12-11", "2026-12-14", "2026-12-16", "2026-12-18"],
        ),
        # Every other week on Tuesdays and Thursdays, until a Thursday (inclusive).
        (
            "2026-12-08 14:00",
            Repeat("week", 2, (1, 3), until=date(2026, 12, 24)),
            ["2026-12-08", "2026-12-10", "2026-12-22", "2026-12-24"],
        ),
        # Weekly without weekdays: the first occurrence's weekday.
        ("2026-12-11 10:00", Repeat("week", 1, count=3), ["2026-12-11", "2026-12-18", "2026-12-25"]),
        # 07:00 in Beijing is the evening before in UTC: the weekday is Beijing's.
        ("2026-12-07 07:00", Repeat("week", 1, (0,), count=2), ["2026-12-07", "2026-12-14"]),
    ],
)
def test_the_rule_gives_these_dates_at_the_same_beijing_time(first, repeat, dates):
    starts_at = at(first)
    times = occurrence_times(starts_at, starts_at + timedelta(minutes=90), repeat, limit=100)
    assert [clock.format_local(s, "%Y-%m-%d") for s, _e in times] == dates
    assert {clock.format_local(s, "%H:%M") for s, _e in times} == {first[-5:]}
    assert {e - s for s, e in times} == {timedelta(minutes=90)}


def test_the_rule_stops_at_the_limit():
    starts_at = at("2026-12-09 09:00")
    times = occurrence_times(
        starts_at, starts_at + timedelta(hours=1), Repeat("day", until=date(2099, 1, 1)), 101
    )
    assert len(times) == 101


# --- the services --------------------------------------------------------------------------------


@pytest.fixture
def world(app, fake_clock, make_institution, make_instrument, make_user, make_booking):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    return {
        "instrument": instrument,
        "provider": make_user(Role.PROVIDER, institution=host),
        "other_provider": make_user(Role.PROVIDER),
        "enterprise": make_user(Role.ENTERPRISE),
        "other": make_user(Role.ENTERPRISE),
        "reviewer": make_user(Role.REVIEWER),
        "clock": fake_clock,
        "make_booking": make_booking,
    }


WEDNESDAYS = [at(f"2026-12-{d} 09:00") for d in ("09", "16", "23", "30")]


def weekly(
    count: int | None = None, *, skip: bool = False, first: datetime = WEDNESDAYS[0], **repeat
) -> series.SeriesRequest:
    """Wednesdays 09:00-10:00 from 9 December, `count` times (4 unless `repeat` says until when)."""
    if count is None and "until" not in repeat:
        count = 4
    rule = {"every": "week", "count": count, **repeat}
    return series.SeriesRequest(
        starts_at=first,
        ends_at=first + timedelta(hours=1),
        repeat=Repeat(**rule),
        purpose="每周例行检测",
        skip_conflicts=skip,
    )


def clash_on_the_second_and_closure_on_the_third(world) -> None:
    world["make_booking"](
        world["instrument"], world["other"], WEDNESDAYS[1], WEDNESDAYS[1] + timedelta(hours=1)
    )
    settings.add_blackout(
        world["provider"],
        world["instrument"],
        BlackoutKind.CLOSURE,
        WEDNESDAYS[2] - timedelta(hours=1),
        WEDNESDAYS[2] + timedelta(hours=8),
        "冬至检修",
    )


def counts() -> tuple[int, int]:
    db.session.rollback()
    return (
        db.session.scalar(select(func.count()).select_from(BookingSeries)),
        db.session.scalar(select(func.count()).select_from(Booking).where(Booking.series_id.is_not(None))),
    )


def test_the_preview_lists_every_date_and_its_clash_and_writes_nothing(world):
    clash_on_the_second_and_closure_on_the_third(world)
    preview = series.preview_series(world["enterprise"], world["instrument"].code, weekly())
    assert [o.starts_at for o in preview] == WEDNESDAYS
    assert [o.conflict for o in preview] == [None, "slot_conflict", "closed", None]
    assert "冬至检修" not in preview[2].message and preview[2].message  # says closed, not the reason
    assert counts() == (0, 0)


def test_a_clash_refuses_the_whole_series_listing_each_one(world):
    clash_on_the_second_and_closure_on_the_third(world)
    with pytest.raises(SeriesConflicts) as refused:
        series.request_series(world["enterprise"], world["instrument"].code, weekly())
    conflicts = refused.value.details["conflicts"]
    assert [(c["starts_at"], c["conflict"]) for c in conflicts] == [
        (clock.iso_utc(WEDNESDAYS[1]), "slot_conflict"),
        (clock.iso_utc(WEDNESDAYS[2]), "closed"),
    ]
    assert counts() == (0, 0)  # nothing booked, not even the free Wednesdays
    assert not db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("series.%"))
    )


def test_skipping_books_the_others_each_an_ordinary_request(world):
    clash_on_the_second_and_closure_on_the_third(world)
    made = series.request_series(world["enterprise"], world["instrument"].code, weekly(skip=True))
    shown = series.get_series(world["enterprise"], made.id)
    assert [b.starts_at for b in shown.bookings] == [WEDNESDAYS[0], WEDNESDAYS[3]]
    assert {(b.state, b.mode, b.operation, b.purpose) for b in shown.bookings} == {
        (BookingState.REQUESTED, BookingMode.SLOT, "self", "每周例行检测")
    }
    assert [(s["starts_at"], s["conflict"]) for s in shown.skipped] == [
        (clock.iso_utc(WEDNESDAYS[1]), "slot_conflict"),
        (clock.iso_utc(WEDNESDAYS[2]), "closed"),
    ]
    # Each occurrence has its own audit row, the series one more.
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("booking.requested") == 2 and actions.count("series.requested") == 1
    # An occurrence's row names its series (place_request's mutant 84 dropped the key).
    rows = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "booking.requested")).all()
    assert [(row.object_id, row.after["series"]) for row in rows] == [
        (str(b.id), made.id) for b in shown.bookings
    ]
    # The provider hears of it once, not once per occurrence.
    told = db.session.execute(select(Notification.recipient_id, Notification.kind)).all()
    assert told == [(world["provider"].id, "series.requested")]
    # Each occurrence is an ordinary booking: the provider confirms or declines it like any other.
    transitions.reject_booking(world["provider"], shown.bookings[1].id, "那天设备外借")


def test_series_rules_that_hold_for_every_occurrence_refuse_it_with_422(world):
    enterprise, code = world["enterprise"], world["instrument"].code
    cases = [
        (weekly(weekdays=(0, 4)), "repeat"),  # a Wednesday start is not among Monday and Friday
        (weekly(count=2, until=date(2026, 12, 30)), "repeat"),  # both until and count
        (weekly(count=1), "repeat"),  # a series repeats
        (weekly(until=date(2026, 12, 1)), "repeat"),  # ends before it starts
        (weekly(count=20), "repeat"),  # beyond the 60 days ahead
        (
            series.SeriesRequest(
                WEDNESDAYS[0], WEDNESDAYS[0] + timedelta(hours=1), Repeat("day", weekdays=(2,), count=3)
            ),
            "repeat",
        ),
        (weekly(first=WEDNESDAYS[0] + timedelta(minutes=10)), "starts_at"),  # off the 30-minute grid
    ]
    for request, field in cases:
        with pytest.raises(ValidationFailed) as refused:
            series.request_series(enterprise, code, request)
        assert field in refused.value.fields, (request, refused.value.fields)
    assert counts() == (0, 0)


def test_a_daily_series_skips_the_weekend_as_outside_the_opening_hours(world):
    friday = at("2026-12-11 14:00")
    request = series.SeriesRequest(
        friday, friday + timedelta(hours=2), Repeat("day", count=4), purpose="连续测试", skip_conflicts=True
    )
    made = series.request_series(world["enterprise"], world["instrument"].code, request)
    assert [clock.format_local(b.starts_at, "%a") for b in made.bookings] == ["Fri", "Mon"]
    assert [s["conflict"] for s in made.skipped] == ["outside_open_hours"] * 2


def test_time_offered_from_the_waitlist_is_skipped_as_slot_offered(world, make_user):
    second = (WEDNESDAYS[1], WEDNESDAYS[1] + timedelta(hours=1))
    held = world["make_booking"](world["instrument"], world["other"], *second, state=BookingState.CONFIRMED)
    waitlist.join_waitlist(make_user(Role.ENTERPRISE), world["instrument"].code, *second)
    transitions.cancel_booking(world["other"], held.id, "改期")  # offered to the one waiting
    made = series.request_series(world["enterprise"], world["instrument"].code, weekly(skip=True))
    assert [(s["starts_at"], s["conflict"]) for s in made.skipped] == [
        (clock.iso_utc(second[0]), "slot_offered")
    ]
    assert len(made.bookings) == 3


def test_a_suspended_enterprise_gets_409_suspended_before_anything(world, make_booking):
    for hours in (30, 20, 10):
        missed = make_booking(
            world["instrument"],
            world["enterprise"],
            world["clock"]() - timedelta(hours=hours + 1),
            world["clock"]() - timedelta(hours=hours),
            state=BookingState.NO_SHOW,
        )
        booking_violation.send(missed, kind="no_show", at=world["clock"]() - timedelta(hours=hours))
    db.session.commit()
    for call in (series.preview_series, series.request_series):
        with pytest.raises(Exception) as refused:
            call(world["enterprise"], world["instrument"].code, weekly())
        assert getattr(refused.value, "code", None) == "suspended"
    assert counts() == (0, 0)


def booked_series(world, count: int | None = None) -> BookingSeries:
    return series.request_series(world["enterprise"], world["instrument"].code, weekly(count))


def states(series_id: int) -> list[str]:
    db.session.rollback()
    rows = db.session.scalars(
        select(Booking).where(Booking.series_id == series_id).order_by(Booking.starts_at)
    )
    return [b.state.value for b in rows]


def test_cancelling_this_and_following_leaves_the_earlier_ones(world):
    made = booked_series(world)
    ids = [b.id for b in made.bookings]
    db.session.query(Notification).delete()
    db.session.commit()
    after = series.cancel_series(world["enterprise"], made.id, from_booking_id=ids[1], reason="项目提前结束")
    assert [b.state for b in after.bookings] == [BookingState.REQUESTED] + [BookingState.CANCELLED] * 3
    assert states(made.id) == ["requested", "cancelled", "cancelled", "cancelled"]
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "series.cancelled")).all()
    assert len(events) == 1 and events[0].after["bookings"] == ids[1:] and events[0].reason == "项目提前结束"
    cancelled = db.session.scalars(
        select(AuditEvent.object_id).where(AuditEvent.action == "booking.cancelled").order_by(AuditEvent.id)
    ).all()
    assert cancelled == [str(i) for i in ids[1:]]
    told = db.session.execute(select(Notification.recipient_id, Notification.kind)).all()
    assert told == [(world["provider"].id, "series.cancelled")]
    # Cancelling all now leaves only the first; nothing at all is left after that.
    series.cancel_series(world["enterprise"], made.id)
    assert states(made.id) == ["cancelled"] * 4
    with pytest.raises(InvalidTransition):
        series.cancel_series(world["enterprise"], made.id)


def test_one_occurrence_alone_is_the_ordinary_booking_cancel(world):
    made = booked_series(world)
    transitions.cancel_booking(world["enterprise"], made.bookings[2].id, None)
    assert states(made.id) == ["requested", "requested", "cancelled", "requested"]


def test_the_enterprise_cannot_cancel_an_occurrence_past_its_cut_off_online(world):
    made = booked_series(world)
    ids = [b.id for b in made.bookings]
    series.confirm_series(world["provider"], made.id)
    world["clock"].set(WEDNESDAYS[0] - timedelta(hours=20))  # inside the 24-hour cut-off of the first
    with pytest.raises(InvalidTransition) as refused:
        series.cancel_series(world["enterprise"], made.id)
    assert refused.value.details == {"rule": "cancel_cutoff", "booking_ids": [ids[0]]}
    assert states(made.id) == ["confirmed"] * 4  # all or nothing
    series.cancel_series(world["enterprise"], made.id, from_booking_id=ids[1])
    assert states(made.id) == ["confirmed", "cancelled", "cancelled", "cancelled"]


def test_the_provider_cancels_with_a_reason_and_the_enterprise_hears_once(world):
    made = booked_series(world)
    with pytest.raises(ValidationFailed):
        series.cancel_series(world["provider"], made.id, reason="  ")
    db.session.query(Notification).delete()
    db.session.commit()
    series.cancel_series(world["provider"], made.id, reason="仪器返厂维修")
    assert states(made.id) == ["cancelled"] * 4
    told = {kind for (kind,) in db.session.execute(select(Notification.kind))}
    assert told == {"series.cancelled"}
    assert {r for (r,) in db.session.execute(select(Notification.recipient_id))} == {world["enterprise"].id}


def test_the_provider_confirms_all_and_the_enterprise_hears_once(world):
    made = booked_series(world)
    transitions.cancel_booking(world["enterprise"], made.bookings[3].id, None)
    series.confirm_series(world["provider"], made.id)
    assert states(made.id) == ["confirmed", "confirmed", "confirmed", "cancelled"]
    assert (
        db.session.scalar(
            select(func.count()).select_from(Notification).where(Notification.kind == "series.confirmed")
        )
        == 1
    )
    with pytest.raises(InvalidTransition):
        series.confirm_series(world["provider"], made.id)


def test_unanswered_occurrences_expire_together_and_the_enterprise_hears_once(world):
    made = booked_series(world)
    later = WEDNESDAYS[0] + timedelta(hours=5)
    single = world["make_booking"](
        world["instrument"], world["enterprise"], later, later + timedelta(hours=1)
    )
    db.session.query(Notification).delete()
    db.session.commit()
    world["clock"].advance(hours=73)  # past the 72 hours a request waits for an answer
    assert transitions.expire_unanswered() == 5
    assert states(made.id) == ["expired"] * 4
    kinds = sorted(kind for (kind,) in db.session.execute(select(Notification.kind)))
    assert kinds == ["booking.expired", "series.expired"]  # the single booking's, and one for the series
    assert single.id not in {b.id for b in series.get_series(world["enterprise"], made.id).bookings}


def test_who_sees_and_who_changes_a_series(world):
    made = booked_series(world)
    for user in ("enterprise", "provider", "reviewer"):
        assert series.get_series(world[user], made.id).id == made.id
    for user in ("other", "other_provider"):
        with pytest.raises(NotFound):
            series.get_series(world[user], made.id)
        with pytest.raises(NotFound):
            series.cancel_series(world[user], made.id, reason="无关")
    with pytest.raises(Forbidden):
        series.cancel_series(world["reviewer"], made.id, reason="局方")
    with pytest.raises(Forbidden):
        series.confirm_series(world["enterprise"], made.id)
    with pytest.raises(ValidationFailed):  # an occurrence of another series
        other = series.request_series(
            world["enterprise"], world["instrument"].code, weekly(first=WEDNESDAYS[0] + timedelta(hours=2))
        )
        series.cancel_series(world["enterprise"], made.id, from_booking_id=other.bookings[0].id)
    assert states(made.id) == ["requested"] * 4


# --- the API -------------------------------------------------------------------------------------


def body(world, **changes) -> dict:
    return {
        "instrument_code": world["instrument"].code,
        "starts_at": "2026-12-09T09:00:00+08:00",
        "ends_at": "2026-12-09T10:00:00+08:00",
        "repeat": {"every": "week", "interval": 1, "weekdays": [2], "count": 4},
        "purpose": "每周例行检测",
        **changes,
    }


def test_the_api_lists_clashes_skips_them_and_cancels_this_and_following(client, world):
    clash_on_the_second_and_closure_on_the_third(world)
    headers = bearer(client, world["enterprise"])
    preview = client.post("/api/v1/booking-series/preview", json=body(world), headers=headers)
    assert preview.status_code == 200, preview.json
    assert [o["conflict"] for o in preview.json["occurrences"]] == [None, "slot_conflict", "closed", None]
    refused = client.post("/api/v1/booking-series", json=body(world), headers=headers)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "series_conflicts"
    assert [c["conflict"] for c in refused.json["error"]["details"]["conflicts"]] == [
        "slot_conflict",
        "closed",
    ]
    made = client.post("/api/v1/booking-series", json=body(world, skip_conflicts=True), headers=headers)
    assert made.status_code == 201, made.json
    assert [b["starts_at"] for b in made.json["bookings"]] == ["2026-12-09T01:00:00Z", "2026-12-30T01:00:00Z"]
    assert {b["series_id"] for b in made.json["bookings"]} == {made.json["id"]}
    assert [(s["starts_at"], s["conflict"]) for s in made.json["skipped"]] == [
        ("2026-12-16T01:00:00Z", "slot_conflict"),
        ("2026-12-23T01:00:00Z", "closed"),
    ]
    assert made.json["repeat"] == {"every": "week", "interval": 1, "weekdays": [2], "until": None, "count": 4}
    last = made.json["bookings"][1]["id"]
    one = client.get(f"/api/v1/bookings/{last}", headers=headers)
    assert one.json["series_id"] == made.json["id"]
    cancelled = client.post(
        f"/api/v1/booking-series/{made.json['id']}/cancel", json={"from_booking_id": last}, headers=headers
    )
    assert cancelled.status_code == 200, cancelled.json
    assert [b["state"] for b in cancelled.json["bookings"]] == ["requested", "cancelled"]
    shown = client.get(f"/api/v1/booking-series/{made.json['id']}", headers=headers)
    assert shown.json == cancelled.json


def test_the_api_refuses_an_inconsistent_rule_naming_repeat(client, world):
    headers = bearer(client, world["enterprise"])
    for repeat in (
        {"every": "week", "weekdays": [2], "count": 3, "until": "2026-12-30"},
        {"every": "week", "weekdays": [2]},
        {"every": "day", "weekdays": [2], "count": 3},
        {"every": "week", "weekdays": [0], "count": 3},
    ):
        answer = client.post("/api/v1/booking-series", json=body(world, repeat=repeat), headers=headers)
        assert answer.status_code == 422, (repeat, answer.json)
        assert set(answer.json["error"]["details"]["fields"]) == {"repeat"}
    too_many = client.post(
        "/api/v1/booking-series", json=body(world, repeat={"every": "day", "count": 101}), headers=headers
    )
    assert too_many.status_code == 422 and "repeat" in too_many.json["error"]["details"]["fields"]
    assert counts() == (0, 0)
