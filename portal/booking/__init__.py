"""Booking: opening hours, blackouts, requests, availability, service records and calendars."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the booking pages (upkeep pages included) and, by importing them, the Celery tasks."""
    from portal.booking import tasks, upkeep_views  # noqa: F401
    from portal.booking.views import bp

    app.register_blueprint(bp)
