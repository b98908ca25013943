"""Users, roles, enterprises (USCC), institutions, login and registration."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the accounts blueprint and the `flask users` commands."""
    from portal.accounts.cli import users_cli
    from portal.accounts.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(users_cli)
