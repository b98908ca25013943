"""Opening weeks: each instrument's weekly opening hours summed per weekday (OpeningWeek), rewritten
whenever its hours are flushed (a session event), and rebuilt whole after a bulk load and nightly
(portal.usage.tallies), which also covers hours written by plain SQL.

A period's open time is then Σ (weekdays of that kind in the period × that weekday's seconds): one
row per instrument, whatever the number of intervals in its week."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, event, insert, select
from sqlalchemy.orm import Session

from portal.catalog.models import OpeningHours, OpeningWeek
from portal.extensions import db

DAYS = tuple(f"day{weekday}" for weekday in range(7))  # OpeningWeek's columns, Monday first


def _seconds(opens, closes) -> int:
    return (
        (closes.hour - opens.hour) * 3600 + (closes.minute - opens.minute) * 60 + closes.second - opens.second
    )


def refresh_opening_weeks(
    instrument_ids: Iterable[int] | None = None, connection: Connection | None = None
) -> int:
    """Rewrite the opening weeks of these instruments (or of all) from their opening hours, in the
    caller's transaction (on `connection`, or the session's); returns the number of rows written
    (instruments with any opening)."""
    connection = connection if connection is not None else db.session.connection()
    only = None if instrument_ids is None else sorted(set(instrument_ids))
    stmt = select(
        OpeningHours.instrument_id, OpeningHours.weekday, OpeningHours.opens_at, OpeningHours.closes_at
    )
    stale = delete(OpeningWeek)
    if only is not None:
        stmt = stmt.where(OpeningHours.instrument_id.in_(only))
        stale = stale.where(OpeningWeek.instrument_id.in_(only))
    weeks: dict[int, list[int]] = {}
    for instrument_id, weekday, opens, closes in connection.execute(stmt):
        weeks.setdefault(instrument_id, [0] * 7)[weekday] += _seconds(opens, closes)
    connection.execute(stale)
    rows = [{"instrument_id": i, **dict(zip(DAYS, days, strict=True))} for i, days in sorted(weeks.items())]
    if rows:
        connection.execute(insert(OpeningWeek), rows)
    return len(rows)


@event.listens_for(Session, "after_flush")
def _refresh_changed_weeks(session: Session, _flush_context: Any) -> None:
    # Whatever writes opening hours through the ORM (the provider's form, the API, an import, the demo,
    # a test's factory), the instrument's opening week follows in the same transaction.
    changed = {
        obj.instrument_id
        for obj in (*session.new, *session.dirty, *session.deleted)
        if isinstance(obj, OpeningHours) and obj.instrument_id is not None
    }
    if changed:
        refresh_opening_weeks(changed, session.connection())
