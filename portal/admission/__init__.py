"""Provider admission (DESIGN §13): institutions apply to join the voucher scheme as service
providers; reviewers decide; a public notice follows; admission can be suspended for cause.

Sits above usage and below vouchers (docs/architecture.md): the voucher checks read the admission
that `Institution.admission` mirrors.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages and, by importing them, the models, messages and Celery tasks."""
    from portal.admission import messages, models, tasks  # noqa: F401
    from portal.admission.views import bp

    app.register_blueprint(bp)
