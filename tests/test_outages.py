"""Outages of the real services: Redis stopped or full, PostgreSQL stopped.

Redis holds only what can be recomputed or retried (the cache, the rate-limit counters, the task
queue), so while it is down or full the portal goes on: sign-in, tokens, search and the public pages
answer, and the limits still hold (in process). PostgreSQL holds everything: while it is down, pages
and the API answer 503 with Retry-After, and the portal recovers by itself when it is back.

Each test starts its own redis-server or PostgreSQL cluster on a free port (tests/services_runner.py),
never the machine's shared ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from flask import Flask

from portal.accounts.services import create_user
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import app_in_context, migrate_database, service_missing
from tests.factories import PASSWORD, login
from tests.services_runner import PostgresCluster, RedisServer, postgres_bin_dir

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    try:
        server.start()
    except FileNotFoundError:
        service_missing("redis-server")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def app(database_url: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Flask]:
    """The portal as production runs it: its cache, rate limits and task queue in (a private) Redis."""
    yield from app_in_context(
        database_url, REDIS_URL=redis_server.url, UPLOAD_FOLDER=str(tmp_path / "uploads")
    )


def _public_answers(client, code: str) -> dict[str, int]:
    return {
        "search page": client.get("/instruments/?q=测试仪器").status_code,
        "search API": client.get("/api/v1/instruments?q=测试仪器").status_code,
        "instrument": client.get(f"/instruments/{code}").status_code,
        "network": client.get("/network/").status_code,
    }


def _token(client, username: str) -> int:
    return client.post("/api/v1/tokens", json={"username": username, "password": PASSWORD}).status_code


def test_with_redis_stopped_sign_in_tokens_search_and_public_pages_answer(
    app, redis_server, make_user, make_instrument
):
    user = make_user(Role.ENTERPRISE, username="outage")
    instrument = make_instrument()
    client = app.test_client()
    assert set(_public_answers(client, instrument.code).values()) == {200}  # and cached in Redis
    assert any(k.startswith(b"portal:") for k in redis_server.client().scan_iter())

    redis_server.stop()
    assert set(_public_answers(client, instrument.code).values()) == {200}
    assert login(client, user.username).status_code == 302
    assert client.get("/bookings/").status_code == 200
    assert _token(app.test_client(), user.username) == 201

    redis_server.start()  # empty: the cache fills again
    assert set(_public_answers(app.test_client(), instrument.code).values()) == {200}


def test_with_redis_stopped_the_sign_in_limit_still_holds_in_process(app, redis_server, make_user):
    make_user(username="target")
    redis_server.stop()
    client = app.test_client()
    statuses = [login(client, "target", f"wrong-{i}").status_code for i in range(11)]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429


def test_with_redis_full_search_still_answers(app, redis_server, make_instrument):
    instrument = make_instrument()
    with redis_server.client() as client:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(client.info("memory")["used_memory"] + 64 * 1024))
        with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
            for n in range(10_000):
                client.set(f"filler:{n}", "x" * 4096)
    assert set(_public_answers(app.test_client(), instrument.code).values()) == {200}
    assert _public_answers(app.test_client(), instrument.code)["search page"] == 200


# --- PostgreSQL --------------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        service_missing("PostgreSQL server binaries (initdb)")
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.remove()


def test_with_postgresql_stopped_pages_and_api_answer_503_then_recover(cluster, tmp_path):
    migrate_database(cluster.url)
    for app in app_in_context(cluster.url, UPLOAD_FOLDER=str(tmp_path / "uploads")):
        username = "during"
        create_user(username, PASSWORD, Role.ADMIN)
        signed_in = app.test_client()
        assert login(signed_in, username).status_code == 302
        anonymous = app.test_client()
        assert anonymous.get("/instruments/").status_code == 200
        db.session.remove()

        cluster.stop()
        page = anonymous.get("/instruments/")
        assert page.status_code == 503
        assert page.headers["Retry-After"] == str(app.config["RETRY_AFTER_SECONDS"])
        assert "稍后" in page.get_data(as_text=True)
        api = anonymous.get("/api/v1/instruments")
        assert (api.status_code, api.json["error"]["code"]) == (503, "service_unavailable")
        assert api.headers["Retry-After"]
        own = signed_in.get("/bookings/")  # loading the signed-in user needs the database too
        assert own.status_code == 503 and own.headers["Retry-After"]
        assert _token(anonymous, username) == 503

        cluster.start()
        assert anonymous.get("/instruments/").status_code == 200
        assert signed_in.get("/bookings/").status_code == 200
        assert db.session.scalar(sa.text("SELECT 1")) == 1
        assert re.search(r"\d", anonymous.get("/api/v1/instruments").get_data(as_text=True))
