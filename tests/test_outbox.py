"""The task outbox: work asked for in a transaction is sent after its commit, and never lost.

Without a broker (the demo, most tests) the task runs at once after the commit. With Redis down, the
`queued_tasks` row stays and the periodic `core.send_queued_tasks` sends it once Redis is back.
"""

from __future__ import annotations

import json

import pytest
from celery import shared_task
from sqlalchemy import func, select

from portal import BEAT_SCHEDULE
from portal.core import outbox
from portal.core.models import QueuedTask
from portal.extensions import db
from tests.conftest import app_in_context

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

pytest_plugins = ["tests.private_services"]

RAN: list[tuple] = []


@shared_task(name="tests.outbox_probe")
def probe(*args) -> None:
    RAN.append(args)


def queued() -> int:
    return db.session.scalar(select(func.count()).select_from(QueuedTask))


def test_a_task_runs_once_after_the_commit_and_leaves_no_row(app):
    RAN.clear()
    outbox.send_task("tests.outbox_probe", 7, "a")
    outbox.send_task("tests.outbox_probe", 7, "a")  # asked twice in one transaction: sent once
    outbox.send_task("tests.outbox_probe", 8)
    assert RAN == [] and queued() == 2  # nothing before the commit
    db.session.commit()
    assert sorted(RAN) == [(7, "a"), (8,)]
    assert queued() == 0


def test_a_task_asked_for_in_a_transaction_that_rolls_back_is_never_sent(app):
    RAN.clear()
    outbox.send_task("tests.outbox_probe", 9)
    db.session.rollback()
    db.session.commit()
    assert RAN == [] and queued() == 0


def test_the_sweep_is_scheduled_every_minute(app):
    entry = next(e for e in BEAT_SCHEDULE.values() if e["task"] == "core.send_queued_tasks")
    assert entry["schedule"] == 60.0
    assert "core.send_queued_tasks" in app.extensions["celery"].tasks


def test_with_redis_down_the_task_waits_and_the_sweep_sends_it_when_redis_is_back(database, redis_server):
    for _app in app_in_context(database, REDIS_URL=redis_server.url):
        redis_server.stop()
        outbox.send_task("finance.tally_month", "2026-11")
        db.session.commit()  # the change commits although the broker cannot take the task
        [row] = db.session.scalars(select(QueuedTask)).all()
        assert (row.name, row.args, row.attempts) == ("finance.tally_month", ["2026-11"], 1)

        assert outbox.send_waiting(older_than_seconds=0) == 0  # still down: it keeps waiting
        redis_server.start()
        assert outbox.send_waiting(older_than_seconds=0) == 1
        assert queued() == 0
        with redis_server.client() as client:
            [message] = client.lrange("celery", 0, -1)
        headers = json.loads(message)["headers"]
        assert (headers["task"], headers["argsrepr"]) == ("finance.tally_month", "['2026-11']")
