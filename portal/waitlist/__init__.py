"""The waitlist (issue 18): enterprises wait for held time; freed time is offered to the first in line."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the waitlist page; hear booking's state changes (freed time is offered on); importing
    the tasks registers them."""
    from portal.booking.signals import booking_state_changed
    from portal.waitlist import tasks  # noqa: F401
    from portal.waitlist.offers import on_booking_state_changed
    from portal.waitlist.views import bp

    app.register_blueprint(bp)
    booking_state_changed.connect(on_booking_state_changed)
