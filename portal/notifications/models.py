"""The notification outbox: written in the same transaction as the change, delivered afterwards."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import User
from portal.core.audit import ACTION_LABELS
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class EmailState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # the recipient does not want e-mail, or has no address


class Notification(Model):
    """One message to one user: always in the in-app centre, and by e-mail unless they opted out.

    A notification with an explicit address (`email_to`) is a mail only: to an address that is not (or
    not yet) the recipient's, such as a new e-mail address to confirm or an invitation to someone
    without an account (no recipient then), or one-time links, which never show in the centre.
    """

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    email_to: Mapped[str | None] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    link: Mapped[str | None] = mapped_column(String(200))
    # One notification per event and recipient, whatever retries or double calls happen.
    dedup_key: Mapped[str] = mapped_column(String(160), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_state: Mapped[EmailState] = mapped_column(str_enum(EmailState), default=EmailState.PENDING)
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A delivery holds the notification until then; a sweep may retry it once the hold has lapsed.
    email_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_error: Mapped[str | None] = mapped_column(Text)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)

    recipient: Mapped[User | None] = relationship()

    __table_args__ = (
        CheckConstraint("recipient_id IS NOT NULL OR email_to IS NOT NULL", name="has_recipient"),
        Index("ix_notifications_recipient_read", "recipient_id", "read_at"),
        Index("ix_notifications_email_state", "email_state", "email_locked_until"),
    )

    @property
    def message_id(self) -> str:
        """Fixed per notification, so a mail sent twice (worker lost after the server accepted it) is
        recognisably the same message."""
        return f"<notification-{self.id}@liaocheng-portal>"

    def __repr__(self) -> str:
        return f"<Notification {self.id} {self.kind} → {self.recipient_id} {self.email_state}>"


ACTION_LABELS["user.email_preference"] = _l("E-mail notifications switched on or off")
