"""Qualifications (上机资格), operation modes and training: who may run which instrument themselves.

Sits above the catalogue and below booking (docs/architecture.md): it may use accounts, notifications
and catalog, never booking, vouchers or finance.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages and, by importing them, the Celery tasks."""
    from portal.qualifications import models, tasks  # noqa: F401
    from portal.qualifications.views import bp

    app.register_blueprint(bp)
