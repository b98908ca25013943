"""Celery tasks of the waitlist (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.waitlist import offers


@shared_task(name="waitlist.lapse_offers")
def lapse_offers() -> int:
    """Offers not accepted in their window lapse and move on; safe to run twice."""
    return offers.lapse_offers()
