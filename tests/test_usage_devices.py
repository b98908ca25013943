"""Device keys and the usage events of instrument PCs (issue 18, part 2), on both backends: keys shown
once and stored hashed, revoked keys refused, events matched to the booking of their moment,
duplicated events changing nothing (also sent at once from separate connections), unbooked use told
to the instrument's providers, a stop after the session's automatic end."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.booking.models import BookingState
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import Notification
from portal.usage import services
from portal.usage.models import DeviceKey, UsageEvent, UsageSession, UsageSource
from tests.conftest import MONDAY_9AM, make_app
from tests.factories import login
from tests.test_booking_rules import bearer

START = MONDAY_9AM + timedelta(hours=1)
END = START + timedelta(hours=2)


@pytest.fixture
def lab(app, client, fake_clock, make_instrument, make_user, make_booking, make_institution):
    host = make_institution()
    instrument = make_instrument(institution=host)
    user = make_user(Role.ENTERPRISE)
    provider = make_user(Role.PROVIDER, institution=host)
    booking = make_booking(instrument, user, START, END, state=BookingState.CONFIRMED)
    made = client.post(
        f"/api/v1/instruments/{instrument.code}/device-keys",
        json={"label": "XRD 工作站"},
        headers=bearer(client, provider),
    )
    assert made.status_code == 201, made.json
    return {
        "instrument": instrument,
        "user": user,
        "provider": provider,
        "booking": booking,
        "key": made.json["key"],
        "key_id": made.json["id"],
        "clock": fake_clock,
    }


def post_event(client, lab, event: str, at, key: str | None = None, username: str | None = None, idem=None):
    body = {
        "event": event,
        "at": at.isoformat(),
        "username": lab["user"].username if username is None else username,
        "idempotency_key": idem or f"{event}-{at.isoformat()}",
    }
    return client.post(
        f"/api/v1/instruments/{lab['instrument'].code}/usage-events",
        json=body,
        headers={"Authorization": f"Device {key or lab['key']}"},
    )


def sessions() -> list[UsageSession]:
    db.session.rollback()  # a fresh transaction: what the requests committed (SQLite keeps a snapshot)
    return list(db.session.scalars(select(UsageSession).order_by(UsageSession.id)))


# --- keys --------------------------------------------------------------------------------------------


def test_a_key_is_shown_once_and_stored_only_as_its_hash(lab, client):
    row = db.session.get(DeviceKey, lab["key_id"])
    assert row.key_hash == hashlib.sha256(lab["key"].encode()).hexdigest()
    assert lab["key"] not in (row.prefix, row.label) and lab["key"].startswith(row.prefix)
    audit = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "instrument.device_key_created")
    ).one()
    assert lab["key"] not in str(audit.after)
    login(client, lab["provider"].username)
    page = client.get(f"/manage/instruments/{lab['instrument'].code}/usage").get_data(as_text=True)
    assert row.prefix in page and lab["key"] not in page


def test_only_the_instruments_own_providers_make_and_revoke_keys(lab, client, make_user):
    code = lab["instrument"].code
    stranger = bearer(client, make_user(Role.PROVIDER))
    assert client.post(f"/api/v1/instruments/{code}/device-keys", headers=stranger).status_code == 404
    assert (
        client.delete(f"/api/v1/instruments/{code}/device-keys/{lab['key_id']}", headers=stranger).status_code
        == 404
    )
    enterprise = bearer(client, lab["user"])
    assert client.post(f"/api/v1/instruments/{code}/device-keys", headers=enterprise).status_code == 403
    assert db.session.scalar(select(func.count()).select_from(DeviceKey)) == 1


def test_a_revoked_or_foreign_key_and_a_bearer_token_are_refused(lab, client, make_instrument):
    lab["clock"].set(START)
    other = make_instrument()
    foreign = client.post(
        f"/api/v1/instruments/{other.code}/usage-events",
        json={"event": "start", "at": START.isoformat(), "idempotency_key": "k1"},
        headers={"Authorization": f"Device {lab['key']}"},
    )
    assert (foreign.status_code, foreign.json["error"]["code"]) == (401, "unauthorized")
    assert post_event(client, lab, "start", START, key="dk_not-a-key").status_code == 401
    token = client.post(
        f"/api/v1/instruments/{lab['instrument'].code}/usage-events",
        json={"event": "start", "at": START.isoformat(), "idempotency_key": "k2"},
        headers=bearer(client, lab["provider"]),
    )
    assert token.status_code == 401
    provider = bearer(client, lab["provider"])
    url = f"/api/v1/instruments/{lab['instrument'].code}/device-keys/{lab['key_id']}"
    assert client.delete(url, headers=provider).status_code == 204
    assert client.delete(url, headers=provider).status_code == 204  # again: no change
    assert post_event(client, lab, "start", START).status_code == 401
    assert sessions() == []
    revoked = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "instrument.device_key_revoked")
    )
    assert len(list(revoked)) == 1


# --- events -----------------------------------------------------------------------------------------


def test_a_start_and_a_stop_make_one_session_of_the_booking_and_repeats_change_nothing(lab, client):
    booking = lab["booking"]
    first = post_event(client, lab, "start", START - timedelta(minutes=5))
    assert first.status_code == 202, first.json
    assert first.json["booking_id"] == booking.id
    again = post_event(client, lab, "start", START - timedelta(minutes=5))
    assert again.status_code == 202 and again.json == first.json
    stop = post_event(client, lab, "stop", END + timedelta(minutes=12))
    assert stop.json == first.json
    assert post_event(client, lab, "stop", END + timedelta(minutes=12)).json == first.json
    [session] = sessions()
    assert (session.source, session.booking_id, session.user_id) == (
        UsageSource.DEVICE,
        booking.id,
        lab["user"].id,
    )
    assert (session.started_at, session.ended_at, session.overtime_minutes) == (
        START - timedelta(minutes=5),
        END + timedelta(minutes=12),
        12,
    )
    assert db.session.scalar(select(func.count()).select_from(UsageEvent)) == 2
    assert services.usage_of([booking.id])[booking.id].used_minutes == 137


def test_the_database_refuses_an_event_twice(lab, client):
    post_event(client, lab, "start", START, idem="same")
    db.session.add(
        UsageEvent(
            instrument_id=lab["instrument"].id,
            device_key_id=lab["key_id"],
            idempotency_key="same",
            event="stop",
            at=END,
            username="x",
        )
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_a_start_while_checked_in_by_qr_joins_that_session(lab, client):
    lab["clock"].set(START)
    services.check_in(lab["user"], lab["booking"].id)
    post_event(client, lab, "start", START + timedelta(minutes=1))
    post_event(client, lab, "stop", START + timedelta(minutes=50))
    [session] = sessions()
    assert (session.source, session.ended_by, session.ended_at) == (
        UsageSource.QR,
        "device",
        START + timedelta(minutes=50),
    )


def test_a_stop_after_the_automatic_end_moves_the_end_to_the_real_one(lab, client):
    post_event(client, lab, "start", START)
    lab["clock"].set(END + timedelta(minutes=5))
    assert services.close_ended_sessions() == 1
    post_event(client, lab, "stop", END + timedelta(minutes=20))
    [session] = sessions()
    assert (session.ended_at, session.ended_by, session.overtime_minutes) == (
        END + timedelta(minutes=20),
        "device",
        20,
    )


def test_use_without_a_booking_is_told_to_the_instruments_providers(lab, client, make_user, make_institution):
    colleague = make_user(Role.PROVIDER, institution=lab["instrument"].institution)
    outsider = make_user(Role.PROVIDER, institution=make_institution())
    evening = END + timedelta(hours=3)
    answer = post_event(client, lab, "start", evening, username="lab-pc-guest")
    assert answer.status_code == 202 and answer.json["booking_id"] is None
    [session] = sessions()
    assert (session.booking_id, session.user_id, session.reported_username) == (None, None, "lab-pc-guest")
    told = set(
        db.session.scalars(select(Notification.recipient_id).where(Notification.kind == "usage.unbooked"))
    )
    assert told == {lab["provider"].id, colleague.id} and outsider.id not in told
    post_event(client, lab, "stop", evening + timedelta(minutes=30), username="lab-pc-guest")
    assert sessions()[0].ended_at == evening + timedelta(minutes=30)
    # Another enterprise's user during the booking is unbooked use too.
    stranger = make_user(Role.ENTERPRISE)
    other = post_event(client, lab, "start", START + timedelta(minutes=5), username=stranger.username)
    assert other.json["booking_id"] is None


def test_the_same_event_sent_at_once_on_separate_connections_counts_once(lab, database_url, many_connections):
    racers = 8
    app = make_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": racers + 2, "max_overflow": 0})
    barrier = threading.Barrier(racers)
    answers: list[int] = []
    # Plain values: the threads have no app context to load the rows' attributes in.
    plain = {
        "instrument": SimpleNamespace(code=lab["instrument"].code),
        "user": SimpleNamespace(username=lab["user"].username),
        "key": lab["key"],
    }

    def run() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(post_event(client, plain, "start", START, idem="once").status_code)

    threads = [threading.Thread(target=run) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with app.app_context():
        db.engine.dispose()
    assert answers == [202] * racers
    assert len(sessions()) == 1
    assert db.session.scalar(select(func.count()).select_from(UsageEvent)) == 1
