"""A large catalogue file goes through a real worker: a PostgreSQL database of the test's own, a private
redis-server and a `celery -A celery_worker worker` process of the production profile. The page queues
the dry run and the apply; the worker does them and reports its progress through the cache (Redis),
which the page reads."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from portal.catalog import imports
from portal.catalog.models import CatalogImport, ImportState, Instrument
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import cache, db
from tests.conftest import make_app
from tests.factories import extract_csrf, login
from tests.services_runner import CeleryWorker, RedisServer, wait_for, worker_env
from tests.test_catalog_import import csv_bytes, row

# The private PostgreSQL database and redis-server fixtures (`database`, `redis_server`).
pytest_plugins = ["tests.private_services"]

ROWS = 1200  # the importer reports its progress every 500 rows


@pytest.fixture
def app(database: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Flask]:
    """This process's app (overrides conftest's): its pages queue to the private Redis."""
    app = make_app(
        database,
        REDIS_URL=redis_server.url,
        # The cache a production web process shares with the workers (the testing profile keeps its own).
        CACHE_TYPE="RedisCache",
        CACHE_REDIS_URL=redis_server.url,
        CACHE_KEY_PREFIX="portal:",
        UPLOAD_FOLDER=str(tmp_path / "uploads"),
        RATELIMIT_ENABLED=False,
    )
    try:
        with app.app_context():
            yield app
            db.session.remove()
            db.engine.dispose()
    finally:
        app.extensions["celery"].close()


@pytest.fixture
def worker(database: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[CeleryWorker]:
    """A production worker, not started yet: the test starts it when the work is queued."""
    env = worker_env(
        SECRET_KEY="import-test-secret",
        DATABASE_URL=database,
        REDIS_URL=redis_server.url,
        UPLOAD_FOLDER=str(tmp_path / "uploads"),
    )
    name = f"import-{os.getpid()}"
    process = CeleryWorker(name, env, tmp_path / f"{name}.log")
    try:
        yield process
    finally:
        process.stop()
        print(process.output()[-6000:])  # shown by pytest when the test failed


def state_of(import_id: int) -> ImportState:
    db.session.rollback()
    return db.session.get(CatalogImport, import_id).state


def test_a_large_file_is_checked_and_applied_by_a_worker_with_progress(
    app, worker, make_institution, make_user
):
    make_institution(name="聊城测试大学", county="东昌府区")
    admin = make_user(Role.ADMIN)
    client = app.test_client()
    login(client, admin.username)
    data = csv_bytes([row(**{"仪器编码": f"LCU-{n:05d}"}) for n in range(ROWS)])
    assert len(data) > app.config["IMPORT_ASYNC_BYTES"]  # large: the page hands it to the worker

    page = client.get("/admin/imports")
    response = client.post(
        "/admin/imports",
        data={"file": (io.BytesIO(data), "全部仪器.csv"), "csrf_token": extract_csrf(page.text)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    import_id = int(response.location.rsplit("/", 1)[1])
    # Nobody works on it in the web process: it waits for a worker, and the page says so.
    assert state_of(import_id) is ImportState.CHECKING
    waiting = client.get(response.location).get_data(as_text=True)
    assert 'http-equiv="refresh"' in waiting and "等待后台任务处理" in waiting

    worker.start()
    wait_for(lambda: state_of(import_id) is ImportState.CHECKED, 60, "the worker's dry run")
    item = db.session.get(CatalogImport, import_id)
    assert (item.created, item.rows, item.error_count) == (ROWS, ROWS, 0)
    assert db.session.scalar(select(func.count()).select_from(Instrument)) == 0
    # The worker told the cache how far it got; the page of a running import reads it from there.
    assert cache.get(imports._progress_key(import_id)) == {"phase": "reading", "rows": 1000}

    page = client.get(response.location)
    apply = client.post(
        f"/admin/imports/{import_id}/apply", data={"csrf_token": extract_csrf(page.get_data(as_text=True))}
    )
    assert apply.status_code == 302
    running = client.get(response.location).get_data(as_text=True)
    if state_of(import_id) is ImportState.APPLYING:  # unless the worker was quicker than this request
        assert 'id="import-progress"' in running
    wait_for(lambda: state_of(import_id) is ImportState.APPLIED, 60, "the worker's apply")
    assert db.session.scalar(select(func.count()).select_from(Instrument)) == ROWS
    assert cache.get(imports._progress_key(import_id)) == {"phase": "writing", "rows": 1000}
    item = db.session.get(CatalogImport, import_id)
    assert item.applied_by_id == admin.id and item.created == ROWS
    done = client.get(response.location).get_data(as_text=True)
    assert 'http-equiv="refresh"' not in done and f'id="count-created">{ROWS}<' in done
    # The worker acted for the administrator: the audit trail names them.
    actors = dict(
        db.session.execute(
            select(AuditEvent.action, AuditEvent.actor_id).where(AuditEvent.action.like("catalog_import.%"))
        ).all()
    )
    assert actors["catalog_import.checked"] == admin.id and actors["catalog_import.applied"] == admin.id
    assert "Traceback" not in worker.output()
