"""Anonymous catalogue searches answered from the cache before the application's per-request work.

Most catalogue traffic is visitors searching, the same searches again and again. Rendering is already
cached (the page and the results, under the catalogue version), but a cached answer still paid for the
whole request: the session, the sign-in check, the locale, an ORM read of the version in a transaction,
the headers. This WSGI middleware, in front of the application, answers a GET or HEAD of a registered
path (the search page, the API's instrument list) that carries no session or remember-me cookie and no
Authorization header with what the application itself answered for the same search:

- the key is the catalogue version, the static files' digest, the language the application would
  choose (the `lang` cookie; the API: Accept-Language first, as `core.web.select_locale`), the path
  and the search's parameters normalised as the view normalises them;
- the version is read from its database row in one autocommit statement (the pool's ping aside, no
  transaction, no ORM): every catalogue change replaces it in its own transaction, so an edit is seen
  by the next request, as on the full path;
- what is kept is the application's whole answer, status, headers (its CSP and security headers, ETag,
  Cache-Control, Vary) and body, captured when the full path answered a request of this kind and the
  view said the answer may be reused (`offer`); it is replayed with a fresh Date and the same
  conditional handling (`make_conditional`), so a matching If-None-Match gets the same 304;
- anything else goes to the application unchanged, and so does everything when the database or the
  cache cannot answer: the full path then decides (a 503, a page computed without the cache).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, Response, request
from flask_login import COOKIE_NAME as REMEMBER_COOKIE
from sqlalchemy.engine import Engine
from werkzeug.datastructures import MultiDict
from werkzeug.http import http_date
from werkzeug.wsgi import ClosingIterator

from portal.core import web
from portal.extensions import cache, db

# A view's "this answer depends only on the key": the middleware may keep it for the next visitor.
OFFERED = "portal.catalog.fastpath.offered"
# The answers' keys; a change in what is kept changes this, so an old entry is never misread.
KEY_PREFIX = "catalog:answer1:"
VERSION_STATEMENT = "SELECT version FROM catalog_state WHERE id = 1"

Normalizer = Callable[[MultiDict], Mapping[str, str] | None]
Answer = tuple[str, list[tuple[str, str]], bytes]  # status, headers, body
StartResponse = Callable[..., Any]


def offer() -> None:
    """Called by a view whose answer to this (anonymous) request depends only on the search, the
    language and the catalogue version: the middleware may replay it."""
    request.environ[OFFERED] = True


def serve(app: Flask, path: str, normalize: Normalizer) -> None:
    """Answer anonymous GETs of `path` from the cache; `normalize` gives the parameters as the view reads
    them (None: a request the view would not reuse, such as unknown or repeated parameters)."""
    middleware: FastPath = app.extensions["catalog_fast_path"]
    middleware.normalizers[path] = normalize


def init_app(app: Flask) -> None:
    """Put the middleware in front of the application (outside Flask, inside nothing that needs it)."""
    middleware = FastPath(app, app.wsgi_app)
    app.extensions["catalog_fast_path"] = middleware
    # Werkzeug's documented way to wrap the WSGI application (mypy sees a method being replaced).
    app.wsgi_app = middleware  # type: ignore[method-assign]


class FastPath:
    """The middleware (see the module's docstring)."""

    def __init__(self, app: Flask, inner: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self.inner = inner
        self.normalizers: dict[str, Normalizer] = {}
        self._engine: Engine | None = None
        self._cache: Any = None
        # The answers this process served last, so that a popular search costs no cache round trip
        # either: an answer is never stale under its key (the version is in it), only evicted.
        self.recent = RecentAnswers(app.config["CATALOG_FAST_MEMORY_BYTES"])

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        normalize = self.normalizers.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD")
        key = self.key(environ, normalize) if normalize is not None and method in ("GET", "HEAD") else None
        if key is None:
            return self.inner(environ, start_response)
        kept = self._read(key)
        if kept is not None:
            return replay(kept, environ, start_response)
        if method != "GET":
            return self.inner(environ, start_response)
        return self._answer_and_keep(key, environ, start_response)

    def key(self, environ: dict[str, Any], normalize: Normalizer) -> str | None:
        """Where this request's answer is kept; None when it is not a visitor's search or the version
        cannot be read."""
        incoming = self.app.request_class(environ)  # the application's own parsing (control characters)
        cookies = incoming.cookies
        config = self.app.config
        if "Authorization" in incoming.headers or config["SESSION_COOKIE_NAME"] in cookies:
            return None
        if config.get("REMEMBER_COOKIE_NAME", REMEMBER_COOKIE) in cookies:
            return None
        args = normalize(incoming.args)
        if args is None:
            return None
        version = self.version()
        if version is None:
            return None
        languages, default = config["LANGUAGES"], config["BABEL_DEFAULT_LOCALE"]
        path = incoming.path
        # (Accept-Language is parsed only where it counts: the API.)
        best = (
            web.header_locale(path, incoming.accept_languages, languages)
            if path.startswith("/api/")
            else None
        )
        locale = best or web.cookie_locale(cookies.get(web.LANG_COOKIE), languages, default)
        digest = self.app.extensions["assets"].digest
        # The parameters hold no control characters (the request class strips them): repr is unambiguous.
        return f"{KEY_PREFIX}{version}:{digest}:{locale}:{incoming.root_path}{path}?{sorted(args.items())!r}"

    def version(self) -> str | None:
        """The catalogue version, read from its row (None: the database does not answer)."""
        if self._engine is None:
            with self.app.app_context():
                self._engine = db.engine
        return version_reader(self._engine).read()

    def _backend(self) -> Any:
        if self._cache is None:
            with self.app.app_context():
                self._cache = cache.cache
        return self._cache

    def _read(self, key: str) -> Answer | None:
        kept = self.recent.get(key)
        if kept is not None:
            return kept
        try:
            kept = self._backend().get(key)  # the portal's Redis cache fails open (a miss)
        except Exception:  # an entry that cannot be read is a miss; the full path answers
            return None
        if isinstance(kept, tuple) and len(kept) == 3 and isinstance(kept[2], bytes):
            self.recent.put(key, kept)
            return kept
        return None

    def _keep(self, key: str, answer: Answer) -> None:
        self.recent.put(key, answer)
        self._backend().set(key, answer, timeout=self.app.config["CATALOG_PAGE_CACHE_SECONDS"])

    def _answer_and_keep(
        self, key: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """The full path's answer; kept when the view offered it and it is a plain 200 (no cookie set)."""
        started: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [status, headers]
            return start_response(status, headers, exc_info)

        chunks = self.inner(environ, start)
        if not (environ.get(OFFERED) and started and started[0].startswith("200 ")):
            return chunks
        status, headers = started
        if any(name.lower() == "set-cookie" for name, _ in headers):
            return chunks
        body = b"".join(chunks)
        self._keep(key, (status, list(headers), body))
        # The application's own closing (call_on_close) still runs when the server is done.
        return ClosingIterator([body], getattr(chunks, "close", None))


class VersionReader:
    """Reads the catalogue version from its row, as cheaply as the database allows.

    PostgreSQL: over one connection of its own per process, in autocommit, one round trip a read (a
    pooled connection costs the pool's ping, and SQLAlchemy's execution several times the query). The
    connection is taken from the engine (its settings and events) and detached from the pool. Another
    database (SQLite: the demo, tests) is read through the pool. After a failure the reader gives up
    for PAUSE_SECONDS (the full path reads, and reports, meanwhile) and then connects again.
    """

    PAUSE_SECONDS = 5.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.own_connection = engine.dialect.name == "postgresql"
        self._held: Any = None  # the detached pool proxy
        self._driver: Any = None  # its psycopg connection
        self._pid = 0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def read(self) -> str | None:
        if time.monotonic() < self._paused_until:
            return None
        with self._lock:  # one statement at a time on the held connection
            for _attempt in range(2):
                stale = self._held is not None  # a held connection may have been closed by the server
                try:
                    return self._read()
                except Exception:  # SQLAlchemy's or the driver's: the full path answers this request
                    self._drop()
                    if not stale:
                        break
        self._paused_until = time.monotonic() + self.PAUSE_SECONDS
        return None

    def _read(self) -> str:
        if not self.own_connection:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                return connection.exec_driver_sql(VERSION_STATEMENT).scalar() or "0"
        row = self._connection().execute(VERSION_STATEMENT).fetchone()
        return (row[0] if row else None) or "0"

    def _connection(self) -> Any:
        if self._held is None or self._pid != os.getpid():
            # A connection inherited through fork belongs to the parent: left alone, never closed here.
            held = self.engine.raw_connection()
            driver = held.driver_connection  # (the proxy forgets it once detached)
            held.detach()
            if driver is None:  # a pool proxy always has one; said for the type checker
                raise RuntimeError("no database connection")
            driver.autocommit = True
            self._held, self._driver, self._pid = held, driver, os.getpid()
        return self._driver

    def _drop(self) -> None:
        held, self._held = self._held, None
        if held is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                held.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


# One reader per database and process, whichever app asks (the tests make an app per test); the
# newest few are kept, the others' connections closed.
_readers: OrderedDict[str, VersionReader] = OrderedDict()
_readers_lock = threading.Lock()
KEEP_READERS = 4


def version_reader(engine: Engine) -> VersionReader:
    """The reader of the engine's database."""
    name = engine.url.render_as_string(hide_password=False)
    with _readers_lock:
        reader = _readers.get(name)
        if reader is None or reader.engine is not engine:
            if reader is not None:
                reader.close()
            reader = _readers[name] = VersionReader(engine)
        _readers.move_to_end(name)
        while len(_readers) > KEEP_READERS:
            _readers.popitem(last=False)[1].close()
    return reader


class RecentAnswers:
    """The answers a process served last, up to `limit` bytes of bodies (least recently used out)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Answer | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
            return answer

    def put(self, key: str, answer: Answer) -> None:
        if len(answer[2]) > self.limit:
            return
        with self._lock:
            old = self._answers.pop(key, None)
            self.size += len(answer[2]) - (len(old[2]) if old else 0)
            self._answers[key] = answer
            while self.size > self.limit:
                self.size -= len(self._answers.popitem(last=False)[1][2])


# What makes werkzeug's make_conditional answer otherwise than the kept 200 (a 304, a range).
CONDITIONAL = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE")


def replay(kept: Answer, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A kept answer as the application gives it: a fresh Date in its place, 304 when the ETag matches."""
    status, headers, body = kept
    if environ["REQUEST_METHOD"] == "GET" and not any(name in environ for name in CONDITIONAL):
        # The plain case, most of them: the kept headers are what the server was given for this answer.
        now = http_date()
        start_response(status, [(name, now if name == "Date" else value) for name, value in headers])
        return [body]
    response = Response(body, status=status, headers=headers)
    response.headers["Date"] = http_date()  # replaced where it stood, as on the full path
    response.make_conditional(environ)
    return response(environ, start_response)
