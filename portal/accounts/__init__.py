"""Users, roles, enterprises (USCC), institutions, login and registration."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the accounts blueprint and the `flask users` commands."""
    from portal.accounts import colleague_views  # noqa: F401 - adds the colleagues' pages to the blueprint
    from portal.accounts.cli import users_cli
    from portal.accounts.services import holder_of, is_holder
    from portal.accounts.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(users_cli)
    # Pages of other areas hide what only the enterprise's account holder may do, and name the holder.
    app.jinja_env.globals.update(is_holder=is_holder, holder_of=holder_of)
