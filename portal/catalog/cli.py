"""`flask catalog import|export`: catalogue files in the network's format."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from portal.catalog.exporter import export_catalog
from portal.catalog.importer import import_catalog

catalog_cli = AppGroup("catalog", help="Import and export the instrument catalogue.")


@catalog_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and report, but write nothing.")
def import_command(file: Path, dry_run: bool) -> None:
    """Import instruments from a CSV or XLSX file (upsert by 仪器编码)."""
    with file.open("rb") as handle:
        report = import_catalog(handle, file.name, dry_run=dry_run)
    if not report.ok:
        for problem in report.problems:
            click.echo(str(problem), err=True)
        if report.limit:  # a zip bomb or a huge file: say which setting stopped it
            limit = current_app.config[report.limit]
            raise click.ClickException(
                f"the file is beyond the limit {report.limit}={limit}; nothing was written"
            )
        raise click.ClickException(f"{len(report.problems)} problem(s); nothing was written")
    prefix = "dry run: would have " if dry_run else ""
    click.echo(f"{prefix}created {report.created}, updated {report.updated}, unchanged {report.unchanged}")


@catalog_cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export_command(file: Path) -> None:
    """Write the catalogue to a .csv or .xlsx file in the import format."""
    count = export_catalog(file)
    click.echo(f"exported {count} instruments to {file}")
