"""When an enterprise's violations suspend its booking: one pure function, tested by tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Rules:
    """N violations within M days suspend self-service booking for K days."""

    max_violations: int  # N
    window_days: int  # M
    suspension_days: int  # K


def suspended_until(violations: Iterable[datetime], rules: Rules, now: datetime) -> datetime | None:
    """The end of the suspension in force at `now`, or None.

    `violations` are the times of the violations that count (waived ones left out). Each violation
    that is the N-th within M days (itself and the N-1 before it) starts a suspension of K days at
    its own time; the latest end of those in force wins. Violations after `now` do not count yet.
    """
    times = sorted(t for t in violations if t <= now)
    n, window = rules.max_violations, timedelta(days=rules.window_days)
    suspension = timedelta(days=rules.suspension_days)
    until = None
    for i in range(n - 1, len(times)):
        if times[i] - times[i - n + 1] <= window and times[i] + suspension > now:
            until = max(until or now, times[i] + suspension)
    return until
