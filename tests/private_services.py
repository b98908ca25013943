"""Fixtures for tests that run real worker processes: a PostgreSQL database and a redis-server of the
test's own (the workers connect to both), dropped and stopped afterwards. Import them into the test
module that needs them."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import create_pg_database, drop_pg_database, migrate_database, service_missing
from tests.services_runner import RedisServer

_databases = count(1)


@pytest.fixture
def database(worker_id: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test alone (the workers connect to it too)."""
    name = re.sub(r"\W", "_", f"portal_private_{worker_id}_{os.getpid()}_{next(_databases)}")
    try:
        url = create_pg_database(name)
    except sa.exc.OperationalError:
        service_missing("PostgreSQL")
    try:
        migrate_database(url)
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port (the machine's own Redis is never touched)."""
    if not shutil.which("redis-server"):
        service_missing("redis-server")
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
        yield server
    finally:
        server.stop()
