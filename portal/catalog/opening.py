"""Opening weeks: each instrument's weekly opening hours summed per weekday (OpeningWeek), rewritten
whenever its hours are, and rebuilt whole after a bulk load and nightly (portal.usage.tallies).

A period's open time is then Σ (weekdays of that kind in the period × that weekday's seconds): one
row per instrument, whatever the number of intervals in its week."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, insert, select

from portal.catalog.models import OpeningHours, OpeningWeek
from portal.extensions import db

DAYS = tuple(f"day{weekday}" for weekday in range(7))  # OpeningWeek's columns, Monday first


def _seconds(opens, closes) -> int:
    return (
        (closes.hour - opens.hour) * 3600 + (closes.minute - opens.minute) * 60 + closes.second - opens.second
    )


def refresh_opening_weeks(instrument_ids: Iterable[int] | None = None) -> int:
    """Rewrite the opening weeks of these instruments (or of all) from their opening hours, in the
    caller's transaction; returns the number of rows written (instruments with any opening)."""
    only = None if instrument_ids is None else sorted(set(instrument_ids))
    stmt = select(
        OpeningHours.instrument_id, OpeningHours.weekday, OpeningHours.opens_at, OpeningHours.closes_at
    )
    stale = delete(OpeningWeek)
    if only is not None:
        stmt = stmt.where(OpeningHours.instrument_id.in_(only))
        stale = stale.where(OpeningWeek.instrument_id.in_(only))
    weeks: dict[int, list[int]] = {}
    for instrument_id, weekday, opens, closes in db.session.execute(stmt):
        weeks.setdefault(instrument_id, [0] * 7)[weekday] += _seconds(opens, closes)
    db.session.execute(stale)
    rows = [{"instrument_id": i, **dict(zip(DAYS, days, strict=True))} for i, days in sorted(weeks.items())]
    if rows:
        db.session.execute(insert(OpeningWeek), rows)
    return len(rows)
