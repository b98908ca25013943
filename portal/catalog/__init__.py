"""The instrument catalogue: categories, instruments, search, detail, import and export."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the catalogue pages and the `flask catalog` commands; importing the tasks registers them."""
    from portal.catalog import fastpath, price_models, tasks  # noqa: F401
    from portal.catalog.cli import catalog_cli
    from portal.catalog.forms import SearchForm
    from portal.catalog.views import bp

    app.register_blueprint(bp)
    app.cli.add_command(catalog_cli)
    # Visitors' searches answered before the application's per-request work (the API adds its list).
    fastpath.init_app(app)
    fastpath.serve(app, "/instruments/", SearchForm.normalized_args)
