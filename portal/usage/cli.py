"""`flask usage …`: the usage area's commands for operators."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from portal.usage import services

usage_cli = AppGroup("usage", help="Use at the instrument: sessions and labels.")


@usage_cli.command("close-sessions")
def close_sessions_command() -> None:
    """End the sessions nobody checked out at their booking's end (what the periodic task does)."""
    click.echo(f"{services.close_ended_sessions()} sessions ended")
