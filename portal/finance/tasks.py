"""Celery tasks of the finance area."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from portal.core import clock
from portal.finance import exports, services


@shared_task(name="finance.tally_month")
def tally(month: str) -> int:
    """Recompute one month's tally rows (idempotent; a closed month is left alone)."""
    return services.tally_month(month)


@shared_task(name="finance.tally_recent")
def tally_recent() -> int:
    """Nightly: this month and the last, in case a queued tally was lost."""
    now = clock.utcnow()
    months = {services.month_of(now), services.month_of(now.replace(day=1) - timedelta(days=1))}
    return sum(services.tally_month(m) for m in sorted(months))


@shared_task(name="finance.run_export", acks_late=True)
def run_export(job_id: int) -> None:
    """Write a large export file, reporting progress as it goes."""
    exports.run_export_job(job_id)
