"""Batched delivery over one kept SMTP connection, against real services.

What tests/test_delivery.py checks of one mail (a lost worker, Redis down, a refusing server) holds for
batches as well; here: a worker process sends its mails over one connection and QUITs it when it ends;
a connection the server closed is replaced without costing an attempt; a refusal or an unreachable
server fails only what it must, and every failed mail is retried later; a batch that outlasts its hold
renews it, so no one else takes a mail it is about to send; a mail to an address that is not ASCII
goes with SMTPUTF8 or fails alone; and on PostgreSQL concurrent batch claims never hand one
notification to two deliveries.

The SMTP server is aiosmtpd on loopback (tests.services_runner.SmtpSink) that also notes from which
client port each message came (one port: one connection) and counts QUITs. Deliveries run either in a
real `celery -A celery_worker worker` or, to hold the timing in hand, in this process through
`services.deliver_batch`, the function the worker's task calls.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import select

from portal.accounts.models import User
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications import mailer, services
from portal.notifications.models import EmailState, Notification
from tests.conftest import make_app
from tests.services_runner import (
    CeleryWorker,
    RedisServer,
    SmtpSink,
    free_port,
    time_limit,
    wait_for,
    worker_env,
)

pytest_plugins = ["tests.private_services"]

SETTINGS = {
    "NOTIFY_LOCK_SECONDS": 4,
    "NOTIFY_MAX_ATTEMPTS": 3,
    "NOTIFY_RETRY_BACKOFF_SECONDS": 1,
    "NOTIFY_SWEEP_GRACE_SECONDS": 1,
    "NOTIFY_BATCH_SIZE": 20,
    "CELERY_VISIBILITY_TIMEOUT": 2,
    "MAIL_TIMEOUT": 10,
}


class Sink(SmtpSink):
    """SmtpSink, noting each message's client address and port, counting QUITs, and (if told) closing
    the connection after every `close_after`-th message, as a server with a limit per connection does."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[tuple[str, int]] = []
        self.quits = 0
        self.close_after: int | None = None
        self.refuse_recipient: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address == self.refuse_recipient:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        with self._lock:
            self.peers.append(session.peer)
            closing = self.close_after is not None and len(self.peers) % self.close_after == 0
        if closing:
            # After this reply is written: the client sees the close at its next command.
            asyncio.get_running_loop().call_soon(server.transport.close)
        return reply

    async def handle_QUIT(self, server, session, envelope) -> str:
        with self._lock:
            self.quits += 1
        return "221 Bye"

    def connections(self) -> int:
        """How many connections the messages came over."""
        with self._lock:
            return len(set(self.peers))


@pytest.fixture(autouse=True)
def time_limit_90s() -> Iterator[None]:
    with time_limit(90):
        yield


@pytest.fixture
def smtp() -> Iterator[Sink]:
    sink = Sink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def app(database: str, smtp: Sink) -> Iterator[Flask]:
    """This process's app on a PostgreSQL database of the test's own, mailing to the sink; without a
    broker, so nothing is delivered unless the test (or a worker) delivers it."""
    app = make_app(database, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp.port, **SETTINGS)
    try:
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        mailer.close_current()  # the connection this thread kept (deliveries made in this process)
        app.extensions["celery"].close()


def pending(count: int, tag: str = "batch") -> list[Notification]:
    """`count` pending notifications, each to a user of its own, written without queueing anything."""
    users = [
        User(username=f"{tag}{n}", email=f"{tag}{n}@example.cn", password_hash="-", role=Role.ADMIN)
        for n in range(count)
    ]
    db.session.add_all(users)
    db.session.flush()
    rows = [
        Notification(
            recipient_id=user.id,
            kind="booking.reminder",
            payload={"instrument": "质谱仪", "when": "明天 9:00"},
            dedup_key=f"{tag}:{user.id}",
            created_at=clock.utcnow(),
            email_state=EmailState.PENDING,
            email_attempts=0,
            urgent=False,
        )
        for user in users
    ]
    db.session.add_all(rows)
    db.session.commit()
    return rows


def fresh(rows: list[Notification]) -> list[Notification]:
    db.session.rollback()
    ids = [row.id for row in rows]
    return list(db.session.scalars(select(Notification).where(Notification.id.in_(ids)).order_by("id")))


def message_ids(rows: list[Notification]) -> Counter[str]:
    return Counter({row.message_id: 1 for row in rows})


# --- one worker process, one connection ----------------------------------------------------------


@pytest.fixture
def broker_app(database: str, redis_server: RedisServer, smtp: Sink) -> Iterator[Flask]:
    """This process's app as a web process has it: its commits queue the deliveries in the private Redis."""
    app = make_app(
        database, REDIS_URL=redis_server.url, MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp.port, **SETTINGS
    )
    try:
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        app.extensions["celery"].close()


@pytest.fixture
def worker(database: str, redis_server: RedisServer, smtp: Sink, tmp_path: Path) -> Iterator[CeleryWorker]:
    """A production worker with a pool of one process."""
    env = worker_env(
        SECRET_KEY="batch-test-secret",
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp.port,
        **SETTINGS,
    )
    name = f"batches-{os.getpid()}"
    started = CeleryWorker(name, env, tmp_path / f"{name}.log", concurrency=1).start()
    try:
        yield started
    finally:
        started.stop()
        print(started.output()[-6000:])


def test_a_worker_process_mails_every_batch_over_one_connection_and_quits_it_at_shutdown(
    broker_app, smtp, worker
):
    rows: list[Notification] = []
    # Three changes, each queueing its mails after its commit: 12, 12 and 25 mails, in four tasks.
    for n, size in enumerate((12, 12, 25)):
        batch = pending(size, tag=f"w{n}-")
        services.queue_deliveries([row.dedup_key for row in batch])
        rows += batch
        total = len(rows)
        wait_for(lambda total=total: len(smtp.received) >= total, 30, "the worker to send the mails")
    wait_for(lambda: all(r.email_state is EmailState.SENT for r in fresh(rows)), 10, "every row marked sent")

    assert smtp.accepted() == message_ids(rows)
    assert smtp.connections() == 1  # one pool process: every message over the same connection
    assert smtp.quits == 0
    worker.stop()  # a warm shutdown: the pool process ends, and QUITs its connection first
    assert smtp.quits == 1
    assert all(r.email_attempts == 1 for r in fresh(rows))


# --- the connection, in this process -------------------------------------------------------------


def test_a_connection_the_server_closed_is_replaced_without_costing_an_attempt(app, smtp):
    smtp.close_after = 3  # the server ends the connection after every third message
    first = pending(7, tag="a")
    assert len(services.deliver_batch([row.dedup_key for row in first]).sent) == 7
    second = pending(5, tag="b")  # the kept connection was closed after the 6th: found at the 8th
    assert len(services.deliver_batch([row.dedup_key for row in second]).sent) == 5

    assert smtp.accepted() == message_ids(first + second)
    assert smtp.connections() == 4  # 12 messages, 3 per connection
    assert all(r.email_attempts == 1 and r.email_error is None for r in fresh(first + second))


def test_connection_reused_across_batches(app, smtp):
    for n in range(3):
        rows = pending(4, tag=f"r{n}-")
        assert services.deliver_batch([row.dedup_key for row in rows]).counts() == {"sent": 4, "failed": 0}
    assert len(smtp.received) == 12 and smtp.connections() == 1 and smtp.quits == 0
    mailer.close_current()
    assert smtp.quits == 1


def test_a_refused_recipient_fails_that_mail_alone_and_it_is_retried_later(app, smtp, fake_clock):
    rows = pending(5, tag="refused")
    refused = rows[2]
    smtp.refuse_recipient = "refused2@example.cn"
    outcome = services.deliver_batch([row.dedup_key for row in rows])

    assert sorted(outcome.sent) == sorted(r.dedup_key for r in rows if r is not refused)
    [failure] = outcome.failed
    assert (failure.key, failure.retry_in) == (refused.dedup_key, SETTINGS["NOTIFY_RETRY_BACKOFF_SECONDS"])
    [held] = fresh([refused])
    assert (held.email_state, held.email_attempts) == (EmailState.PENDING, 1)
    assert "550" in held.email_error and held.email_locked_until > clock.utcnow()
    assert smtp.connections() == 1  # the refusal did not cost the connection

    # Not due before its backoff ends; then sent once the server takes it.
    assert services.deliver_batch([refused.dedup_key]).counts() == {"sent": 0, "failed": 0}
    smtp.refuse_recipient = None
    fake_clock.advance(seconds=SETTINGS["NOTIFY_RETRY_BACKOFF_SECONDS"] + 1)
    assert services.deliver_batch([refused.dedup_key]).sent == [refused.dedup_key]
    assert smtp.accepted() == message_ids(rows)
    [sent] = fresh([refused])
    assert (sent.email_state, sent.email_attempts, sent.email_error) == (EmailState.SENT, 2, None)


@pytest.mark.parametrize("smtputf8", [True, False])
def test_a_mail_to_an_address_that_is_not_ascii_needs_smtputf8(app, smtputf8):
    """Such an address goes out with SMTPUTF8 when the server offers it; when it does not, that mail
    fails (and is retried later) and the others of the batch go as usual."""
    sink = Sink()
    sink._controller = Controller(sink, hostname="127.0.0.1", port=sink.port, enable_SMTPUTF8=smtputf8)
    sink.start()
    app.config["MAIL_PORT"] = sink.port
    try:
        rows = pending(3, tag="utf")
        rows[1].recipient.email = "张伟@例子.中国"
        db.session.commit()
        outcome = services.deliver_batch([row.dedup_key for row in rows])
    finally:
        mailer.close_current()
        sink.stop()

    plain = [rows[0], rows[2]]
    if smtputf8:
        assert sink.accepted() == message_ids(rows)
        [international] = sink.attempts(rows[1].message_id)
        assert international.recipients == ["张伟@例子.中国"] and "质谱仪" in international.subject
    else:
        assert sink.accepted() == message_ids(plain)
        assert [(f.key, f.retry_in) for f in outcome.failed] == [(rows[1].dedup_key, 1)]
        [held] = fresh([rows[1]])
        assert held.email_state is EmailState.PENDING and "SMTPUTF8" in held.email_error
    assert sink.connections() == 1


def test_an_unreachable_server_fails_the_batch_for_now_and_loses_nothing(app, smtp, fake_clock):
    rows = pending(6, tag="down")
    keys = [row.dedup_key for row in rows]
    app.config["MAIL_PORT"] = free_port()  # nothing listens there
    outcome = services.deliver_batch(keys)

    assert outcome.sent == [] and [f.key for f in outcome.failed] == keys
    assert {f.retry_in for f in outcome.failed} == {SETTINGS["NOTIFY_RETRY_BACKOFF_SECONDS"]}
    for row in fresh(rows):
        assert (row.email_state, row.email_attempts) == (EmailState.PENDING, 1)
        assert "ServerUnavailable" in row.email_error and "Connection refused" in row.email_error

    app.config["MAIL_PORT"] = smtp.port  # the server is back
    assert services.deliver_batch(keys).counts() == {"sent": 0, "failed": 0}  # held until the backoff ends
    fake_clock.advance(seconds=SETTINGS["NOTIFY_RETRY_BACKOFF_SECONDS"] + 1)
    assert sorted(services.deliver_batch(keys).sent) == sorted(keys)
    assert smtp.accepted() == message_ids(rows)
    assert all(r.email_state is EmailState.SENT and r.email_attempts == 2 for r in fresh(rows))


def delivering_apart(app: Flask, keys: list[str], outcomes: list[services.Outcome]) -> threading.Thread:
    """A delivery of `keys` started in a thread of its own (another worker's process, as far as the
    database and the SMTP server can tell); its outcome is appended to `outcomes`."""

    def deliver() -> None:
        try:
            with app.app_context():
                outcomes.append(services.deliver_batch(keys))
                db.session.remove()
        finally:
            mailer.close_current()

    thread = threading.Thread(target=deliver)
    thread.start()
    return thread


def test_a_batch_that_outlasts_its_hold_renews_it_and_no_one_else_sends_its_mails(app, smtp):
    """A slow server (0.3 s a message, 10 messages) and a hold of 1 s: without renewal the rest of the
    batch would be free for another delivery after a second, and both would send it."""
    app.config["NOTIFY_LOCK_SECONDS"] = 1
    smtp.delay = 0.3
    rows = pending(10, tag="slow")
    keys = [row.dedup_key for row in rows]
    outcomes: list[services.Outcome] = []
    batch = delivering_apart(app, keys, outcomes)
    stolen: list[str] = []
    try:
        wait_for(lambda: smtp.received, 10, "the batch to begin sending")
        while batch.is_alive():  # a sweep's task in another worker, trying again and again
            stolen += services.deliver_batch(keys).sent
            time.sleep(0.05)
    finally:
        batch.join(20)

    [outcome] = outcomes
    assert sorted(outcome.sent) == sorted(keys) and stolen == []
    assert smtp.accepted() == message_ids(rows)
    assert all(r.email_state is EmailState.SENT and r.email_attempts == 1 for r in fresh(rows))


def test_mails_another_delivery_took_after_the_hold_lapsed_are_left_to_it(app, smtp):
    """The server sits on the batch's first message past the whole hold (1 s); meanwhile another
    delivery claims and sends the rest. When the first is accepted, the batch finds the rest no longer
    its own and sends none of them again."""
    app.config["NOTIFY_LOCK_SECONDS"] = 1
    smtp.release_reply = None  # the held message is accepted once released
    smtp.hold_next()
    rows = pending(5, tag="lapsed")
    keys = [row.dedup_key for row in rows]
    outcomes: list[services.Outcome] = []
    first = delivering_apart(app, keys, outcomes)
    try:
        wait_for(smtp.holding.is_set, 10, "the first message to be held")
        time.sleep(1.2)  # the batch's hold lapses
        taken = services.deliver_batch(keys[1:])  # the first is in flight: not asked for here
    finally:
        smtp.release()
        first.join(10)

    assert sorted(taken.sent) == sorted(keys[1:])
    [outcome] = outcomes
    assert (outcome.sent, outcome.failed) == ([keys[0]], [])
    assert smtp.accepted() == message_ids(rows)
    assert [r.email_attempts for r in fresh(rows)] == [1, 2, 2, 2, 2]


# --- claims on PostgreSQL --------------------------------------------------------------------------


def test_concurrent_batch_claims_never_hand_one_notification_to_two_deliveries(app):
    """Four threads, each with its own database connection, claim overlapping batches of the same 400
    notifications at once: every notification is claimed exactly once, and counted as one attempt.
    (A claim that chose its rows by a plain SELECT and updated them unconditionally failed this five
    times in five.)"""
    rows = pending(400, tag="race")
    keys = [row.dedup_key for row in rows]
    start = threading.Barrier(4)
    claimed: list[list[int]] = [[] for _ in range(4)]
    failures: list[Exception] = []

    def claim(n: int) -> None:
        # Every thread goes through the same batches at the same time; the odd ones' batches are
        # shifted by half a batch, so that they overlap two of the even ones' each.
        shift = 10 * (n % 2)
        batches = [keys[max(i - shift, 0) : i + 20 - shift] for i in range(0, len(keys) + shift, 20)]
        try:
            with app.app_context(), db.engine.connect() as connection:
                start.wait()
                for batch in batches:
                    claimed[n] += [item.id for item in services._claim(connection, batch)]
                db.session.remove()
        except Exception as error:  # shown by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert failures == []
    every = [i for each in claimed for i in each]
    assert Counter(every) == Counter({row.id: 1 for row in rows})
    assert sum(1 for each in claimed if each) > 1  # the claims really ran side by side
    assert {(r.email_attempts, r.email_state) for r in fresh(rows)} == {(1, EmailState.PENDING)}
    assert all(r.email_locked_until > clock.utcnow() - timedelta(seconds=1) for r in fresh(rows))
