"""Writing audit rows: one call per state change, inside the change's own transaction."""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request
from flask_login import current_user

from portal.core.models import AuditEvent
from portal.extensions import db

# How histories name each audit action; every area adds its own actions when its models load.
ACTION_LABELS: dict[str, Any] = {}
# How the audit log names each kind of object (its `object_type`); registered the same way.
OBJECT_LABELS: dict[str, Any] = {}


def action_label(action: str) -> Any:
    """The human name of an audit action (the code itself when none is registered)."""
    return ACTION_LABELS.get(action, action)


def object_label(object_type: str) -> Any:
    """The human name of a kind of audited object (the code itself when none is registered)."""
    return OBJECT_LABELS.get(object_type, object_type)


def _current_actor_id() -> int | None:
    if has_request_context() and current_user and current_user.is_authenticated:
        return current_user.id
    return None


def record(
    action: str,
    object_type: str,
    object_id: Any,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    reason: str | None = None,
    actor_id: int | None = None,
) -> AuditEvent:
    """Add an audit row to the current session; it commits (or rolls back) with the change itself."""
    event = AuditEvent(
        actor_id=actor_id if actor_id is not None else _current_actor_id(),
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        before=before,
        after=after,
        reason=reason,
        ip=request.remote_addr if has_request_context() else None,
    )
    db.session.add(event)
    return event
