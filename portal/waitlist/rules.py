"""The one function that moves a waitlist entry along its state machine (models.TRANSITIONS)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from portal.accounts.models import User
from portal.core import audit, clock
from portal.core.database import changed_rows
from portal.waitlist.models import TRANSITIONS, WaitlistEntry


def move_entry(entry: WaitlistEntry, action: str, actor: User | None = None, **values: Any) -> bool:
    """Move the entry by a conditional UPDATE with its audit row, in the caller's transaction.

    Returns False (and changes nothing) when the entry is no longer in the state the table moves it
    from: someone else moved it a moment ago, or the table does not allow the action."""
    before = entry.state
    target = TRANSITIONS.get((before, action))
    if target is None:
        return False
    moved = changed_rows(
        update(WaitlistEntry)
        .where(WaitlistEntry.id == entry.id, WaitlistEntry.state == before)
        .values(state=target, **values)
        .execution_options(synchronize_session=False)
    )
    if moved != 1:
        return False
    after = {
        "state": target.value,
        **{k: clock.iso_utc(v) if hasattr(v, "tzinfo") else v for k, v in values.items()},
    }
    audit.record(
        f"waitlist.{target.value}",
        "waitlist_entry",
        entry.id,
        before={"state": before.value},
        after=after,
        actor_id=actor.id if actor else None,
    )
    entry.state = target
    return True
