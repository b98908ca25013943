"""Users, roles, enterprises (USCC), institutions, login and registration."""

from __future__ import annotations

from flask import Flask

from portal.extensions import login_manager


def init_app(app: Flask) -> None:
    """Register the accounts blueprint, the `flask users` commands and how a request's user is found."""
    # Imported here, not at the top: this module runs whenever any accounts module is imported (the
    # models, from every area), and must not drag the pages and everything they use in with it.
    from portal.accounts import colleague_views  # noqa: F401 - adds the colleagues' pages to the blueprint
    from portal.accounts.cli import users_cli
    from portal.accounts.services import holder_of, is_holder
    from portal.accounts.sessions import user_from_bearer, user_from_session
    from portal.accounts.views import bp

    login_manager.user_loader(user_from_session)
    login_manager.request_loader(user_from_bearer)
    app.register_blueprint(bp)
    app.cli.add_command(users_cli)
    # Pages of other areas hide what only the enterprise's account holder may do, and name the holder.
    app.jinja_env.globals.update(is_holder=is_holder, holder_of=holder_of)
