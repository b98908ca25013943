"""Celery tasks of the qualifications area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.qualifications import services


@shared_task(name="qualifications.remind_expiring")
def remind_expiring() -> int:
    """Remind holders 30 days before a qualification expires; each one is reminded once."""
    return services.send_expiry_reminders()
