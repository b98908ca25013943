"""`flask users ...`: account administration from the command line."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from portal.accounts import services
from portal.accounts.models import Institution
from portal.core.errors import ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role if r is not Role.ENTERPRISE]),
    default=Role.ADMIN.value,
    show_default=True,
    help="Enterprise accounts register themselves on the site.",
)
@click.option("--email", default=None)
@click.option("--name", "full_name", default="", help="The person's full name.")
@click.option("--institution", default=None, help="Host institution name (providers only).")
@click.password_option(help="Prompted for when not given.")
def create_command(
    username: str, role: str, email: str | None, full_name: str, institution: str | None, password: str
) -> None:
    """Create a staff account (admin by default)."""
    inst = None
    if institution:
        inst = db.session.scalar(select(Institution).where(Institution.name == institution))
        if inst is None:
            raise click.ClickException(f"unknown institution: {institution}")
    try:
        user = services.create_user(
            username, password, Role(role), email=email, full_name=full_name, institution=inst
        )
    except ValidationFailed as error:
        details = "; ".join(f"{k}: {v}" for k, v in error.fields.items())
        raise click.ClickException(f"{error.message} {details}".strip()) from None
    click.echo(f"created {user.role.value} {user.username} (id {user.id})")
