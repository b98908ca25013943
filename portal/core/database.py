"""Transaction control that behaves the same on SQLite and PostgreSQL.

SQLite serialises writers with its database lock; a check-then-insert is only safe if the transaction
takes the write lock before it reads (BEGIN IMMEDIATE). PostgreSQL lets writers run concurrently and
relies on constraints and row or advisory locks instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Table, event, func, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from portal.extensions import db

# Namespaces for PostgreSQL advisory locks (first key), the object id is the second key.
LOCK_INSTRUMENT_CALENDAR = 7301


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection, connection_record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        # SQLAlchemy emits BEGIN itself (see _sqlite_begin), so that a transaction can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL lets readers go on while one writer holds the lock.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN " + conn.get_execution_options().get("sqlite_begin", "DEFERRED"))


def dialect() -> str:
    return db.session.get_bind().dialect.name


def hours_between(start: Any, end: Any) -> Any:
    """SQL for the hours between two timestamp (or time-of-day) columns, on either backend."""
    if dialect() == "postgresql":
        return func.extract("epoch", end - start) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


@contextmanager
def serialized_write(lock: tuple[int, int] | None = None, *, shared: bool = False) -> Iterator[None]:
    """A write transaction in which a check followed by a write cannot be raced.

    On SQLite the transaction begins IMMEDIATE (it holds the database's write lock from its first
    statement). On PostgreSQL, `lock` names an advisory lock taken for the transaction: `shared=True`
    lets many such writers run together (their conflicts are caught by constraints) while excluding
    the exclusive holder. The caller commits; an exception rolls the transaction back.
    """
    if db.session().in_transaction():
        db.session.commit()  # finish the request's read transaction so the write can begin afresh
    db.session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    if lock is not None and dialect() == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        db.session.execute(text(f"SELECT {function}(:a, :b)"), {"a": lock[0], "b": lock[1]})
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise


def table_of(model: type[Any]) -> Table:
    """The table a model is mapped to, for Core statements (declared a FromClause, it is a Table)."""
    return cast(Table, model.__table__)


def insert_ignore(model, values: dict) -> None:
    """INSERT a row unless one with the same unique key exists (safe when two transactions race)."""
    table = table_of(model)
    insert = postgresql_insert if dialect() == "postgresql" else sqlite_insert
    db.session.execute(insert(table).values(**values).on_conflict_do_nothing())


def changed_rows(statement: Executable) -> int:
    """Execute an UPDATE or DELETE in the session and return the number of rows it matched.

    Session.execute() is typed as returning a Result; for these statements it is a CursorResult, the
    kind that has a rowcount.
    """
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def locked(model, object_id: int):
    """The row, locked for this transaction (FOR UPDATE on PostgreSQL) and read afresh after the wait."""
    return db.session.scalar(
        select(model).where(model.id == object_id).with_for_update().execution_options(populate_existing=True)
    )


AFTER_COMMIT = "after_commit_callbacks"


def after_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the current transaction has committed; never if it rolls back.

    Work handed to Celery must wait for the commit (a worker would not see the rows yet), and an
    eager task must not run while this session still holds a transaction (SQLite would be locked).
    """
    db.session().info.setdefault(AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(AFTER_COMMIT, []):
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)
