"""The append-only audit log: who changed what, when, from which state to which, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from portal.core.clock import current_time
from portal.core.types import UTCDateTime
from portal.extensions import Model, db


class AuditEvent(Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    # No ON DELETE: a user with history is deactivated, never deleted, so the trail stays whole.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(45))

    __table_args__ = (
        Index("ix_audit_events_object", "object_type", "object_id"),
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_actor_id", "actor_id"),
    )

    def __repr__(self) -> str:
        return f"<AuditEvent {self.action} {self.object_type}:{self.object_id}>"


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_change(mapper, connection, target: AuditEvent) -> None:
    # The database has a trigger as well; this stops the application before it even tries.
    raise RuntimeError("audit events are append-only")


class QueuedTask(Model):
    """A Celery task to send once its transaction has committed: the outbox of work for the workers.

    The row is written in the transaction that asks for the work, so the work is never lost: after the
    commit the task is sent and the row deleted; if the broker could not take it then, the periodic
    `core.send_queued_tasks` sends it later. Tasks are idempotent, so sending one twice is harmless.
    """

    __tablename__ = "queued_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))  # the task's registered name, e.g. "finance.tally_month"
    args: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, index=True)
    attempts: Mapped[int] = mapped_column(default=0)

    def __repr__(self) -> str:
        return f"<QueuedTask {self.id} {self.name}{tuple(self.args)}>"
