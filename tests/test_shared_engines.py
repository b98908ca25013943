"""The tests' apps share one engine per database (tests/conftest.py SharedEngines): what a test sees of
its database is the same as with an engine of its own, and nothing one test leaves reaches the next."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.extensions import db
from tests.conftest import SharedEngines, fresh_sqlite_copy, make_app


def _engine_of(url: str, **overrides) -> sa.Engine:
    with make_app(url, **overrides).app_context():
        return db.engine


def test_apps_on_one_database_share_its_engine_and_its_compiled_statements(database_url: str) -> None:
    first = make_app(database_url)
    with first.app_context():
        db.session.execute(sa.select(sa.literal(1))).scalar()
        engine = db.engine
        compiled = len(engine._compiled_cache)
        db.session.remove()
        db.engine.dispose()
    second = make_app(database_url)
    with second.app_context():
        assert db.engine is engine
        db.session.execute(sa.select(sa.literal(1))).scalar()
        assert len(db.engine._compiled_cache) == compiled, "the statement was compiled again"
        db.session.remove()


def test_other_engine_options_get_an_engine_of_their_own(database_url: str) -> None:
    plain = _engine_of(database_url)
    pooled = _engine_of(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 3, "max_overflow": 0})
    assert pooled is not plain
    assert pooled.pool.size() == 3


def test_only_the_newest_engines_are_kept_and_the_others_closed(tmp_path: Path) -> None:
    engines = SharedEngines()
    urls = [f"sqlite:///{tmp_path / f'{n}.db'}" for n in range(SharedEngines.KEEP + 1)]
    made = [engines(None, {"url": url}, None) for url in urls[:-1]]  # type: ignore[arg-type]
    with made[1].connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert made[1].pool.checkedin() == 1
    assert engines(None, {"url": urls[0]}, None) is made[0]  # type: ignore[arg-type]  # the newest again
    newest = engines(None, {"url": urls[-1]}, None)  # type: ignore[arg-type]
    assert list(engines.engines.values()) == [*made[2:], made[0], newest]  # the oldest, made[1], went
    assert made[1].pool.checkedin() == 0  # its connection closed
    again = engines(None, {"url": urls[1]}, None)  # type: ignore[arg-type]
    assert again is not made[1]


@pytest.mark.both_backends
def test_a_fresh_sqlite_copy_holds_nothing_of_the_last_test(sqlite_template: Path, worker_tmp: Path) -> None:
    url = fresh_sqlite_copy(sqlite_template, worker_tmp)
    leftover = sa.create_engine(url)  # a connection the last test never closed, in write-ahead mode
    conn = leftover.connect()
    conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    conn.exec_driver_sql("CREATE TABLE left_over (n INTEGER)")
    conn.commit()
    assert fresh_sqlite_copy(sqlite_template, worker_tmp) == url
    fresh = sa.create_engine(url)
    try:
        with fresh.connect() as check:
            tables = check.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
        assert "instruments" in tables
        assert "left_over" not in tables
    finally:
        conn.close()
        leftover.dispose()
        fresh.dispose()
