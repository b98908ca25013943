"""Innovation vouchers: schemes, verification, applications, vouchers, claims and the review desk."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the voucher pages and the review desk; importing the tasks registers them with Celery."""
    from portal.booking.signals import booking_shown, fee_hint_wanted, service_recorded
    from portal.vouchers import tasks  # noqa: F401
    from portal.vouchers.hints import booking_hint
    from portal.vouchers.labels import FundLabels
    from portal.vouchers.redemption_views import booking_panel
    from portal.vouchers.redemption_views import bp as redemption_pages
    from portal.vouchers.redemptions import reserve_when_recorded
    from portal.vouchers.review_views import review
    from portal.vouchers.views import bp

    app.register_blueprint(bp)
    app.register_blueprint(review)
    app.register_blueprint(redemption_pages)
    # Funds are named by the schemes: every page that shows an amount per fund (a voucher hint on a
    # booking, a claim, a batch) labels it through this, read once per page.
    app.context_processor(lambda: {"fund_labels": FundLabels()})
    fee_hint_wanted.connect(booking_hint)  # the voucher hint on booking forms (booking asks by signal)
    # At payment: the booking page's redemption panel, and the reservation when a service is recorded.
    booking_shown.connect(booking_panel)
    service_recorded.connect(reserve_when_recorded)
