"""Celery tasks of the catalogue."""

from __future__ import annotations

from celery import shared_task

from portal.catalog import imports


@shared_task(name="catalog.run_import", acks_late=True)
def run_import(import_id: int) -> None:
    """Check or apply an uploaded catalogue file, whichever it waits for (safe to run twice)."""
    imports.run_import(import_id)
