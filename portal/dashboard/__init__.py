"""The bureau's dashboard: headline figures, charts, the providers' yearly ranking, the public page."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the dashboard pages (the ranking's routes live on the same blueprint)."""
    from portal.dashboard import ranking_views  # noqa: F401
    from portal.dashboard.views import bp, public

    app.register_blueprint(bp)
    app.register_blueprint(public)
