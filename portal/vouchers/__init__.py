"""Innovation vouchers: schemes, verification, applications, vouchers, claims and the review desk."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the voucher pages and the review desk; importing the tasks registers them with Celery."""
    from portal.booking.signals import fee_hint_wanted
    from portal.vouchers import tasks  # noqa: F401
    from portal.vouchers.hints import booking_hint
    from portal.vouchers.labels import FundLabels
    from portal.vouchers.review_views import review
    from portal.vouchers.views import bp

    app.register_blueprint(bp)
    app.register_blueprint(review)
    # Funds are named by the schemes: every page that shows an amount per fund (a voucher hint on a
    # booking, a claim, a batch) labels it through this, read once per page.
    app.context_processor(lambda: {"fund_labels": FundLabels()})
    fee_hint_wanted.connect(booking_hint)  # the voucher hint on booking forms (booking asks by signal)
