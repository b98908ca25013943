"""The bureau's admin console: staff, institutions, enterprises, categories, schemes, catalogue imports."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the console's blueprint."""
    from portal.admin import users  # noqa: F401 - the users' pages, on the same blueprint
    from portal.admin.views import bp

    app.register_blueprint(bp)
