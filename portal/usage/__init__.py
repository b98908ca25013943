"""Use at the instrument (DESIGN §11): check-in and check-out by the QR label, usage sessions, and
what a booking's metered use adds up to.

Sits above booking and below vouchers (docs/architecture.md): it reads bookings and their policy;
booking asks it, by signal, what a booking's page shows of its use.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages, the commands and, by importing them, the models and Celery tasks; answer
    the booking page's question of what it shows of the booking's use; recount the booking tallies
    when a booking starts or stops holding time."""
    from portal.booking.signals import booking_shown, booking_state_changed
    from portal.usage import messages, models, tasks  # noqa: F401
    from portal.usage.booking_tallies import on_booking_state_changed
    from portal.usage.cli import usage_cli
    from portal.usage.views import booking_panel, bp

    app.register_blueprint(bp)
    app.cli.add_command(usage_cli)
    booking_shown.connect(booking_panel)
    booking_state_changed.connect(on_booking_state_changed)
