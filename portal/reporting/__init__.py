"""National reporting (NRII) and the yearly open-sharing evaluation (考核), issue 19.

A read layer beside the dashboard: it reads instruments, bookings, service records and usage and
writes only its own rows (report snapshots, score sheets, purchase checks).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the report pages and, by importing it, the model."""
    from portal.reporting import models  # noqa: F401
    from portal.reporting.views import bp

    app.register_blueprint(bp)
