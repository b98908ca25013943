"""`flask restore`: an archive back into an empty database and an empty upload folder, then verified.

A restore goes only into an empty database and an empty upload folder: overwriting a live portal
is the one mistake a backup tool must not make easy, so emptying the target (dropdb/createdb, a
new SQLite path) stays a deliberate step of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask import current_app

from portal.extensions import db
from portal.operations import shared
from portal.operations.shared import DATABASE_FILES, FORMAT, FORMAT_VERSION, MANIFEST, UPLOADS, BackupError


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    tables: int = 0
    rows: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _safe_member(member: tarfile.TarInfo) -> str | None:
    """Why this archive member may not be extracted, or None when it is a plain file we expect."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return "an absolute path"
    if ".." in parts:
        return "a path leading out of the archive"
    if not (member.isfile() or member.isdir()):
        return "not a plain file"
    if member.isdir():
        return None if parts and parts[0] == UPLOADS else "an unexpected folder"
    if name in (MANIFEST, *DATABASE_FILES.values()):
        return None
    if len(parts) >= 2 and parts[0] == UPLOADS:
        return None
    return "not part of a portal backup"


def _extract(archive: Path, staging: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            members = tar.getmembers()
            for member in members:
                reason = _safe_member(member)
                if reason:
                    raise BackupError(f"{archive} is refused: member {member.name!r} is {reason}")
            if MANIFEST not in {m.name for m in members}:
                raise BackupError(f"{archive} has no {MANIFEST}; it is not a portal backup")
            # The data filter is the second lock on the door: it too refuses links, devices and
            # paths outside the staging folder.
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BackupError(f"{archive} cannot be read (damaged, or not a backup archive): {error}") from None
    try:
        manifest = json.loads((staging / MANIFEST).read_text("utf-8"))
    except (ValueError, OSError) as error:
        raise BackupError(f"the manifest of {archive} is unreadable: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a portal backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version")
        raise BackupError(f"{archive} has backup format {found}; this portal reads {FORMAT_VERSION}")
    malformed = _malformed(manifest)
    if malformed:
        raise BackupError(f"the manifest of {archive} is malformed: {malformed}")
    return manifest


def _malformed(manifest: dict[str, Any]) -> str | None:
    backend, tables = manifest.get("backend"), manifest.get("tables")
    uploads, database = manifest.get("uploads"), manifest.get("database")
    if not isinstance(backend, str) or backend not in DATABASE_FILES:
        return f"unknown database kind {backend!r}"
    if not isinstance(database, dict) or database.get("file") != DATABASE_FILES[backend]:
        return "no database entry"
    if not isinstance(tables, dict) or not all(type(n) is int and n >= 0 for n in tables.values()):
        return "the row counts are not numbers"
    if not isinstance(uploads, dict) or not all(isinstance(v, dict) for v in uploads.values()):
        return "the file list is not a list of files"
    return None


def _check_archive(manifest: dict[str, Any], staging: Path) -> list[str]:
    """Everything in the archive against the manifest; a list of what does not match."""
    problems = []
    database = manifest["database"]
    db_file = staging / database["file"]
    if not db_file.is_file():
        problems.append("the database dump is missing")
    elif shared.sha256_file(db_file) != database.get("sha256"):
        problems.append("the database dump does not match its checksum")
    listed: dict[str, dict[str, Any]] = manifest["uploads"]
    present = dict(shared.upload_files(staging / UPLOADS))
    for name in sorted(set(listed) - set(present)):
        problems.append(f"upload {name} is listed in the manifest but missing")
    for name in sorted(set(present) - set(listed)):
        problems.append(f"upload {name} is in the archive but not in the manifest")
    for name in sorted(set(listed) & set(present)):
        if shared.sha256_file(present[name]) != listed[name].get("sha256"):
            problems.append(f"upload {name} does not match its checksum")
    return problems


def check_archive(archive: Path) -> dict[str, Any]:
    """Read and verify an archive without restoring it; raises BackupError if anything is off."""
    with tempfile.TemporaryDirectory(prefix=".portal-check-", dir=_staging_parent()) as tmp:
        manifest = _extract(Path(archive), Path(tmp))
        problems = _check_archive(manifest, Path(tmp))
    if problems:
        raise BackupError(f"{archive} is corrupt or was altered: " + "; ".join(problems))
    return manifest


def _staging_parent() -> Path:
    """Archives are unpacked beside the upload folder: the files are then moved into place, not
    copied a second time, and a large dump does not land in a small /tmp."""
    parent = shared.upload_folder().parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _existing_tables() -> list[str]:
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # Any relation in any schema of ours (not just public): a non-empty target is refused.
            return list(
                conn.execute(
                    sa.text(
                        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                        "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' "
                        "ORDER BY 1"
                    )
                ).scalars()
            )
        return list(
            conn.execute(
                sa.text("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")
            ).scalars()
        )


def _require_empty_target(backend: str) -> None:
    tables = _existing_tables()
    if tables:
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        how = (
            "dropdb/createdb it (or create a new database and point DATABASE_URL at it)"
            if backend == "postgresql"
            else "point DATABASE_URL at a new SQLite file"
        )
        raise BackupError(
            f"the target database is not empty ({len(tables)} tables: {shown}); a restore never "
            f"overwrites data: {how}, and restore before `flask db upgrade` runs on it"
        )
    folder = shared.upload_folder()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(
            f"the upload folder {folder} is not empty; restore into an empty or new folder (UPLOAD_FOLDER)"
        )


def _restore_postgresql(manifest: dict[str, Any], dump: Path) -> None:
    pg_restore = shared.pg_tool("pg_restore")
    tool_version = shared.tool_version(pg_restore)
    with db.engine.connect() as conn:
        server_version = shared.server_version(conn)
    dumped_with = str(manifest.get("pg_dump_version") or "0")
    if shared.major(tool_version) < shared.major(dumped_with):
        raise BackupError(
            f"the archive was made by pg_dump {dumped_with}; pg_restore {tool_version} cannot read it "
            "(install a newer PostgreSQL client or set PG_BIN_DIR)"
        )
    source_server = str(manifest.get("server_version") or "0")
    if shared.major(server_version) < shared.major(source_server):
        raise BackupError(
            f"the archive comes from PostgreSQL {source_server}; it cannot be restored into the older "
            f"PostgreSQL {server_version}"
        )
    db.engine.dispose()
    uri, env = shared.libpq(db.engine.url)
    # One transaction: a restore that fails part-way leaves the database as empty as it found it.
    # Ownership and grants are the target's own (its roles need not match the source's).
    shared.run_tool(
        [
            pg_restore,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={uri}",
            str(dump),
        ],
        env,
        "pg_restore",
    )


def _restore_sqlite(dump: Path) -> None:
    target_path = shared.sqlite_path(db.engine.url)
    db.engine.dispose()
    target_path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(dump)
    target = sqlite3.connect(target_path, timeout=30)
    try:
        source.backup(target)  # one transaction on the target: all of it or none
    finally:
        source.close()
        target.close()


def _move_uploads(staging: Path) -> int:
    folder = shared.upload_folder()
    folder.mkdir(parents=True, exist_ok=True)
    moved = 0
    for name, path in shared.upload_files(staging / UPLOADS):
        destination = folder / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, destination)
        moved += 1
    return moved


def verify_restored(manifest: dict[str, Any]) -> RestoreReport:
    """The restored database and upload folder against the manifest."""
    report = RestoreReport(manifest)
    db.engine.dispose()
    expected: dict[str, int] = manifest["tables"]
    with db.engine.connect() as conn:
        present = set(sa.inspect(conn).get_table_names())
        for name in sorted(set(expected) - present):
            report.problems.append(f"table {name} is missing")
        counts = shared.count_rows(conn, sorted(set(expected) & present))
    for name, count in counts.items():
        if count != expected[name]:
            report.problems.append(f"table {name} has {count} rows, the manifest says {expected[name]}")
    report.tables = len(counts)
    report.rows = sum(counts.values())
    listed: dict[str, dict[str, Any]] = manifest["uploads"]
    folder = shared.upload_folder()
    for name, meta in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            report.problems.append(f"upload {name} is missing")
        elif shared.sha256_file(path) != meta.get("sha256"):
            report.problems.append(f"upload {name} does not match its checksum")
        else:
            report.files += 1
    return report


def _schema_note(revision: str | None) -> str | None:
    """What to do when the backup's schema is not this code's."""
    # The migrations the app itself uses (Flask-Migrate keeps their folder), as `flask db upgrade` would.
    scripts = ScriptDirectory(current_app.extensions["migrate"].directory)
    if not revision or revision in scripts.get_heads():
        return None
    try:
        scripts.get_revision(revision)
    except CommandError:
        return (
            f"the backup's schema is at migration {revision}, which this code does not know: "
            "it was made by a newer portal; deploy that version (or newer) before starting the portal"
        )
    return (
        f"the backup's schema is at migration {revision}, older than this code's: "
        "run `flask db upgrade` before starting the portal"
    )


def restore_backup(archive: Path) -> RestoreReport:
    """Restore `archive` into the configured (empty) database and upload folder, then verify it.

    Raises BackupError, having written nothing, when the archive is damaged or altered, made from
    the other backend, or the target is not empty. Problems found after restoring are in the report.
    """
    archive = Path(archive)
    backend = shared.backend()
    with tempfile.TemporaryDirectory(prefix=".portal-restore-", dir=_staging_parent()) as tmp:
        staging = Path(tmp)
        manifest = _extract(archive, staging)
        problems = _check_archive(manifest, staging)
        if problems:
            raise BackupError(
                f"{archive} is corrupt or was altered; nothing was restored: " + "; ".join(problems)
            )
        if manifest.get("backend") != backend:
            raise BackupError(
                f"{archive} holds a {manifest.get('backend')} database and the target is {backend}; "
                "restore into the same kind of database it was made from"
            )
        _require_empty_target(backend)
        dump = staging / DATABASE_FILES[backend]
        if backend == "postgresql":
            _restore_postgresql(manifest, dump)
        else:
            _restore_sqlite(dump)
        _move_uploads(staging)
    report = verify_restored(manifest)
    note = _schema_note(manifest.get("alembic_revision"))
    if note:
        report.notes.append(note)
    # A warning, so that it shows in the default log: a restore is an event someone should see.
    current_app.logger.warning(
        "backup %s restored: %d tables, %d rows, %d files, %d problems",
        archive,
        report.tables,
        report.rows,
        report.files,
        len(report.problems),
    )
    return report
