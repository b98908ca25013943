"""`flask usage …`: the usage area's commands for operators."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from portal.usage import services, tallies

usage_cli = AppGroup("usage", help="Use at the instrument: sessions and labels.")


@usage_cli.command("close-sessions")
def close_sessions_command() -> None:
    """End the sessions nobody checked out at their booking's end (what the periodic task does)."""
    click.echo(f"{services.close_ended_sessions()} sessions ended")


@usage_cli.command("tally")
def tally_command() -> None:
    """Recount the usage tallies of every month (and year) with use on record (after an upgrade or a
    bulk load; the workers keep them current afterwards)."""
    click.echo(f"{tallies.tally_all()} tally rows written")
