"""Celery tasks of the usage area (thin wrappers around the services)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from portal.core import clock
from portal.usage import services, tallies


@shared_task(name="usage.close_sessions")
def close_sessions() -> int:
    """End the sessions nobody checked out at their booking's end; safe to run twice."""
    return services.close_ended_sessions()


@shared_task(name="usage.tally")
def tally(instrument_id: int, month: str) -> int:
    """Recount one instrument's usage tally of one month (queued by each change; idempotent)."""
    return tallies.tally_month(month, [instrument_id])


@shared_task(name="usage.tally_recent")
def tally_recent() -> int:
    """Nightly: every instrument's tally of this month and the last, in case a queued recount was lost."""
    first = clock.local_today().replace(day=1)  # the Beijing month, not the UTC one
    last = first - timedelta(days=1)
    return tallies.tally_months([f"{first:%Y-%m}", f"{last:%Y-%m}"])
