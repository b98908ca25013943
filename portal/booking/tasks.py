"""Celery tasks of the booking area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.booking import no_shows, transitions


@shared_task(name="booking.expire_requests")
def expire_requests() -> int:
    """Expire booking requests that nobody answered in time; safe to run twice."""
    return transitions.expire_unanswered()


@shared_task(name="booking.send_reminders")
def send_reminders() -> int:
    """Remind enterprises of tomorrow's bookings; each booking is reminded once."""
    return transitions.send_reminders()


@shared_task(name="booking.mark_no_shows")
def mark_no_shows() -> int:
    """Record confirmed slots nobody checked in to by their start plus the grace as no-shows."""
    return no_shows.mark_no_shows()
