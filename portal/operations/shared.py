"""What backup and restore share: the archive's layout, and the tools both use (pg_dump's kin, SQLite).

An archive is a tar file (gzip-compressed when its name ends in .gz or .tgz) holding

- `database.dump`: PostgreSQL's own `pg_dump --format=custom`, or `database.sqlite3`: a copy made
  with SQLite's online backup API (a raw copy of a file being written can be torn);
- `uploads/…`: every file of UPLOAD_FOLDER (evidence, certificates, finished exports);
- `manifest.json`: when and from what the archive was made, each table's row count and each file's
  SHA-256, so that a restore can prove it got everything back.

Writing one: portal.operations.backup; reading one back: portal.operations.restore.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from portal.extensions import db

FORMAT = "liaocheng-portal-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
UPLOADS = "uploads"
DATABASE_FILES = {"postgresql": "database.dump", "sqlite": "database.sqlite3"}
CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def backend() -> str:
    name = db.engine.dialect.name
    if name not in DATABASE_FILES:
        raise BackupError(f"backups support PostgreSQL and SQLite, not {name}")
    return name


def upload_folder() -> Path:
    return Path(current_app.config["UPLOAD_FOLDER"]).resolve()


def upload_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(archive-relative name, path) of every regular file under the upload folder, sorted."""
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        # Links are not ours to follow: the portal only ever writes plain files here.
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(root).as_posix(), path


def count_rows(conn: sa.Connection, tables: list[str]) -> dict[str, int]:
    return {
        name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
        for name in sorted(tables)
    }


def major(version: str) -> int:
    return int(version.split(".")[0])


def pg_tool(name: str) -> str:
    """The pg_dump/pg_restore to run: from PG_BIN_DIR (config or environment) or the PATH."""
    bin_dir = current_app.config.get("PG_BIN_DIR") or os.environ.get("PG_BIN_DIR")
    found = shutil.which(name, path=bin_dir) if bin_dir else shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} was not found; install the PostgreSQL client tools of the server's version "
            "(e.g. postgresql-client-15) or set PG_BIN_DIR"
        )
    return found


def tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout  # noqa: S603
    match = re.search(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)", out)
    if not match:
        raise BackupError(f"cannot tell the version of {tool} from {out.strip()!r}")
    return match.group(1)


def server_version(conn: sa.Connection) -> str:
    number = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one())
    return f"{number // 10000}.{number % 10000}"


def libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for the tools, with the password in the environment, not in `ps`."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    bare = sa.URL.create(
        "postgresql", url.username, None, url.host, url.port, url.database, url.query
    )  # URL.set() cannot remove a password
    return bare.render_as_string(hide_password=False), env


def run_tool(args: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()}")


def sqlite_path(url: sa.URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise BackupError("an in-memory or URI-style SQLite database cannot be backed up or restored")
    return Path(url.database).resolve()
