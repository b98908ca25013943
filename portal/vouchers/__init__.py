"""Innovation vouchers: schemes, verification, applications, vouchers, claims and the review desk."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the voucher pages and the review desk; importing the tasks registers them with Celery."""
    from portal.booking.signals import fee_hint_wanted
    from portal.vouchers import tasks  # noqa: F401
    from portal.vouchers.services import booking_hint
    from portal.vouchers.views import bp, review

    app.register_blueprint(bp)
    app.register_blueprint(review)
    fee_hint_wanted.connect(booking_hint)  # the voucher hint on booking forms (booking asks by signal)
