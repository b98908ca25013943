"""The operator's commands: `flask backup ARCHIVE`, `flask restore [--check-only] ARCHIVE`."""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from portal.operations.backup import create_backup
from portal.operations.restore import check_archive, restore_backup
from portal.operations.shared import BackupError


@click.command("backup")
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup_command(archive: Path) -> None:
    """Write the database and the uploads to ARCHIVE (.tar.gz, .tgz or .tar)."""
    try:
        manifest = create_backup(archive)
    except BackupError as error:
        raise click.ClickException(str(error)) from None
    except sa.exc.OperationalError as error:
        raise click.ClickException(f"cannot read the database: {error.orig}") from None
    click.echo(
        f"backed up {manifest['backend']} database ({len(manifest['tables'])} tables, "
        f"{sum(manifest['tables'].values())} rows) and {len(manifest['uploads'])} files to {archive}"
    )


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check-only", is_flag=True, help="Verify the archive against its manifest; restore nothing.")
@with_appcontext
def restore_command(archive: Path, check_only: bool) -> None:
    """Restore ARCHIVE into an empty database and an empty upload folder, then verify both."""
    try:
        if check_only:
            manifest = check_archive(archive)
            click.echo(
                f"{archive} is intact: {manifest['backend']} database of {manifest['created_at']}, "
                f"{len(manifest['tables'])} tables, {sum(manifest['tables'].values())} rows, "
                f"{len(manifest['uploads'])} files"
            )
            return
        report = restore_backup(archive)
    except BackupError as error:
        raise click.ClickException(str(error)) from None
    except sa.exc.OperationalError as error:
        raise click.ClickException(f"cannot use the target database: {error.orig}") from None
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.problems:
        for problem in report.problems:
            click.echo(problem, err=True)
        raise click.ClickException(
            f"the restored data does not match the manifest ({len(report.problems)} problems)"
        )
    click.echo(
        f"restored {report.tables} tables ({report.rows} rows) and {report.files} files from {archive} "
        f"(backup of {report.manifest['created_at']}); every count and checksum matches"
    )
