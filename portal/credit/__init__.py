"""Booking credit (信用, issue 18): violations, suspension, waivers and the scheme's rules."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the credit pages; hear booking's violations and its question before each request."""
    from portal.booking.signals import booking_violation, booking_wanted
    from portal.credit.services import record_violation, refuse_if_suspended
    from portal.credit.views import bp

    app.register_blueprint(bp)
    booking_violation.connect(record_violation)
    booking_wanted.connect(refuse_if_suspended)
