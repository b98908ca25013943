"""16 recurring bookings racing over the same weeks, each on its own connection (issue 18): no two
holds ever overlap, and each answer says exactly which occurrences it got and which were refused."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.accounts.services import issue_api_token
from portal.booking.models import HOLDING_STATES, Booking, BookingSeries
from portal.booking.recurrence import Repeat, occurrence_times
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import make_app
from tests.test_waitlist_race import _race

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

RACERS = 16
FIRST_MONDAY = date(2026, 12, 14)
LAST_DAY = date(2027, 1, 1)  # three weeks


@pytest.fixture
def racers(database_url, many_connections, fake_clock, make_instrument, make_user):
    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": RACERS + 4, "max_overflow": 0})
    instrument = make_instrument()  # Monday to Friday, 08:30 to 17:30
    users = [make_user(Role.ENTERPRISE) for _ in range(RACERS)]
    tokens = [issue_api_token(u)[0] for u in users]
    yield app, instrument, users, tokens
    with app.app_context():
        db.engine.dispose()


def series_body(code: str, i: int, *, skip: bool) -> dict:
    """Racer i: weekly on two or three weekdays, at 09:00, 09:30 or 10:00 for 60 or 90 minutes, so
    that every racer overlaps several others on most of its days."""
    weekdays = sorted({i % 5, (i + 2) % 5, (i * 3) % 5})
    start = clock.local_datetime_to_utc(FIRST_MONDAY + timedelta(days=weekdays[0]), datetime.min.time())
    start += timedelta(hours=9, minutes=30 * (i % 3))
    end = start + timedelta(minutes=60 + 30 * (i % 2))
    return {
        "instrument_code": code,
        "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
        "repeat": {"every": "week", "weekdays": weekdays, "until": LAST_DAY.isoformat()},
        "skip_conflicts": skip,
        "purpose": f"抢占{i}",
    }


def expected_starts(body: dict) -> list[str]:
    starts_at, ends_at = clock.parse_iso(body["starts_at"]), clock.parse_iso(body["ends_at"])
    repeat = Repeat("week", 1, tuple(body["repeat"]["weekdays"]), until=LAST_DAY)
    return [clock.iso_utc(s) for s, _e in occurrence_times(starts_at, ends_at, repeat, 100)]


def race(app, calls: list[tuple[str, dict]]) -> list[tuple[int, dict]]:
    """POST every (token, body) to /api/v1/booking-series at once, each from its own thread."""
    return _race(app, [("/api/v1/booking-series", token, body) for token, body in calls])


def live_holds(app, instrument_id: int) -> list[Booking]:
    with app.app_context():
        rows = db.session.scalars(
            select(Booking)
            .where(Booking.instrument_id == instrument_id, Booking.state.in_(HOLDING_STATES))
            .order_by(Booking.starts_at)
        ).all()
        db.session.expunge_all()
        return list(rows)


def assert_no_two_overlap(holds: list[Booking]) -> None:
    for earlier, later in itertools.pairwise(holds):  # sorted by start: neighbours tell
        assert earlier.held_until <= later.starts_at, (earlier, later)


def series_rows(app, enterprise_id: int) -> list[tuple[int, list[int]]]:
    """Each series of the enterprise with the ids of its bookings, as the database has them."""
    with app.app_context():
        made = db.session.scalars(
            select(BookingSeries.id).where(BookingSeries.enterprise_id == enterprise_id)
        )
        return [
            (
                s,
                list(
                    db.session.scalars(
                        select(Booking.id).where(Booking.series_id == s).order_by(Booking.starts_at)
                    )
                ),
            )
            for s in made
        ]


def overlaps_a_hold(start: str, body: dict, holds: list[Booking], own: set[int]) -> bool:
    starts_at = clock.parse_iso(start)
    ends_at = starts_at + (clock.parse_iso(body["ends_at"]) - clock.parse_iso(body["starts_at"]))
    return any(h.starts_at < ends_at and starts_at < h.held_until for h in holds if h.id not in own)


def test_16_series_skipping_clashes_each_get_what_they_say_and_no_two_holds_overlap(racers):
    app, instrument, users, tokens = racers
    bodies = [series_body(instrument.code, i, skip=True) for i in range(RACERS)]
    results = race(app, list(zip(tokens, bodies, strict=True)))
    holds = live_holds(app, instrument.id)
    assert_no_two_overlap(holds)
    assert holds, "nobody got anything"
    for user, body, (status, answer) in zip(users, bodies, results, strict=True):
        rows = series_rows(app, user.enterprise_id)
        if status == 409:  # every one of its dates was taken: nothing of it is left behind
            assert answer["error"]["code"] == "series_conflicts"
            assert rows == []
            assert [c["starts_at"] for c in answer["error"]["details"]["conflicts"]] == expected_starts(body)
            continue
        assert status == 201, answer
        booked = [b["starts_at"] for b in answer["bookings"]]
        skipped = [s["starts_at"] for s in answer["skipped"]]
        # Every date of the rule is either booked or refused, and the answer is what was written.
        assert sorted(booked + skipped) == expected_starts(body)
        assert rows == [(answer["id"], [b["id"] for b in answer["bookings"]])]
        assert {b["state"] for b in answer["bookings"]} == {"requested"}
        own = {b["id"] for b in answer["bookings"]}
        # Each refused date is really held by another racer's booking.
        assert {s["conflict"] for s in answer["skipped"]} <= {"slot_conflict"}
        assert all(overlaps_a_hold(start, body, holds, own) for start in skipped), skipped


def test_16_all_or_nothing_series_are_each_booked_whole_or_not_at_all(racers):
    app, instrument, users, tokens = racers
    bodies = [series_body(instrument.code, i, skip=False) for i in range(RACERS)]
    results = race(app, list(zip(tokens, bodies, strict=True)))
    holds = live_holds(app, instrument.id)
    assert_no_two_overlap(holds)
    statuses = [status for status, _answer in results]
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, statuses
    for user, body, (status, answer) in zip(users, bodies, results, strict=True):
        rows = series_rows(app, user.enterprise_id)
        if status == 409:
            assert answer["error"]["code"] == "series_conflicts"
            assert answer["error"]["details"]["conflicts"], "a refusal names what clashed"
            assert rows == []  # not one occurrence of it holds time
            continue
        assert [b["starts_at"] for b in answer["bookings"]] == expected_starts(body)
        assert answer["skipped"] == []
        assert rows == [(answer["id"], [b["id"] for b in answer["bookings"]])]
    assert len(holds) == sum(len(answer["bookings"]) for status, answer in results if status == 201)
