"""`flask backup`: the database and the uploads in one archive, with a manifest to check it by.

The archive's layout is described in portal.operations.shared.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db
from portal.operations import shared
from portal.operations.shared import DATABASE_FILES, FORMAT, FORMAT_VERSION, MANIFEST, UPLOADS, BackupError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


class _HashingReader:
    """Reads a file for tarfile while hashing exactly the bytes that go into the archive."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


def _portal_version() -> str | None:
    try:
        return tomllib.loads(PYPROJECT.read_text("utf-8"))["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def _alembic_revision(conn: sa.Connection, tables: list[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def _dump_postgresql(target: Path) -> dict[str, Any]:
    pg_dump = shared.pg_tool("pg_dump")
    tool_version = shared.tool_version(pg_dump)
    uri, env = shared.libpq(db.engine.url)
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            server_version = shared.server_version(conn)
            if shared.major(tool_version) < shared.major(server_version):
                raise BackupError(
                    f"pg_dump {tool_version} cannot dump a PostgreSQL {server_version} server; "
                    f"install postgresql-client-{shared.major(server_version)} or set PG_BIN_DIR"
                )
            # pg_dump reads the very snapshot the row counts are taken in, so the manifest describes
            # exactly the dump even while the portal keeps writing.
            snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            tables = sa.inspect(conn).get_table_names()
            counts = shared.count_rows(conn, tables)
            revision = _alembic_revision(conn, tables)
            shared.run_tool(
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


SQLITE_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, 7) != 'sqlite_'"


def _sqlite_count(table: str) -> str:
    quoted = table.replace('"', '""')
    return f'SELECT count(*) FROM "{quoted}"'  # noqa: S608  # nosec B608 - a table name from sqlite_master, quoted


def _dump_sqlite(target: Path) -> dict[str, Any]:
    source_path = shared.sqlite_path(db.engine.url)
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
    if archive.resolve().is_relative_to(shared.upload_folder()):
        # It would be archiving itself (and its own staging folder) while being written.
        raise BackupError("the archive cannot be written inside the upload folder it backs up")
    backend = shared.backend()
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
                    for name, path in shared.upload_files(shared.upload_folder()):
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
