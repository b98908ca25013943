"""Visitors' catalogue searches answered before the application's work (portal.catalog.fastpath): the
same answer as the full path, an edit seen at once, and the full path whenever the cache, the database
or the visitor (signed in, a session) says so."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from portal.catalog import fastpath
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import app_in_context
from tests.factories import PASSWORD, login

PAGE = "/instruments/?q=%E8%B4%A8%E8%B0%B1&status=normal"  # 质谱, a keyword and a filter
API = "/api/v1/instruments?q=%E8%B4%A8%E8%B0%B1&status=normal"


@pytest.fixture(params=["memory", "redis"])
def app(request, database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The portal with the production cache (FailSafeRedisCache, a key prefix of its own in the test
    Redis); `redis`: nothing kept in the process, every answer read back from Redis."""
    memory = {} if request.param == "memory" else {"CATALOG_FAST_MEMORY_BYTES": 0}
    yield from app_in_context(
        database_url,
        UPLOAD_FOLDER=str(tmp_path / "uploads"),
        CACHE_TYPE="portal.core.cache.FailSafeRedisCache",
        CACHE_REDIS_URL=redis_url,
        CACHE_KEY_PREFIX=f"fast-{uuid.uuid4().hex}:",
        **memory,
    )


class Counted:
    """How many requests reached the application behind the fast path."""

    def __init__(self, app: Flask) -> None:
        self.middleware: fastpath.FastPath = app.extensions["catalog_fast_path"]
        self.inner = self.middleware.inner
        self.calls = 0
        self.middleware.inner = self

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.inner(environ, start_response)

    def full_path_only(self) -> None:
        """From now on every request goes to the application (no path is served fast)."""
        self.middleware.normalizers.clear()


def headers_of(response) -> list[tuple[str, str]]:
    """Every header in order, the Date's value aside (it is the time of the answer)."""
    return [(name, "…" if name == "Date" else value) for name, value in response.headers.items()]


@pytest.fixture
def shown(make_instrument):
    return make_instrument(name="气相色谱-质谱联用仪", name_en="GC-MS")


@pytest.mark.parametrize("url", [PAGE, API])
def test_the_fast_answer_is_the_full_paths_answer(app, shown, url):
    counted = Counted(app)
    client = app.test_client()
    first = client.get(url)  # the full path, kept
    fast = client.get(url)
    fast_head = client.head(url)
    fast_304 = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert counted.calls == 1, "the repeated requests were answered by the application"

    counted.full_path_only()
    full = client.get(url)
    full_head = client.head(url)
    full_304 = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert counted.calls == 4

    assert fast.status_code == full.status_code == 200
    assert "气相色谱-质谱联用仪" in fast.get_data(as_text=True)
    assert fast.data == full.data == first.data
    assert headers_of(fast) == headers_of(full) == headers_of(first)
    assert fast.headers["ETag"] == full.headers["ETag"]
    assert fast.headers["Cache-Control"] == "private, no-cache"
    assert "Content-Security-Policy" in fast.headers
    assert fast_head.status_code == full_head.status_code == 200
    assert fast_head.data == full_head.data == b""
    assert headers_of(fast_head) == headers_of(full_head)
    assert fast_304.status_code == full_304.status_code == 304
    assert fast_304.data == full_304.data == b""
    assert headers_of(fast_304) == headers_of(full_304)


@pytest.mark.parametrize("url", [PAGE, API])
def test_a_saved_instrument_shows_in_the_next_answer(app, shown, make_user, url):
    counted = Counted(app)
    client = app.test_client()
    before = client.get(url)
    assert client.get(url).data == before.data
    assert counted.calls == 1

    make_user(Role.ADMIN, username="keeper")
    editor = app.test_client()
    token = editor.post("/api/v1/tokens", json={"username": "keeper", "password": PASSWORD}).json["token"]
    saved = editor.patch(
        f"/api/v1/instruments/{shown.code}",
        json={"name": "气相色谱-质谱联用仪（三重四极杆）"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert saved.status_code == 200
    calls = counted.calls

    after = client.get(url)
    assert "气相色谱-质谱联用仪（三重四极杆）" in after.get_data(as_text=True)
    assert after.headers["ETag"] != before.headers["ETag"]
    assert counted.calls == calls + 1  # the full path, once
    assert client.get(url, headers={"If-None-Match": before.headers["ETag"]}).status_code == 200
    assert client.get(url).data == after.data
    assert counted.calls == calls + 1  # and the new answer is served fast again


def test_signed_in_users_sessions_and_tokens_take_the_full_path(app, shown, make_user):
    counted = Counted(app)
    visitor = app.test_client()
    for url in (PAGE, PAGE, API, API):
        visitor.get(url)
    assert counted.calls == 2
    make_user(Role.ENTERPRISE, username="member")
    member = app.test_client()
    login(member, "member")
    calls = counted.calls
    for _ in range(2):
        assert member.get(PAGE).status_code == 200
    assert counted.calls == calls + 2
    # A bearer token on the API, a remember-me cookie alone: the application decides.
    refused = app.test_client().get(API, headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401
    remembered = app.test_client()
    remembered.set_cookie("remember_token", "1:1|x")
    remembered.get(PAGE)
    assert counted.calls == calls + 4


def test_the_language_is_part_of_the_key(app, shown):
    client = app.test_client()
    chinese = client.get(PAGE).get_data(as_text=True)
    client.set_cookie("lang", "en")
    english = client.get(PAGE).get_data(as_text=True)
    assert english != chinese
    assert '<html lang="en">' in english and '<html lang="zh' in chinese
    assert client.get(PAGE).get_data(as_text=True) == english
    api = app.test_client()
    assert api.get(API, headers={"Accept-Language": "en"}).status_code == 200


def test_answers_the_view_does_not_offer_are_not_kept(app, shown):
    counted = Counted(app)
    client = app.test_client()
    for url, status in (
        ("/instruments/?fee_min=abc", 200),  # a search with a mistake: the page says so, not kept
        ("/instruments/?status=no-such-state", 200),  # an invalid choice: the page says so
        ("/instruments/?q=x&junk=1", 302),  # unknown parameters: sent to the search's own URL
        ("/instruments/?q=x&q=y", 302),  # repeated parameters: never looked up
        ("/api/v1/instruments?per_page=0", 422),
    ):
        assert client.get(url).status_code == status, url
        assert client.get(url).status_code == status, url
    assert counted.calls == 10


def test_a_cache_that_is_down_sends_every_request_down_the_full_path(database_url, tmp_path, make_instrument):
    """No Redis behind the cache (nothing listens on the port) and nothing kept in the process."""
    for app in app_in_context(
        database_url,
        UPLOAD_FOLDER=str(tmp_path / "uploads"),
        CACHE_TYPE="portal.core.cache.FailSafeRedisCache",
        CACHE_REDIS_URL="redis://127.0.0.1:9/0",
        CACHE_SOCKET_TIMEOUT=0.2,
        CATALOG_FAST_MEMORY_BYTES=0,
    ):
        make_instrument(name="气相色谱-质谱联用仪")
        counted = Counted(app)
        client = app.test_client()
        for url in (PAGE, API, PAGE, API):
            response = client.get(url)
            assert response.status_code == 200
            assert "气相色谱-质谱联用仪" in response.get_data(as_text=True)
        assert counted.calls == 4


def test_a_database_that_does_not_answer_leaves_the_request_to_the_full_path(app, shown, monkeypatch):
    counted = Counted(app)
    client = app.test_client()
    client.get(PAGE)
    reader = fastpath.version_reader(counted.middleware._engine)
    monkeypatch.setattr(reader, "_paused_until", 0.0)  # restored after the test: the reader is the process's
    monkeypatch.setattr(fastpath.VersionReader, "_read", _refuse)
    assert client.get(PAGE).status_code == 200  # the full path reads the version itself
    assert counted.calls == 2
    assert reader.read() is None  # paused: no second attempt for a few seconds


def _refuse(self) -> str:
    raise ConnectionError("the database does not answer")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_version_reader_survives_its_connection_being_closed_by_the_server(app, shown):
    reader = fastpath.version_reader(db.engine)
    reader.close()
    version = reader.read()
    assert version and version != "0"
    backend_pid = reader._driver.info.backend_pid
    with db.engine.connect() as connection:
        connection.exec_driver_sql(f"SELECT pg_terminate_backend({backend_pid})")
    assert reader.read() == version  # a new connection, at once
    assert reader._driver.info.backend_pid != backend_pid
