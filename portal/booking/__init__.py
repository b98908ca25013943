"""Booking: opening hours, blackouts, requests, availability, service records and calendars."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the booking pages (upkeep and recurring bookings' pages included) and, by importing
    them, the Celery tasks; answer the catalogue's question of what its instrument pages show of booking.

    Imported here, not at the top: the models are imported by every area, and importing the package
    for them must not load the views (and through them the forms and templates' helpers) and tasks.
    """
    from portal.booking import series_views, tasks, upkeep_views  # noqa: F401
    from portal.booking.availability import record_extras
    from portal.booking.views import bp
    from portal.catalog.signals import instrument_shown

    app.register_blueprint(bp)
    instrument_shown.connect(record_extras)
