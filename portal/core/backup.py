"""`flask backup` / `flask restore`: the database and the uploads in one archive, checked both ways.

An archive is a tar file (gzip-compressed when its name ends in .gz or .tgz) holding

- `database.dump`: PostgreSQL's own `pg_dump --format=custom`, or `database.sqlite3`: a copy made
  with SQLite's online backup API (a raw copy of a file being written can be torn);
- `uploads/…`: every file of UPLOAD_FOLDER (evidence, certificates, finished exports);
- `manifest.json`: when and from what the archive was made, each table's row count and each file's
  SHA-256, so that a restore can prove it got everything back.

A restore goes only into an empty database and an empty upload folder: overwriting a live portal
is the one mistake a backup tool must not make easy, so emptying the target (dropdb/createdb, a
new SQLite path) stays a deliberate step of its own. The commands are not reachable from the web.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from portal.extensions import db

FORMAT = "liaocheng-portal-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
UPLOADS = "uploads"
DATABASE_FILES = {"postgresql": "database.dump", "sqlite": "database.sqlite3"}
CHUNK = 1024 * 1024
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    tables: int = 0
    rows: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- helpers -------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingReader:
    """Reads a file for tarfile while hashing exactly the bytes that go into the archive."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _backend() -> str:
    name = db.engine.dialect.name
    if name not in DATABASE_FILES:
        raise BackupError(f"backups support PostgreSQL and SQLite, not {name}")
    return name


def _portal_version() -> str | None:
    try:
        return tomllib.loads(PYPROJECT.read_text("utf-8"))["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def _upload_folder() -> Path:
    return Path(current_app.config["UPLOAD_FOLDER"]).resolve()


def _upload_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(archive-relative name, path) of every regular file under the upload folder, sorted."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        # Links are not ours to follow: the portal only ever writes plain files here.
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(root).as_posix(), path


def _count_rows(conn: sa.Connection, tables: list[str]) -> dict[str, int]:
    return {
        name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
        for name in sorted(tables)
    }


def _alembic_revision(conn: sa.Connection, tables: list[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _major(version: str) -> int:
    return int(version.split(".")[0])


# --- PostgreSQL tools ----------------------------------------------------------------------------


def _pg_tool(name: str) -> str:
    """The pg_dump/pg_restore to run: from PG_BIN_DIR (config or environment) or the PATH."""
    bin_dir = current_app.config.get("PG_BIN_DIR") or os.environ.get("PG_BIN_DIR")
    found = shutil.which(name, path=bin_dir) if bin_dir else shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} was not found; install the PostgreSQL client tools of the server's version "
            "(e.g. postgresql-client-15) or set PG_BIN_DIR"
        )
    return found


def _tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout  # noqa: S603
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out)
    if not match:
        raise BackupError(f"cannot tell the version of {tool} from {out.strip()!r}")
    return match.group(1)


def _server_version(conn: sa.Connection) -> str:
    number = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    return f"{number // 10000}.{number % 10000}"


def _libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for the tools, with the password in the environment, not in `ps`."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    bare = sa.URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    )  # URL.set() cannot remove a password
    return bare.render_as_string(hide_password=False), env


def _run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()}")


# --- backup --------------------------------------------------------------------------------------


def _dump_postgresql(target: Path) -> dict[str, Any]:
    pg_dump = _pg_tool("pg_dump")
    tool_version = _tool_version(pg_dump)
    uri, env = _libpq(db.engine.url)
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            server_version = _server_version(conn)
            if _major(tool_version) < _major(server_version):
                raise BackupError(
                    f"pg_dump {tool_version} cannot dump a PostgreSQL {server_version} server; "
                    f"install postgresql-client-{_major(server_version)} or set PG_BIN_DIR"
                )
            # pg_dump reads the very snapshot the row counts are taken in, so the manifest describes
            # exactly the dump even while the portal keeps writing.
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            tables = sa.inspect(conn).get_table_names()
            counts = _count_rows(conn, tables)
            revision = _alembic_revision(conn, tables)
            _run_tool(
                [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={target}", f"--dbname={uri}"],
                env,
                "pg_dump",
            )
    return {
        "server_version": server_version,
        "pg_dump_version": tool_version,
        "tables": counts,
        "alembic_revision": revision,
    }


def _sqlite_path(url: sa.URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise BackupError("an in-memory or URI-style SQLite database cannot be backed up or restored")
    return Path(url.database).resolve()


SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) != 'sqlite_'"


def _sqlite_count(table: str) -> str:
    quoted = table.replace('"', '""')
    return f'SELECT count(*) FROM "{quoted}"'  # noqa: S608  # nosec B608 - a table name from sqlite_master, quoted


def _dump_sqlite(target: Path) -> dict[str, Any]:
    source_path = _sqlite_path(db.engine.url)
    if not source_path.is_file():
        raise BackupError(f"the SQLite database {source_path} does not exist")
    source = sqlite3.connect(source_path, timeout=30)
    copy = sqlite3.connect(target)
    try:
        # One step (pages=-1) copies everything under a single read lock: a consistent snapshot.
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, no -wal beside it
        # Counted on the copy with sqlite3 itself: SQLAlchemy's engine would switch it back to WAL.
        tables = [name for (name,) in copy.execute(SQLITE_TABLES)]
        counts = {name: copy.execute(_sqlite_count(name)).fetchone()[0] for name in sorted(tables)}
        revision = None
        if "alembic_version" in tables:
            row = copy.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    finally:
        source.close()
        copy.close()
    return {
        "server_version": sqlite3.sqlite_version,
        "tables": counts,
        "alembic_revision": revision,
    }


def _open_for_writing(archive: Path, raw: IO[bytes]) -> tarfile.TarFile:
    if archive.name.endswith((".gz", ".tgz")):
        # Level 6, not tarfile's 9: the dump is compressed already and most uploads are PDFs and
        # JPEGs, so 9 would only cost time.
        return tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6)
    return tarfile.open(fileobj=raw, mode="w")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    """Add a file and return its size and the SHA-256 of exactly the bytes archived."""
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        info = tarfile.TarInfo(name)
        # The size is fixed when the file is opened: a file still being written (an upload in
        # flight, not yet in the database) is archived as it stood then, and hashed as archived.
        info.size = stat.st_size
        info.mtime = int(stat.st_mtime)
        info.mode = 0o600
        reader = _HashingReader(handle)
        tar.addfile(info, reader)
    return {"size": info.size, "sha256": reader.digest.hexdigest()}


def create_backup(archive: Path) -> dict[str, Any]:
    """Write the database and the uploads to `archive` (which must not exist); return the manifest."""
    archive = Path(archive)
    if archive.exists():
        raise BackupError(f"{archive} already exists; a backup never overwrites a file")
    if not archive.parent.is_dir():
        raise BackupError(f"the folder {archive.parent} does not exist")
    if archive.resolve().is_relative_to(_upload_folder()):
        # It would be archiving itself (and its own staging folder) while being written.
        raise BackupError("the archive cannot be written inside the upload folder it backs up")
    backend = _backend()
    created_at = datetime.now(UTC)
    partial = archive.with_name(f".{archive.name}.partial")
    with tempfile.TemporaryDirectory(prefix=".portal-backup-", dir=archive.parent) as staging:
        db_name = DATABASE_FILES[backend]
        db_file = Path(staging) / db_name
        info = _dump_postgresql(db_file) if backend == "postgresql" else _dump_sqlite(db_file)
        # The database first, the files second: every file a dumped row refers to was complete
        # before that row was committed, so it is complete now.
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": created_at.isoformat(timespec="seconds"),
            "portal_version": _portal_version(),
            "alembic_revision": info.pop("alembic_revision"),
            "backend": backend,
            **{k: v for k, v in info.items() if k != "tables"},
            "database": {"file": db_name},
            "tables": info["tables"],
            "uploads": {},
        }
        # Owner-only from the first byte: the archive holds password hashes and enterprises' files.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                with _open_for_writing(archive, raw) as tar:
                    manifest["database"].update(_add_file(tar, db_name, db_file))
                    for name, path in _upload_files(_upload_folder()):
                        manifest["uploads"][name] = _add_file(tar, f"{UPLOADS}/{name}", path)
                    body = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True).encode()
                    _add_bytes(tar, MANIFEST, body, created_at.timestamp())
                raw.flush()
                os.fsync(raw.fileno())  # on disk before it is renamed, so a crash leaves no torn archive
            # Only a complete archive gets the name a cron job or an operator will look for.
            os.replace(partial, archive)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    current_app.logger.info(
        "backup written to %s: %s, %d tables, %d rows, %d files",
        archive,
        backend,
        len(manifest["tables"]),
        sum(manifest["tables"].values()),
        len(manifest["uploads"]),
    )
    return manifest


# --- restore -------------------------------------------------------------------------------------


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
    elif _sha256_file(db_file) != database.get("sha256"):
        problems.append("the database dump does not match its checksum")
    listed: dict[str, dict[str, Any]] = manifest["uploads"]
    present = dict(_upload_files(staging / UPLOADS))
    for name in sorted(set(listed) - set(present)):
        problems.append(f"upload {name} is listed in the manifest but missing")
    for name in sorted(set(present) - set(listed)):
        problems.append(f"upload {name} is in the archive but not in the manifest")
    for name in sorted(set(listed) & set(present)):
        if _sha256_file(present[name]) != listed[name].get("sha256"):
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
    parent = _upload_folder().parent
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
    folder = _upload_folder()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(
            f"the upload folder {folder} is not empty; restore into an empty or new folder (UPLOAD_FOLDER)"
        )


def _restore_postgresql(manifest: dict[str, Any], dump: Path) -> None:
    pg_restore = _pg_tool("pg_restore")
    tool_version = _tool_version(pg_restore)
    with db.engine.connect() as conn:
        server_version = _server_version(conn)
    dumped_with = str(manifest.get("pg_dump_version") or "0")
    if _major(tool_version) < _major(dumped_with):
        raise BackupError(
            f"the archive was made by pg_dump {dumped_with}; pg_restore {tool_version} cannot read it "
            "(install a newer PostgreSQL client or set PG_BIN_DIR)"
        )
    source_server = str(manifest.get("server_version") or "0")
    if _major(server_version) < _major(source_server):
        raise BackupError(
            f"the archive comes from PostgreSQL {source_server}; it cannot be restored into the older "
            f"PostgreSQL {server_version}"
        )
    db.engine.dispose()
    uri, env = _libpq(db.engine.url)
    # One transaction: a restore that fails part-way leaves the database as empty as it found it.
    # Ownership and grants are the target's own (its roles need not match the source's).
    _run_tool(
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
    target_path = _sqlite_path(db.engine.url)
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
    folder = _upload_folder()
    folder.mkdir(parents=True, exist_ok=True)
    moved = 0
    for name, path in _upload_files(staging / UPLOADS):
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
        counts = _count_rows(conn, sorted(set(expected) & present))
    for name, count in counts.items():
        if count != expected[name]:
            report.problems.append(f"table {name} has {count} rows, the manifest says {expected[name]}")
    report.tables = len(counts)
    report.rows = sum(counts.values())
    listed: dict[str, dict[str, Any]] = manifest["uploads"]
    folder = _upload_folder()
    for name, meta in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            report.problems.append(f"upload {name} is missing")
        elif _sha256_file(path) != meta.get("sha256"):
            report.problems.append(f"upload {name} does not match its checksum")
        else:
            report.files += 1
    return report


def _schema_note(revision: str | None) -> str | None:
    """What to do when the backup's schema is not this code's."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from portal import MIGRATIONS_DIR

    scripts = ScriptDirectory(MIGRATIONS_DIR)
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
    backend = _backend()
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


# --- commands ------------------------------------------------------------------------------------


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
