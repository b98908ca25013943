"""Celery tasks of the admission area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.admission import services


@shared_task(name="admission.end_public_notice")
def end_public_notice() -> int:
    """Admit the providers whose public notice has ended; safe to run twice."""
    return services.end_public_notice()
