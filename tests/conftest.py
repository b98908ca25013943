"""Test fixtures: database tests run on PostgreSQL and SQLite, each schema made by the migrations.

PostgreSQL, Redis and Chromium are used when they are there. With PORTAL_REQUIRE_SERVICES=1 (set by
CI) a missing one is a failure instead of a skip. Which test runs on which backend: see
`pytest_collection_modifyitems` below.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import flask_migrate
import pytest
import sqlalchemy as sa
from celery._state import _set_task_join_will_block
from filelock import FileLock
from flask import Flask, has_app_context
from flask.testing import FlaskClient
from jinja2.bccache import Bucket, BytecodeCache

from portal import create_app
from portal.catalog.synonyms import read_seed
from portal.extensions import db, limiter
from tests import routing_memo

routing_memo.install()  # each URL rule compiled once per test process (tests/routing_memo.py)


class TemplateCodeCache(BytecodeCache):
    """Compiled templates kept for the test process. Every test makes an app of its own, and each
    app's Jinja environment compiled every template it rendered again: a third of the time of the
    page tests. The key is the template's name and a checksum of its source, so an edited template
    is compiled afresh."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CODE = TemplateCodeCache()

REQUIRE_SERVICES = os.environ.get("PORTAL_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# Reference data the migrations insert; the tests never change it, so it survives the clean-up.
KEEP_TABLES = {"alembic_version", "categories", "catalog_state"}


def service_missing(what: str) -> None:
    """Skip (locally) or fail (in CI) when a real service the test needs is not there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (PORTAL_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


def _pg_url(name: str) -> str:
    url = sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def _pg_admin(statement: str) -> None:
    admin = sa.create_engine(
        sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(statement))
    finally:
        admin.dispose()


def create_pg_database(name: str, template: str = "template0") -> str:
    """A fresh PostgreSQL database, empty or a copy of `template` (a database nobody is connected to);
    raises OperationalError when the server is not there."""
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE "{template}"')
    # A test's commits need not wait for the disk: no test outlives a crash of the shared server
    # (the fault tests run clusters of their own), and what a commit makes visible, and when, is
    # the same without the flush.
    _pg_admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return _pg_url(name)


@sa.event.listens_for(sa.engine.Engine, "connect")
def _sqlite_without_flushes(dbapi_connection, _record) -> None:
    """The tests' SQLite files need not reach the disk at each commit either (no test survives a
    power cut); locking and visibility are the same."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA synchronous=OFF")


def drop_pg_database(name: str) -> None:
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_dropping: list[threading.Thread] = []


def drop_pg_database_soon(name: str) -> None:
    """Drop the database in the background: DROP DATABASE waits for a checkpoint (seconds on a busy
    server), which the next test need not wait for. The pg_template fixture waits for all at the end."""
    thread = threading.Thread(target=drop_pg_database, args=(name,), name=f"drop {name}")
    thread.start()
    _dropping.append(thread)


def demo_upload_folder(url: str) -> str:
    """Where the demo loaded into this database keeps its files (evidence, photos): beside a SQLite
    file, in the temporary folder for a PostgreSQL database (its names are unique per run)."""
    database = sa.engine.make_url(url).database
    if url.startswith("sqlite"):
        return str(Path(database).with_name(Path(database).stem + "-uploads"))
    return str(Path(tempfile.gettempdir()) / f"{database}-uploads")


def load_demo_into(url: str) -> None:
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "UPLOAD_FOLDER": demo_upload_folder(url)})
    with app.app_context():
        from portal.demo.services import load_demo

        load_demo()
        db.engine.dispose()


def migrate_database(url: str) -> None:
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets its own copy."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template(worker_id: str) -> Iterator[str | None]:
    """The name of a PostgreSQL database migrated once per test process (None without PostgreSQL).
    Databases a test needs migrated are copies of it (CREATE DATABASE … TEMPLATE): a copy takes a
    fraction of a second, the migrations several seconds."""
    name = re.sub(r"\W", "_", f"portal_template_{worker_id}_{os.getpid()}")
    try:
        url = create_pg_database(name)
    except sa.exc.OperationalError:
        yield None
        return
    migrate_database(url)
    yield name
    for thread in _dropping:
        thread.join()
    drop_pg_database(name)


@pytest.fixture(scope="session")
def pg_database(worker_id: str, pg_template: str | None) -> Iterator[str | None]:
    """A PostgreSQL database of this test run (one per xdist worker), migrated."""
    if pg_template is None:
        yield None
        return
    name = re.sub(r"\W", "_", f"portal_test_{worker_id}_{os.getpid()}")
    url = create_pg_database(name, template=pg_template)
    yield url
    drop_pg_database(name)


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


# Sequences of the cleaned tables that have handed out a value go back to their start, as
# TRUNCATE … RESTART IDENTITY did.
_RESTART_USED_SEQUENCES = sa.text(
    """
    SELECT setval(format('%I', s.relname), q.start_value, false)
    FROM pg_class s
    JOIN pg_sequences q ON q.schemaname = 'public' AND q.sequencename = s.relname
    JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')
    JOIN pg_class t ON t.oid = d.refobjid
    WHERE s.relkind = 'S' AND q.last_value IS NOT NULL AND t.relname <> ALL(:keep)
    """
)


SEEDED = [(n, term, expansion) for n, (term, expansion) in enumerate(read_seed(), start=1)]


@functools.cache
def _cleaning_engine(url: str) -> sa.Engine:
    """One engine per test database whose one connection stays open between tests: a new connection
    cost about 12 ms a test, and on a kept connection psycopg prepares the emptiness query after its
    fifth run (planning its fifty sub-queries was the other half of the clean-up's time). A connection
    a test ended (a database dropped WITH FORCE, a terminated backend) is replaced by the pre-ping."""
    return sa.create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=True)


def _clean_postgres(url: str) -> None:
    """Empty every table but KEEP_TABLES and restart their sequences: the database as freshly migrated.

    Only the tables that hold rows are emptied, by DELETE with triggers and foreign keys off for the
    transaction (session_replication_role, a superuser's setting): a TRUNCATE of every table gives each
    table and index a new file, several times slower than the test that follows. The search synonyms
    the migrations seed are left alone while they are exactly the seed."""
    with _cleaning_engine(url).begin() as conn:
        tables = [
            t
            for t in conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            if t not in KEEP_TABLES
        ]
        seeded = (
            "search_synonyms" in tables
            and [
                tuple(row)
                for row in conn.execute(
                    sa.text("SELECT id, term, expansion FROM search_synonyms ORDER BY id")
                )
            ]
            == SEEDED
        )
        keep = KEEP_TABLES | ({"search_synonyms"} if seeded else set())
        if conn.execute(sa.text("SELECT current_setting('is_superuser') = 'on'")).scalar():
            filled = conn.execute(
                sa.text(
                    " UNION ALL ".join(f"SELECT '{t}' WHERE EXISTS (SELECT FROM \"{t}\")" for t in tables)
                )
            ).scalars()
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            for table in filled.all():
                if table not in keep:
                    conn.execute(sa.text(f'DELETE FROM "{table}"'))
            conn.execute(_RESTART_USED_SEQUENCES, {"keep": sorted(keep)})
        elif tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            seeded = False
        conn.execute(sa.text("UPDATE catalog_state SET version = 'initial'"))
        if not seeded:  # what migrations seed, as a freshly migrated database holds it
            conn.execute(
                sa.text("INSERT INTO search_synonyms (term, expansion, created_at) VALUES (:t, :e, now())"),
                [{"t": term, "e": expansion} for _, term, expansion in SEEDED],
            )


@pytest.fixture(autouse=True)
def _task_results_may_be_awaited() -> None:
    """Celery marks "a task runs here, do not wait for results" in one flag per process, set and
    restored around each eager task: two eager tasks run by a threaded live server's concurrent
    requests can leave it set (one thread restores what the other set), and every later `.get()` of
    the process would be refused. Each test starts with it clear, as a fresh process would."""
    _set_task_join_will_block(False)


@pytest.fixture(scope="session")
def worker_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker")


def fresh_sqlite_copy(template: Path, folder: Path) -> str:
    """The migrated template copied to the same path for every test of the process, so that every
    SQLite test's app gets the same engine (SharedEngines). The last test's files go first, its
    write-ahead log with them: a log left beside the new copy would be read into it."""
    path = folder / "portal.db"
    for leftover in (path, path.with_name("portal.db-wal"), path.with_name("portal.db-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A clean, migrated database on each backend."""
    if request.param == "sqlite":
        return fresh_sqlite_copy(
            request.getfixturevalue("sqlite_template"), request.getfixturevalue("worker_tmp")
        )
    url = request.getfixturevalue("pg_database")
    if url is None:
        service_missing("PostgreSQL")
    _clean_postgres(url)
    return url


class IsolatedClient(FlaskClient):
    """Each request runs in its own app context, as it would in a server.

    The test's own context (and its database session) stays apart; after the request, the test's
    session starts a fresh transaction so it reads what the request committed.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        if has_app_context():
            db.session.rollback()
        return response


class SharedEngines:
    """One SQLAlchemy engine per database and engine options for the whole test process, whichever
    app asks: every test makes an app of its own, and each app's engine compiled every SQL statement
    again (SQLAlchemy keeps compiled statements per engine), a sixth of the time of the database tests,
    and met its database again (the dialect's first-connect queries). Apps still close their
    connections when their test ends (`app_in_context`); only the engine, its compiled statements
    and what it learnt of the server outlive the test. The newest few engines are kept."""

    KEEP = 6

    def __init__(self) -> None:
        self.engines: dict[str, sa.Engine] = {}

    def __call__(self, _bind_key: str | None, options: dict[str, Any], _app: Flask) -> sa.Engine:
        key = repr(sorted(options.items()))
        engine = self.engines.pop(key, None) or sa.engine_from_config(options, prefix="")
        self.engines[key] = engine  # the newest last
        while len(self.engines) > self.KEEP:
            oldest = next(iter(self.engines))
            self.engines.pop(oldest).dispose()  # an app still using it opens a new pool
        return engine


# Flask-SQLAlchemy makes each app's engine with this method (an instance attribute takes its place).
db._make_engine = SharedEngines()  # type: ignore[method-assign]


def make_app(database_url: str, **overrides) -> Flask:
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_url, **overrides})
    # The one Limiter of the process serves every app a test makes, and init_app does not forget that
    # an earlier app's store was down: without this, a later app would count in memory for a while.
    limiter._storage_dead = False
    app.test_client_class = IsolatedClient
    app.jinja_env.bytecode_cache = TEMPLATE_CODE
    return app


def app_in_context(database_url: str, **overrides) -> Iterator[Flask]:
    """An app on this database with its context pushed for the test; connections closed afterwards."""
    app = make_app(database_url, **overrides)
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    yield from app_in_context(database_url, UPLOAD_FOLDER=str(tmp_path / "uploads"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def backend(app: Flask) -> str:
    return db.engine.dialect.name


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        service_missing("Redis")
    return REDIS_URL


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        service_missing("Chromium")
    return path


pytest_plugins = ["tests.factories"]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def demo_database_url(request: pytest.FixtureRequest) -> str:
    """A database holding the full demo network, on each backend. Tests must only read it.

    The databases themselves are fixtures of their own, loaded once per test process: pytest sets a
    parametrised session fixture up again whenever the parameter changes between modules."""
    return request.getfixturevalue(f"demo_database_url_{request.param}")


def demo_root(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The folder of the whole test run: the controller's base temporary folder under xdist (each
    worker's is a folder inside it), this process's own otherwise."""
    run = tmp_path_factory.getbasetemp()
    return run.parent if worker_id != "main" else run


@pytest.fixture
def many_connections(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[None]:
    """The races open dozens of PostgreSQL connections at once; they take turns across the xdist
    processes. Two at once, beside the other process's own connections and the demo loader's,
    passed PostgreSQL's `max_connections` (100), and racers were refused ("too many clients")."""
    with FileLock(str(demo_root(tmp_path_factory, worker_id) / "many-connections.lock")):
        yield


class SharedDemo:
    """A demo database loaded once per test run and shared by every xdist worker (loading it is the
    suite's most expensive setup; tests only read it). The first to ask loads it under a file lock,
    a worker or the loader the controller starts ahead (tests/demo_loading.py); each worker signs in
    as a user of it, and the last one to finish drops it."""

    def __init__(self, root: Path, worker_id: str, backend: str) -> None:
        self.root, self.worker, self.backend = root, worker_id, backend
        self.state = self.root / f"demo-{backend}.json"
        self.lock = FileLock(str(self.state) + ".lock")

    def acquire(self, make: Callable[[], str], *, sign_in: bool = True) -> str:
        with self.lock:
            state = json.loads(self.state.read_text()) if self.state.is_file() else None
            if state is None:
                state = {"url": make(), "users": []}
            if sign_in:
                state["users"] = sorted({*state["users"], self.worker})
            self.state.write_text(json.dumps(state))
        return state["url"]

    def release(self, drop: Callable[[str], None]) -> None:
        with self.lock:
            state = json.loads(self.state.read_text())
            state["users"] = [u for u in state["users"] if u != self.worker]
            if state["users"]:
                self.state.write_text(json.dumps(state))
                return
            self.state.unlink()
        drop(state["url"])


def make_pg_demo(root: Path, template: str | None) -> str:
    """A new PostgreSQL database with the demo loaded: a copy of `template` (migrated), or migrated here."""
    name = re.sub(r"\W", "_", f"portal_test_demo_{root.name}_{os.getpid()}")
    url = create_pg_database(name, template=template or "template0")
    try:
        if template is None:
            migrate_database(url)
        load_demo_into(url)
    except BaseException:
        drop_pg_demo(url)  # nobody will ever use a half-loaded demo
        raise
    return url


def drop_pg_demo(url: str) -> None:
    drop_pg_database(sa.engine.make_url(url).database)
    shutil.rmtree(demo_upload_folder(url), ignore_errors=True)


def make_sqlite_demo(root: Path, template: Path | None) -> str:
    """A SQLite file in the run's folder with the demo loaded: a copy of `template`, or migrated here."""
    path = root / "demo-sqlite" / "demo.db"
    path.parent.mkdir(exist_ok=True)
    url = f"sqlite:///{path}"
    if template is None:
        migrate_database(url)
    else:
        shutil.copy(template, path)
    load_demo_into(url)
    return url


# --- loading the demos ahead (tests/demo_loading.py) --------------------------------------------------

DEMO_FIXTURES = re.compile(r"\bdemo_(app|client|database_url\w*)\b")
_loaders: list[subprocess.Popen] = []


@functools.cache
def _needs_demo(path: str) -> bool:
    """Whether the tests of this file use a demo database (the browser tests' live servers all do)."""
    return "/e2e/" in f"/{path}" or bool(DEMO_FIXTURES.search(Path(path).read_text(encoding="utf-8")))


BACKENDS = ("sqlite", "postgresql")


def _pg_reachable() -> bool:
    engine = sa.create_engine(
        sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg"),
        connect_args={"connect_timeout": 2},
    )
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def every_test_backends() -> tuple[str, ...]:
    """The backends every database test runs on: TEST_BACKENDS (`sqlite,postgresql` runs every test
    on both), else PostgreSQL, production's; SQLite instead on a machine without PostgreSQL (unless
    PORTAL_REQUIRE_SERVICES makes its absence a failure)."""
    chosen = os.environ.get("TEST_BACKENDS")
    if chosen:
        unknown = set(chosen.split(",")) - set(BACKENDS)
        if unknown:
            raise pytest.UsageError(f"TEST_BACKENDS: unknown backend(s) {sorted(unknown)}; known: {BACKENDS}")
        return tuple(chosen.split(","))
    return ("postgresql",) if REQUIRE_SERVICES or _pg_reachable() else ("sqlite",)


def backend_of(item: pytest.Item) -> str | None:
    """The backend a collected test is parametrised with (database_url, demo_database_url, a world)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return next((value for value in callspec.params.values() if value in BACKENDS), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Which backend runs what, and in which order.

    Every database test runs on PostgreSQL, production's backend. SQLite, the demo's embedded
    default, runs the modules marked `both_backends`: those whose code takes a backend's own path
    (BEGIN IMMEDIATE against row and advisory locks, upserts, date functions, search, migrations,
    the demo loader, backup) and the main flows of booking and vouchers; and every browser test,
    whose live portal serves a SQLite copy of the demo. Running the rest twice doubled the suite's
    time (issue 15) and tested the same Python twice. `TEST_BACKENDS=sqlite,postgresql` runs every
    test on both.

    The tests that need a demo database run last, so that no worker waits for one to be loaded.
    """
    every = every_test_backends()
    kept, dropped = [], []
    for item in items:
        backend = backend_of(item)
        if (
            backend is None
            or backend in every
            or item.get_closest_marker("both_backends")
            or "/e2e/" in item.nodeid
        ):
            kept.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    items.sort(key=lambda item: _needs_demo(item.nodeid.split("::")[0]))


def pytest_collection_finish(session: pytest.Session) -> None:
    """The garbage collector told what this process is: one that imports everything first, then
    makes and drops an app, a database session and pages for each of thousands of tests.

    With the collector's defaults a full collection (every object of the process:
    the modules, the compiled templates and rules kept for the process, the demo's data) ran every
    few tests and took a fifth of the suite's time, to find the few cycles a test leaves. What is
    there once the tests are collected stays for the whole run: `gc.freeze()` sets it aside, so a
    collection looks only at what the tests made since. Young objects are collected after 20,000
    allocations instead of 700: the same garbage is found, in fewer, larger passes. A process running
    three of the database test files peaked at about 0.5 GB with these settings and without.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """In the controller, once the first worker has collected: start a loader per backend needed."""
    if _loaders:
        return
    needed = {"sqlite"} if any(_needs_demo(i.split("::")[0]) for i in ids) else set()
    if any(_needs_demo(i.split("::")[0]) and "postgresql" in i for i in ids):
        needed.add("postgresql")
    root = node.config._tmp_path_factory.getbasetemp()
    for backend in sorted(needed):
        command = [sys.executable, "-m", "tests.demo_loading", str(root), backend]
        with open(root / f"demo-loader-{backend}.log", "wb") as log:  # the migrations' chatter
            loader = subprocess.Popen(
                command, cwd=Path(__file__).resolve().parent.parent, stdout=log, stderr=subprocess.STDOUT
            )
        _loaders.append(loader)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In the controller, once every worker is done: stop loaders still at work, and drop every demo
    database of the run still there (loaded but never used, or left by a worker that was stopped)."""
    if not _loaders:
        return
    for loader in _loaders:
        if loader.poll() is None:
            loader.terminate()
        loader.wait()
    root = session.config._tmp_path_factory.getbasetemp()
    (root / "demo-postgresql.json").unlink(missing_ok=True)
    prefix = re.sub(r"\W", "_", f"portal_test_demo_{root.name}_")
    admin = sa.create_engine(sa.engine.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg"))
    try:
        with admin.connect() as conn:
            query = sa.text("SELECT datname FROM pg_database WHERE starts_with(datname, :p)")
            left = list(conn.execute(query, {"p": prefix}).scalars())
    except sa.exc.OperationalError:
        left = []
    finally:
        admin.dispose()
    for name in left:
        drop_pg_database(name)


@pytest.fixture(scope="session")
def demo_database_url_postgresql(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_id: str
) -> Iterator[str]:
    """The demo network in PostgreSQL, loaded once per test run (shared by the xdist workers)."""
    if request.getfixturevalue("pg_database") is None:
        service_missing("PostgreSQL")
    root = demo_root(tmp_path_factory, worker_id)
    shared = SharedDemo(root, worker_id, "postgresql")
    yield shared.acquire(lambda: make_pg_demo(root, request.getfixturevalue("pg_template")))
    shared.release(drop_pg_demo)


@pytest.fixture
def demo_app(demo_database_url: str) -> Iterator[Flask]:
    yield from app_in_context(demo_database_url, UPLOAD_FOLDER=demo_upload_folder(demo_database_url))


@pytest.fixture
def demo_client(demo_app: Flask) -> FlaskClient:
    return demo_app.test_client()


@pytest.fixture(scope="session")
def demo_database_url_sqlite(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, worker_id: str
) -> Iterator[str]:
    """The demo network in SQLite (shared by the search tests and the browser tests' live servers,
    which copy it), loaded once per test run for every xdist worker."""
    root = demo_root(tmp_path_factory, worker_id)
    shared = SharedDemo(root, worker_id, "sqlite")
    yield shared.acquire(lambda: make_sqlite_demo(root, sqlite_template))
    shared.release(lambda url: None)  # the run's temporary folder goes with pytest's own clean-up


class FakeClock:
    """The application's idea of now, under the test's control (stored rows still get real times)."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def __call__(self) -> datetime:
        return self.current

    def set(self, now: datetime) -> None:
        self.current = now

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


# Monday 7 December 2026, 09:00 in Liaocheng.
MONDAY_9AM = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
LIAOCHENG = ZoneInfo("Asia/Shanghai")


def next_monday_9am(after: datetime) -> datetime:
    """The first Monday 09:00 in Liaocheng later than `after` (in UTC)."""
    local = after.astimezone(LIAOCHENG)
    monday = local.replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=local.weekday())
    if monday <= local:
        monday += timedelta(days=7)
    return monday.astimezone(UTC)


def install_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> FakeClock:
    """The application's clock set to `now` for the test."""
    from portal.core import clock

    fake = FakeClock(now)
    monkeypatch.setattr(clock, "utcnow", fake)
    return fake


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return install_clock(monkeypatch, MONDAY_9AM)
