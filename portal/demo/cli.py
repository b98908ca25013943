"""`flask demo load`: fill an empty database with the demo network and print the demo logins."""

from __future__ import annotations

import os

import click
from flask import current_app
from flask.cli import AppGroup
from werkzeug.serving import run_simple

from portal.demo import (
    DEFAULT_BOOKINGS,
    DEFAULT_ENTERPRISE_USERS,
    DEFAULT_INSTRUMENTS,
    DEFAULT_VOUCHERS,
    DEMO_PASSWORD,
    services,
)
from portal.demo.scheduler import DemoScheduler

demo_cli = AppGroup("demo", help="Demo data.")


@demo_cli.command("load")
@click.option("--instruments", default=DEFAULT_INSTRUMENTS, show_default=True, type=click.IntRange(1))
@click.option("--enterprises", default=DEFAULT_ENTERPRISE_USERS, show_default=True, type=click.IntRange(3))
@click.option(
    "--bookings",
    default=DEFAULT_BOOKINGS,
    show_default=True,
    type=click.IntRange(0),
    help="At most this many bookings (the year needs about 110,000; fewer scale every instrument down).",
)
@click.option(
    "--vouchers",
    default=DEFAULT_VOUCHERS,
    show_default=True,
    type=click.IntRange(0),
    help="Enterprises with a voucher.",
)
@click.option("--seed", default=2026, show_default=True, type=int)
def load_command(instruments: int, enterprises: int, bookings: int, vouchers: int, seed: int) -> None:
    """Load the demo network (a database that already has data is left alone)."""
    if services.database_has_data():
        click.echo("The database already has data; the demo network was not loaded again.")
    else:
        summary = services.load_demo(
            instruments=instruments,
            enterprise_users=enterprises,
            bookings=bookings,
            vouchers=vouchers,
            seed=seed,
        )
        click.echo(
            f"Loaded {summary.institutions} institutions, {summary.instruments} instruments, "
            f"{summary.enterprise_users} enterprise users, {summary.staff_users} staff and provider users "
            f"and {summary.bookings} bookings; {summary.vouchers} vouchers and {summary.claims} claims; "
            f"{summary.photos} instrument photos."
        )
    click.echo(f"Demo logins (password {DEMO_PASSWORD}):")
    for username, what in (
        ("admin", "administrator"),
        ("reviewer", "bureau reviewer"),
        ("reviewer2", "second reviewer"),
        ("finance", "bureau finance"),
        ("provider", "instrument manager, 聊城大学"),
        ("provider2", "instrument manager, 鲁西化工"),
        ("enterprise", "verified tech SME"),
        ("enterprise-staff", "a colleague at enterprise (staff, not its account holder)"),
        ("enterprise2", "another verified enterprise"),
        ("enterprise3", "a verified enterprise suspended from online booking (no-shows)"),
        ("newco", "registered, not yet verified"),
    ):
        click.echo(f"  {username:<12} {what}")


@demo_cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def serve_command(host: str, port: int) -> None:
    """Serve the portal with the periodic tasks running in-process (no broker, no `celery beat`)."""
    # current_app is typed as the Flask it stands for, not as the proxy that has this method.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.config["PORTAL_BASE_URL"] = serving_base_url(host, port)
    scheduler = DemoScheduler(app)
    scheduler.start()
    click.echo(
        f"Serving on http://{host}:{port} (Ctrl-C to stop); the periodic tasks run every "
        f"{int(scheduler.longest)} s at most."
    )
    try:
        # Werkzeug's server directly: Flask refuses app.run() inside a `flask` command.
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        scheduler.stop()


def serving_base_url(host: str, port: int) -> str:
    """Where links in mails point: PORTAL_BASE_URL when set, else the address the demo is served on."""
    return os.environ.get("PORTAL_BASE_URL") or f"http://{host}:{port}"
