"""Work for the workers, sent only after the change that asks for it commits, and never lost.

`send_task("finance.tally_month", "2026-11")` writes a `queued_tasks` row in the current transaction.
After the commit the task goes to Celery (by name, so an area can ask for another area's work without
importing it) and the row is deleted. When Redis cannot take it, the row stays and the periodic
`core.send_queued_tasks` sends it once Redis is back, as the notifications' sweep does for mail.
Without a broker (the demo), Celery runs the task at once, in a fresh app context.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, event, select, update
from sqlalchemy.orm import Session

from portal.core import clock
from portal.core.database import after_commit
from portal.core.models import QueuedTask
from portal.extensions import db

PENDING = "queued_task_ids"


def send_task(name: str, *args: Any) -> None:
    """Send Celery task `name` with `args` once the current transaction commits (never if it rolls back).

    The same task with the same arguments asked for twice in one transaction is sent once."""
    session = db.session()
    pending = session.info.get(PENDING)
    if pending is None:
        pending = session.info[PENDING] = {}
        after_commit(lambda: _publish_apart(list(session.info.pop(PENDING, {}).values())))
    key = (name, repr(args))
    if key in pending:
        return
    row = QueuedTask(name=name, args=list(args), created_at=clock.utcnow(), attempts=0)
    session.add(row)
    session.flush()
    pending[key] = row.id


def _publish_apart(ids: list[int]) -> None:
    # Called while the committed session finishes: publish with a session (app context) of its own.
    with current_app.app_context():
        publish(ids)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(PENDING, None)


def publish(ids: list[int]) -> int:
    """Hand the queued tasks to Celery and delete their rows; stops at a broker that cannot take them.

    Returns how many were sent."""
    if not ids:
        return 0
    rows = db.session.execute(
        select(QueuedTask.id, QueuedTask.name, QueuedTask.args).where(QueuedTask.id.in_(ids))
    ).all()
    db.session.commit()
    celery = current_app.extensions["celery"]
    sent = 0
    for row_id, name, args in rows:
        try:
            # A fresh app context: an eager task runs in a session of its own, as a worker would.
            with current_app.app_context():
                celery.tasks[name].apply_async(args=args, retry=False)
        except Exception as error:
            current_app.logger.warning("task %s%s not sent (%s); it will be sent later", name, args, error)
            db.session.execute(
                update(QueuedTask).where(QueuedTask.id == row_id).values(attempts=QueuedTask.attempts + 1)
            )
            db.session.commit()
            break
        db.session.execute(delete(QueuedTask).where(QueuedTask.id == row_id))
        db.session.commit()
        sent += 1
    return sent


def send_waiting(older_than_seconds: int = 30) -> int:
    """Send every queued task left behind (the broker was down, or the process ended after its commit)."""
    cutoff = clock.utcnow() - timedelta(seconds=older_than_seconds)
    ids = list(
        db.session.scalars(
            select(QueuedTask.id).where(QueuedTask.created_at < cutoff).order_by(QueuedTask.id).limit(1000)
        )
    )
    return publish(ids)
