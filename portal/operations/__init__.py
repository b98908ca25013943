"""Operations: what an operator runs on the server, never reachable from the web.

`flask backup` and `flask restore` (portal.operations.cli) write the database and the uploads to one
archive and put them back, checked both ways. The package sits with the other entry points above
every area (it reads and replaces the whole database) and below only the application factory.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register `flask backup` and `flask restore`."""
    # Imported here, as every area does: this module runs whenever any operations module is imported.
    from portal.operations.cli import backup_command, restore_command

    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
