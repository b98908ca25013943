"""The dates a recurring booking's rule gives (issue 18): one pure function, tested by tables.

Daily every N days, or weekly on chosen weekdays every N weeks, from the first occurrence until a
day (inclusive) or for a number of occurrences. Weekdays and days are Beijing's (Monday = 0); every
occurrence keeps the first one's Beijing time of day and its length (China keeps no summer time).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from portal.core import clock

DAY, WEEK = "day", "week"


@dataclass(frozen=True)
class Repeat:
    """How a series repeats: `every` "day" or "week", every `interval` of them, on `weekdays` (weekly
    only, Monday = 0; empty: the first occurrence's weekday), until the day `until` or `count` times."""

    every: str
    interval: int = 1
    weekdays: tuple[int, ...] = ()
    until: date | None = None
    count: int | None = None


def _days(first: date, repeat: Repeat) -> Iterator[date]:
    """Every day of the rule from `first` on, endlessly (the caller stops)."""
    if repeat.every == DAY:
        yield from (first + timedelta(days=repeat.interval * n) for n in itertools.count())
        return
    weekdays = sorted(set(repeat.weekdays or (first.weekday(),)))
    monday = clock.week_start(first)
    while True:
        for weekday in weekdays:
            day = monday + timedelta(days=weekday)
            if day >= first:
                yield day
        monday += timedelta(weeks=repeat.interval)


def occurrence_times(
    starts_at: datetime, ends_at: datetime, repeat: Repeat, limit: int
) -> list[tuple[datetime, datetime]]:
    """The (start, end) of each occurrence, the first being (starts_at, ends_at); at most `limit`
    (the caller asks one more than it allows, to tell a rule that gives too many)."""
    local = clock.to_local(starts_at)
    length = ends_at - starts_at
    out: list[tuple[datetime, datetime]] = []
    for day in _days(local.date(), repeat):
        if len(out) >= limit or (repeat.count is not None and len(out) >= repeat.count):
            break
        if repeat.until is not None and day > repeat.until:
            break
        start = clock.local_datetime_to_utc(day, local.time())
        out.append((start, start + length))
    return out
