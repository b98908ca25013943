"""No double booking, whatever the concurrency: 64 simultaneous requests on separate connections."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.booking.models import Booking
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import make_app
from tests.factories import PASSWORD
from tests.test_booking_rules import WEEKDAY_HOURS

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

RACERS = 64


def race(app, requests: list[tuple[str, dict]]) -> list[tuple[int, dict]]:
    """Fire every request at once from its own thread (each gets its own database connection)."""
    barrier = threading.Barrier(len(requests))
    results: list[tuple[int, dict] | None] = [None] * len(requests)

    def run(index: int, token: str, body: dict) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post("/api/v1/bookings", json=body, headers={"Authorization": f"Bearer {token}"})
        results[index] = (response.status_code, response.get_json())

    threads = [threading.Thread(target=run, args=(i, t, b)) for i, (t, b) in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results), "a racer did not finish"
    return results  # type: ignore[return-value]


@pytest.fixture
def racers(database_url, many_connections, fake_clock, make_instrument, make_user):
    # A pool large enough that every racer holds its own connection at the same moment.
    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": RACERS + 4, "max_overflow": 0})
    instrument = make_instrument(opening_hours=WEEKDAY_HOURS)
    users = [make_user(Role.ENTERPRISE) for _ in range(RACERS)]
    client = app.test_client()
    tokens = [
        client.post("/api/v1/tokens", json={"username": u.username, "password": PASSWORD}).json["token"]
        for u in users[:10]
    ]
    # The token endpoint is rate limited per address; the rest get tokens straight from the service.
    from portal.accounts.services import issue_api_token

    tokens += [issue_api_token(u)[0] for u in users[10:]]
    yield app, instrument, tokens
    with app.app_context():
        db.engine.dispose()


def slot(instrument, start: datetime, end: datetime) -> dict:
    return {
        "instrument_code": instrument.code,
        "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
        "purpose": "抢",
    }


WEDNESDAY_9 = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)


def test_64_overlapping_requests_exactly_one_wins(racers):
    app, instrument, tokens = racers
    requests = []
    for i, token in enumerate(tokens):
        # Every slot covers 09:30-10:00: it starts at 09:00 or 09:30 and lasts 60 or 90 minutes.
        start = WEDNESDAY_9 + timedelta(minutes=30 * (i % 2))
        end = start + timedelta(minutes=60 + 30 * (i // 2 % 2))
        requests.append((token, slot(instrument, start, end)))
    results = race(app, requests)
    codes = sorted(code for code, _body in results)
    assert codes.count(201) == 1, codes
    assert codes.count(409) == RACERS - 1, codes
    assert all(body["error"]["code"] == "slot_conflict" for code, body in results if code == 409)
    winner = next(body for code, body in results if code == 201)
    # Every refusal names the slot that won.
    for code, body in results:
        if code == 409:
            assert body["error"]["details"]["conflicts"][0]["starts_at"] == winner["starts_at"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Booking)) == 1


def test_adjacent_slots_raced_both_succeed(racers):
    app, instrument, tokens = racers
    requests = [
        (tokens[0], slot(instrument, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))),
        (tokens[1], slot(instrument, WEDNESDAY_9 + timedelta(hours=1), WEDNESDAY_9 + timedelta(hours=2))),
    ]
    results = race(app, requests)
    assert [code for code, _ in results] == [201, 201], results


def test_postgres_itself_refuses_overlapping_holds(app, make_instrument, make_user, make_booking):
    """The exclusion constraint, not the application's check, is what finally guarantees it."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL; SQLite relies on BEGIN IMMEDIATE")
    from sqlalchemy.exc import IntegrityError

    from portal.booking.models import BookingState

    instrument = make_instrument()
    user = make_user()
    make_booking(instrument, user, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))
    with pytest.raises(IntegrityError, match="no_double_booking"):
        make_booking(instrument, user, WEDNESDAY_9 + timedelta(minutes=30), WEDNESDAY_9 + timedelta(hours=2))
    db.session.rollback()
    # Released states and back-to-back slots are not held against each other.
    make_booking(
        instrument, user, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1), state=BookingState.CANCELLED
    )
    make_booking(instrument, user, WEDNESDAY_9 + timedelta(hours=1), WEDNESDAY_9 + timedelta(hours=2))


def test_a_refused_insert_whose_winner_is_not_yet_visible_says_so(
    app, fake_clock, make_instrument, make_user, make_booking, monkeypatch
):
    """A deadlock's loser may find no winner to name: the winner has not committed yet. The calendar
    is made blind here (it sees no booking), so the check passes and the constraint refuses."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL; SQLite relies on BEGIN IMMEDIATE")
    from flask_babel import force_locale

    from portal.booking import requests as booking_requests
    from portal.booking.availability import Calendar
    from portal.booking.models import BookingMode
    from portal.core.errors import SlotConflict

    instrument = make_instrument(opening_hours=WEEKDAY_HOURS)
    user = make_user(Role.ENTERPRISE)
    make_booking(instrument, make_user(Role.ENTERPRISE), WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))
    monkeypatch.setattr(Calendar, "conflicts", lambda self, starts_at, ends_at: [])
    request = booking_requests.BookingRequest(
        mode=BookingMode.SLOT, purpose="抢", starts_at=WEDNESDAY_9, ends_at=WEDNESDAY_9 + timedelta(hours=1)
    )
    with force_locale("en"), pytest.raises(SlotConflict) as refused:
        booking_requests.request_booking(user, instrument.code, request)
    assert (refused.value.message, refused.value.details) == (
        "Another request took this time a moment ago.",
        {"conflicts": []},
    )
    assert db.session.scalar(select(func.count()).select_from(Booking)) == 1
