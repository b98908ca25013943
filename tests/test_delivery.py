"""Exactly-once e-mail delivery against real services.

Each test gets a PostgreSQL database of its own, a private redis-server on a free port, a loopback SMTP
server (aiosmtpd, in this process) and real `celery -A celery_worker worker` processes running the
production profile. Approvals are made in this process through the services, so `notify()` writes the
outbox and queues the deliveries exactly as a web request does. A stand-in for `celery beat` publishes
the `notifications.sweep` task twice a second instead of once a minute; everything else is the
production machinery with shorter timings (SETTINGS).

The SMTP server counts a message as delivered only when it answered 250, and the tests count the
delivered messages per Message-ID.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from portal.accounts.models import User
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.models import EmailState, Notification
from portal.notifications.services import notify
from portal.vouchers import claims, review
from portal.vouchers.models import Claim, ClaimState
from tests.conftest import make_app
from tests.factories import extract_csrf, login
from tests.services_runner import (
    CeleryWorker,
    RedisServer,
    SmtpSink,
    SweepBeat,
    time_limit,
    wait_for,
    worker_env,
)

# The private PostgreSQL database and redis-server fixtures (`database`, `redis_server`).
pytest_plugins = ["tests.private_services"]

# Short timings, the same for the workers (environment) and this process (app config).
SETTINGS = {
    "NOTIFY_LOCK_SECONDS": 4,
    "NOTIFY_MAX_ATTEMPTS": 3,
    "NOTIFY_RETRY_BACKOFF_SECONDS": 1,
    "NOTIFY_SWEEP_GRACE_SECONDS": 1,
    "CELERY_VISIBILITY_TIMEOUT": 2,
    "MAIL_TIMEOUT": 10,
}
SWEEP_EVERY = 0.5


# --- the services --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def time_limit_90s() -> Iterator[None]:
    """Fail a test (fixtures included) that takes over 90 s instead of hanging the suite."""
    with time_limit(90):
        yield


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def app(database: str, redis_server: RedisServer, smtp: SmtpSink) -> Iterator[Flask]:
    """This process's app (overrides conftest's): the factories build rows through it, and its
    `notify()` queues deliveries to the private Redis."""
    app = make_app(
        database,
        REDIS_URL=redis_server.url,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp.port,
        **SETTINGS,
    )
    try:
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        app.extensions["celery"].close()


@pytest.fixture
def start_worker(
    database: str, redis_server: RedisServer, smtp: SmtpSink, tmp_path: Path
) -> Iterator[Callable[..., CeleryWorker]]:
    """Start a production worker (waits until it is ready); all are stopped after the test."""
    workers: list[CeleryWorker] = []
    env = worker_env(
        SECRET_KEY="delivery-test-secret",
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp.port,
        **SETTINGS,
    )

    def start(concurrency: int = 1) -> CeleryWorker:
        name = f"delivery{len(workers) + 1}-{os.getpid()}"
        worker = CeleryWorker(name, env, tmp_path / f"{name}.log", concurrency=concurrency)
        workers.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:  # shown by pytest when the test failed
            print(f"----- {worker.name} -----\n{worker.output()[-6000:]}")


@pytest.fixture
def beat(app: Flask) -> Iterator[SweepBeat]:
    stand_in = SweepBeat(app.config["CELERY"], SWEEP_EVERY).start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


# --- the data ------------------------------------------------------------------------------------


@pytest.fixture
def approvable(app, make_scheme, make_user, make_voucher, make_service) -> Callable[..., tuple]:
    """make(users=1) -> (claim, users): a submitted claim, ready for approval, of a new enterprise with
    that many users (all are notified)."""
    today = clock.local_today()
    scheme = make_scheme(
        year=today.year,
        service_window_start=today - timedelta(days=90),
        service_window_end=today + timedelta(days=90),
    )
    service_start = (clock.utcnow() - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)

    def make(users: int = 1) -> tuple[Claim, list[User]]:
        first = make_user(Role.ENTERPRISE)
        team = [first, *(make_user(Role.ENTERPRISE, enterprise=first.enterprise) for _ in range(users - 1))]
        voucher = make_voucher(first, scheme, 100_000_00, valid_until=today + timedelta(days=180))
        record = make_service(first, 10_000_00, starts_at=service_start)
        claim = claims.submit_claim(first, claims.create_claim(first, voucher.id, [record.id]).id)
        return claim, team

    return make


def approval_mails(claim_id: int) -> list[Notification]:
    """The claim's approval notifications, read afresh from the database."""
    db.session.rollback()
    return list(
        db.session.scalars(
            select(Notification)
            .where(Notification.dedup_key.like(f"claim:{claim_id}:approved:%"))
            .order_by(Notification.id)
        )
    )


def fresh(ids: list[int]) -> list[Notification]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification).where(Notification.id.in_(ids)).order_by("id")))


def all_in(ids: list[int], state: EmailState) -> bool:
    return all(n.email_state is state for n in fresh(ids))


def settle(beat: SweepBeat, redis_server: RedisServer, quiet: float = 1.0, timeout: float = 20) -> None:
    """Stop the sweeps and wait until no task is queued or running for `quiet` seconds."""
    beat.stop()
    calm_since: list[float] = []

    def calm() -> bool:
        if redis_server.backlog():
            calm_since.clear()
            return False
        calm_since[:] = calm_since or [time.monotonic()]
        return time.monotonic() - calm_since[0] >= quiet

    wait_for(calm, timeout, "the broker's queue to drain")


def expected_message_id(notification: Notification) -> str:
    return f"<notification-{notification.id}@liaocheng-portal>"


# --- the tests -----------------------------------------------------------------------------------


def test_an_approval_mails_each_user_of_the_enterprise_exactly_once(
    app, smtp, redis_server, start_worker, beat, approvable, make_user
):
    start_worker()
    claim, team = approvable(users=2)
    reviewer = make_user(Role.REVIEWER)

    assert review.approve_claim(reviewer, claim.id).state is ClaimState.IN_NOTICE

    mails = approval_mails(claim.id)
    assert sorted(n.recipient_id for n in mails) == sorted(u.id for u in team)
    ids = [n.id for n in mails]
    wait_for(lambda: all_in(ids, EmailState.SENT), 20, "both mails to be sent")
    settle(beat, redis_server)
    assert smtp.accepted() == Counter({expected_message_id(n): 1 for n in mails})
    emails = {n.recipient_id: n.recipient.email for n in mails}
    for n in fresh(ids):
        (received,) = smtp.attempts(expected_message_id(n))
        assert received.recipients == [emails[n.recipient_id]]
        assert f"#{claim.id}" in received.body
        assert (n.email_attempts, n.email_locked_until, n.email_error) == (1, None, None)
        assert n.email_sent_at is not None


def test_a_worker_killed_mid_delivery_is_replaced_and_the_mail_arrives_once(
    app, smtp, redis_server, start_worker, beat, approvable, make_user
):
    first = start_worker()
    smtp.hold_next()  # the server will sit on the first message before accepting it
    claim, [user] = approvable()
    review.approve_claim(
        make_user(Role.REVIEWER),
        claim.id,
    )
    [mail] = approval_mails(claim.id)
    message_id = expected_message_id(mail)

    wait_for(smtp.holding.is_set, 20, "the worker to hand the message to the SMTP server")
    [in_flight] = fresh([mail.id])
    assert (in_flight.email_state, in_flight.email_attempts) == (EmailState.PENDING, 1)
    assert in_flight.email_locked_until is not None
    first.kill()
    wait_for(lambda: smtp.attempts(message_id)[0].outcome == "connection lost", 10, "the SMTP session to end")
    smtp.release()
    assert smtp.accepted() == Counter()

    # The killed worker's claim holds the notification for NOTIFY_LOCK_SECONDS (and Redis keeps the
    # unacknowledged task for CELERY_VISIBILITY_TIMEOUT); then a new worker delivers it.
    held_until = in_flight.email_locked_until
    wait_for(lambda: datetime.now(UTC) > held_until, 10, "the dead worker's hold to lapse")
    start_worker()
    wait_for(lambda: all_in([mail.id], EmailState.SENT), 30, "the mail to be sent by the new worker")
    settle(beat, redis_server)

    assert smtp.accepted() == Counter({message_id: 1})
    lost, delivered = smtp.attempts(message_id)
    assert (lost.outcome, delivered.outcome) == ("connection lost", "accepted")
    assert delivered.recipients == [user.email]
    [sent] = fresh([mail.id])
    assert (sent.email_state, sent.email_attempts, sent.email_locked_until) == (EmailState.SENT, 2, None)


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_approvals_while_redis_is_down_are_mailed_once_it_is_back(
    outage, app, smtp, redis_server, start_worker, beat, approvable, make_user
):
    start_worker()
    reviewers = [make_user(Role.REVIEWER), make_user(Role.REVIEWER)]
    before, *during = [approvable(users=2), approvable(), approvable(users=2)]
    review.approve_claim(reviewers[0], before[0].id)
    early = [n.id for n in approval_mails(before[0].id)]
    wait_for(lambda: all_in(early, EmailState.SENT), 20, "the mails of the first approval")

    if outage == "stopped":
        redis_server.stop()  # its queue is gone with it: nothing is kept on disk
    else:
        redis_server.freeze()  # connections are accepted, but nothing answers
    took = []
    for n, (claim, _team) in enumerate(during):
        started = time.monotonic()
        decided = review.approve_claim(reviewers[n % 2], claim.id)
        took.append(time.monotonic() - started)
        assert decided.state is ClaimState.IN_NOTICE
    db.session.rollback()
    assert {db.session.get(Claim, c.id).state for c, _ in during} == {ClaimState.IN_NOTICE}
    # An approval waits at most for one refused (stopped) or unanswered (frozen, 3 s socket timeout)
    # publish of its mails and one of its tally, never for the broker to come back.
    assert max(took) < (2 if outage == "stopped" else 8), took
    late = [n.id for c, _ in during for n in approval_mails(c.id)]
    assert len(late) == 3
    assert all(n.email_state is EmailState.PENDING and n.email_attempts == 0 for n in fresh(late))

    if outage == "stopped":
        redis_server.start()  # empty, on the same port
    else:
        redis_server.resume()
    wait_for(lambda: all_in(late, EmailState.SENT), 45, "the mails of the approvals made during the outage")
    settle(beat, redis_server)

    mails = fresh(early + late)
    assert smtp.accepted() == Counter({expected_message_id(n): 1 for n in mails})
    assert len(smtp.received) == len(mails)
    assert all(n.email_state is EmailState.SENT and n.email_locked_until is None for n in mails)


def test_a_refusing_mail_server_is_retried_then_the_mail_is_listed_as_failed(
    app, smtp, redis_server, start_worker, beat, approvable, make_user
):
    smtp.refuse = "554 5.7.1 refused"
    start_worker()
    claim, [user] = approvable()
    review.approve_claim(
        make_user(Role.REVIEWER),
        claim.id,
    )
    [mail] = approval_mails(claim.id)
    message_id = expected_message_id(mail)

    wait_for(lambda: all_in([mail.id], EmailState.FAILED), 30, "the delivery to be given up")
    settle(beat, redis_server)
    [failed] = fresh([mail.id])
    attempts = SETTINGS["NOTIFY_MAX_ATTEMPTS"]
    assert failed.email_attempts == attempts
    assert failed.email_locked_until is None and "554" in failed.email_error
    tries = smtp.attempts(message_id)
    assert [t.outcome for t in tries] == ["554 5.7.1 refused"] * attempts
    assert smtp.accepted() == Counter()
    # Retried with doubling backoff (1 s, 2 s): the sweeps running meanwhile did not add attempts.
    gaps = [b.at - a.at for a, b in pairwise(tries)]
    backoff = SETTINGS["NOTIFY_RETRY_BACKOFF_SECONDS"]
    assert all(gap >= backoff * 2**n - 0.2 for n, gap in enumerate(gaps)), gaps

    admin, client = make_user(Role.ADMIN), app.test_client()
    login(client, admin.username)
    page = client.get("/notifications/failed")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    row = re.search(rf"<tr><td>{mail.id}</td>.*?</tr>", html, re.S)
    assert row, html
    assert user.email in row.group(0) and "SMTPDataError: (554, b&#39;5.7.1 refused&#39;)" in row.group(0)
    assert f"<td>{attempts}</td>" in row.group(0)

    other = app.test_client()
    login(other, user.username)
    assert other.get("/notifications/failed").status_code == 403

    # Once the server takes mail again, the administrator sends it again: it arrives once.
    smtp.refuse = None
    beat_again = SweepBeat(app.config["CELERY"], SWEEP_EVERY).start()
    try:
        again = client.post(
            "/notifications/failed", data={"csrf_token": extract_csrf(html), "retry": mail.id}
        )
        assert again.status_code == 302
        wait_for(lambda: all_in([mail.id], EmailState.SENT), 20, "the mail sent again to be delivered")
    finally:
        settle(beat_again, redis_server)
    assert smtp.accepted() == Counter({message_id: 1})
    assert f"<td>{mail.id}</td>" not in client.get("/notifications/failed").get_data(as_text=True)


def test_busy_workers_outlive_redis_outages_and_mail_once(app, smtp, redis_server, start_worker, beat):
    """Redis stopped, four times, while two workers hold and run deliveries (acks_late, a pool of two):
    the same worker processes reconnect by themselves and every mail arrives exactly once (the queue
    Redis lost is swept from the outbox).

    Before portal/core/broker.py, a worker often died here with "Unrecoverable error: AttributeError
    ('NoneType' object has no attribute 'hostname')" when it acknowledged or put back a task after
    losing the connection."""
    smtp.delay = 0.05  # every mail keeps a pool process busy for a moment
    workers = [start_worker(concurrency=2), start_worker(concurrency=2)]
    recipients = [
        User(username=f"busy{n}", email=f"busy{n}@example.cn", password_hash="-", role=Role.ADMIN)
        for n in range(40)
    ]
    db.session.add_all(recipients)
    db.session.commit()
    for cycle in range(4):
        notify(recipients, "booking.reminder", f"outage-test:{cycle}", payload={"instrument": "X"})
        db.session.commit()  # queues the deliveries
        busy = 40 * cycle + 10
        wait_for(lambda busy=busy: len(smtp.received) >= busy, 30, "the workers to be busy delivering")
        redis_server.stop()
        time.sleep(1)
        assert [w.process.poll() for w in workers] == [None, None], workers[0].output()[-3000:]
        redis_server.start()

    ids = [n.id for n in fresh_all()]
    assert len(ids) == 160
    wait_for(lambda: all_in(ids, EmailState.SENT), 90, "every mail to be delivered after the outages")
    settle(beat, redis_server)
    for worker in workers:
        assert worker.process.poll() is None, worker.output()[-4000:]
        assert "Unrecoverable error" not in worker.output()
    assert smtp.accepted() == Counter({expected_message_id(n): 1 for n in fresh(ids)})


def fresh_all() -> list[Notification]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification).order_by(Notification.id)))
