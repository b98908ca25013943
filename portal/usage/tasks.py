"""Celery tasks of the usage area (thin wrappers around the services)."""

from __future__ import annotations

from celery import shared_task

from portal.usage import services


@shared_task(name="usage.close_sessions")
def close_sessions() -> int:
    """End the sessions nobody checked out at their booking's end; safe to run twice."""
    return services.close_ended_sessions()
