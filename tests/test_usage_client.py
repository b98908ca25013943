"""The reference client of an instrument's PC (portal/usage/client.py) against a real served portal:
a login sent at once, an outage during which the logout is queued (with a resend of the login whose
answer was lost), and the queue sent when the portal is back. Exactly one session results."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from portal.booking.models import BookingState
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage import devices
from portal.usage.models import UsageEvent, UsageSession, UsageSource

CLIENT = Path(__file__).resolve().parent.parent / "portal" / "usage" / "client.py"


@contextmanager
def serving(app, port: int = 0) -> Iterator[int]:
    """The app on a real HTTP server in a background thread, on `port` (0: a free one)."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def run_client(port: int, code: str, key: str, queue: Path, action: str, username: str) -> str:
    """The client as the PC's login script runs it: a separate Python process."""
    done = subprocess.run(
        [
            sys.executable,
            str(CLIENT),
            action,
            "--portal",
            f"http://127.0.0.1:{port}",
            "--instrument",
            code,
            "--key",
            key,
            "--queue",
            str(queue),
            "--username",
            username,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,  # exit 0 even while the portal is away
    )
    return done.stdout.strip()


@pytest.fixture
def pc(app, make_instrument, make_user, make_booking, make_institution, tmp_path):
    host = make_institution()
    instrument = make_instrument(institution=host)
    user = make_user(Role.ENTERPRISE)
    now = clock.utcnow()  # the client stamps events with the real time
    booking = make_booking(
        instrument, user, now - timedelta(minutes=5), now + timedelta(hours=1), state=BookingState.CONFIRMED
    )
    _row, key = devices.create_device_key(make_user(Role.PROVIDER, institution=host), instrument.code, "PC-1")
    return {
        "code": instrument.code,
        "key": key,
        "user": user,
        "booking": booking,
        "queue": tmp_path / "q.jsonl",
    }


def test_start_outage_with_queued_events_and_stop_make_one_session(app, pc):
    code, key, queue, name = pc["code"], pc["key"], pc["queue"], pc["user"].username
    with serving(app) as port:
        assert run_client(port, code, key, queue, "start", name) == "usage client: 1 sent, 0 queued"
    db.session.rollback()
    start = db.session.scalars(select(UsageEvent)).one()
    # The portal is down: the logout is queued, and so is a resend of the login (its answer was lost).
    assert run_client(port, code, key, queue, "stop", name) == "usage client: 0 sent, 1 queued"
    assert run_client(port, code, key, queue, "flush", name) == "usage client: 0 sent, 1 queued"
    resend = {
        "event": "start",
        "at": start.at.isoformat(),
        "username": name,
        "idempotency_key": start.idempotency_key,
    }
    queued = [resend, *(json.loads(line) for line in queue.read_text().splitlines())]
    queue.write_text("".join(json.dumps(e) + "\n" for e in queued))
    with serving(app, port):  # back, at the same address
        assert run_client(port, code, key, queue, "flush", name) == "usage client: 2 sent, 0 queued"
    assert queue.read_text() == ""
    db.session.rollback()
    [session] = db.session.scalars(select(UsageSession)).all()
    stop = db.session.scalars(select(UsageEvent).where(UsageEvent.event == "stop")).one()
    assert (session.booking_id, session.source, session.user_id) == (
        pc["booking"].id,
        UsageSource.DEVICE,
        pc["user"].id,
    )
    assert (session.started_at, session.ended_at) == (start.at, stop.at)
    assert db.session.scalar(select(func.count()).select_from(UsageEvent)) == 2


def test_an_event_the_portal_refuses_for_good_leaves_the_queue(app, pc):
    with serving(app) as port:
        out = run_client(port, pc["code"], "dk_revoked-or-wrong", pc["queue"], "start", "x")
    assert out == "usage client: 0 sent, 0 queued"  # 401 will never work: dropped, said on stderr
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(UsageSession)) == 0
