"""Finance: tallies, totals, exports, disbursement batches and closed months."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the finance pages; importing the tasks registers them with Celery."""
    from portal.finance import receivers, tasks  # noqa: F401
    from portal.finance.views import bp

    app.register_blueprint(bp)
    receivers.connect()
