"""Celery tasks of the booking area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.booking import transitions


@shared_task(name="booking.expire_requests")
def expire_requests() -> int:
    """Expire booking requests that nobody answered in time; safe to run twice."""
    return transitions.expire_unanswered()


@shared_task(name="booking.send_reminders")
def send_reminders() -> int:
    """Remind enterprises of tomorrow's bookings; each booking is reminded once."""
    return transitions.send_reminders()
