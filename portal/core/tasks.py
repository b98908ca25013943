"""Celery tasks every area relies on."""

from __future__ import annotations

from celery import shared_task

from portal.core import outbox


@shared_task(name="core.send_queued_tasks")
def send_queued_tasks() -> int:
    """Send the queued tasks the broker could not take when they were asked for; returns how many."""
    return outbox.send_waiting()
