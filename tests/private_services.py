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

from tests.conftest import create_pg_database, drop_pg_database_soon, service_missing
from tests.services_runner import RedisServer

_databases = count(1)


@pytest.fixture
def database(worker_id: str, pg_template: str | None) -> Iterator[str]:
    """A migrated PostgreSQL database of this test alone (the workers connect to it too)."""
    if pg_template is None:
        service_missing("PostgreSQL")
    name = re.sub(r"\W", "_", f"portal_private_{worker_id}_{os.getpid()}_{next(_databases)}")
    url = create_pg_database(name, template=pg_template)
    try:
        yield url
    finally:
        drop_pg_database_soon(name)


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
