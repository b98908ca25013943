"""A freed slot is the offered enterprise's until its offer ends, whatever the concurrency (issue 18):
32 enterprises ask for it on separate connections at the moment it is freed and offered."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.accounts.services import issue_api_token
from portal.booking.models import Booking, BookingState
from portal.core.permissions import Role
from portal.extensions import db
from portal.waitlist import offers, services
from portal.waitlist.models import EntryState, WaitlistEntry
from tests.conftest import make_app
from tests.test_booking_concurrency import WEDNESDAY_9, slot
from tests.test_booking_rules import WEEKDAY_HOURS

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

RACERS = 32


@pytest.fixture
def line(
    database_url, many_connections, fake_clock, make_institution, make_instrument, make_user, make_booking
):
    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": RACERS + 6, "max_overflow": 0})
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    provider = make_user(Role.PROVIDER, institution=host)
    holder, waiting = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    held = make_booking(
        instrument, holder, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1), state=BookingState.CONFIRMED
    )
    entry = services.join_waitlist(waiting, instrument.code, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))
    racers = [make_user(Role.ENTERPRISE) for _ in range(RACERS)]
    tokens = {
        "provider": issue_api_token(provider)[0],
        "waiting": issue_api_token(waiting)[0],
        "racers": [issue_api_token(u)[0] for u in racers],
    }
    yield app, instrument, held.id, entry.id, tokens
    with app.app_context():
        db.engine.dispose()


def _race(app, calls: list[tuple[str, str, dict]]) -> list[tuple[int, dict]]:
    """POST every (path, token, body) at once, each from its own thread and database connection."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[int, dict] | None] = [None] * len(calls)

    def run(index: int, path: str, token: str, body: dict) -> None:
        client = app.test_client()
        barrier.wait()
        answer = client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        results[index] = (answer.status_code, answer.get_json())

    threads = [threading.Thread(target=run, args=(i, *call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(r is not None for r in results), "a racer did not finish"
    return results  # type: ignore[return-value]


def test_32_enterprises_racing_the_freed_slot_never_take_it_from_the_offered_one(line):
    app, instrument, held_id, entry_id, tokens = line
    wanted = slot(instrument, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))
    cancel = (f"/api/v1/bookings/{held_id}/cancel", tokens["provider"], {"reason": "企业来电改期"})
    racers = [("/api/v1/bookings", token, wanted) for token in tokens["racers"]]
    results = _race(app, [cancel, *racers])
    assert results[0][0] == 200, results[0]
    codes = [code for code, _body in results[1:]]
    assert codes == [409] * RACERS, codes
    # Before the cancellation committed the slot was booked; after it, offered: never free.
    assert {body["error"]["code"] for _code, body in results[1:]} <= {"slot_conflict", "slot_offered"}
    with app.app_context():
        entry = db.session.get_one(WaitlistEntry, entry_id)
        assert entry.state is EntryState.OFFERED
        live = db.session.scalar(
            select(func.count())
            .select_from(Booking)
            .where(Booking.instrument_id == instrument.id, Booking.state.in_(["requested", "confirmed"]))
        )
        assert live == 1  # the offer alone holds the time
    # Asked again while the offer is open: slot_offered for everyone but the offered enterprise.
    again = _race(app, racers)
    assert {(code, body["error"]["code"]) for code, body in again} == {(409, "slot_offered")}
    accepted = app.test_client().post(
        f"/api/v1/waitlist/{entry_id}/accept", headers={"Authorization": f"Bearer {tokens['waiting']}"}
    )
    assert accepted.status_code == 201, accepted.get_json()


def test_after_the_window_the_racers_compete_as_usual_and_one_wins(line, fake_clock):
    app, instrument, held_id, _entry_id, tokens = line
    client = app.test_client()
    cancelled = client.post(
        f"/api/v1/bookings/{held_id}/cancel",
        json={"reason": "企业来电改期"},
        headers={"Authorization": f"Bearer {tokens['provider']}"},
    )
    assert cancelled.status_code == 200
    fake_clock.advance(hours=2)
    with app.app_context():
        assert offers.lapse_offers() == 1
    wanted = slot(instrument, WEDNESDAY_9, WEDNESDAY_9 + timedelta(hours=1))
    results = _race(app, [("/api/v1/bookings", token, wanted) for token in tokens["racers"]])
    codes = sorted(code for code, _body in results)
    assert codes.count(201) == 1 and codes.count(409) == RACERS - 1, codes
    assert {body["error"]["code"] for code, body in results if code == 409} == {"slot_conflict"}
