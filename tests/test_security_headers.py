"""Protective headers on every kind of response, production cookies and HSTS, and a sign-out that really
ends the session (a copied session or remember-me cookie is refused afterwards)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask, abort, url_for
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.security import generate_password_hash

from portal import create_app
from portal.accounts.models import (
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    User,
    VerificationState,
)
from portal.booking.models import FileKind, ServiceFile
from portal.catalog.models import Category, Instrument, InstrumentStatus
from portal.core.permissions import Role
from portal.extensions import db
from tests.conftest import IsolatedClient, make_app
from tests.factories import PASSWORD, completed_service, extract_csrf, valid_uscc

TEMPLATES = Path(__file__).resolve().parent.parent / "portal" / "templates"
FAST_HASH = "pbkdf2:sha256:1000"


def csp_directives(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def assert_protective_headers(response) -> None:
    headers = response.headers
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    # Neither scripts nor styles may come inline: a tag, an on*= handler or a style attribute that
    # slipped into a page would be refused by the browser.
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    assert not any("unsafe" in source for sources in csp.values() for source in sources)
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def sign_in(client: FlaskClient, username: str, *, remember: bool = False, **kwargs):
    """Sign in through the real form; `kwargs` go to both requests (base_url, headers)."""
    token = extract_csrf(client.get("/login", **kwargs).get_data(as_text=True))
    data = {"username": username, "password": PASSWORD, "csrf_token": token}
    if remember:
        data["remember"] = "y"
    response = client.post("/login", data=data, **kwargs)
    assert response.status_code == 302, "sign-in failed"
    return response


def sign_out(client: FlaskClient) -> None:
    token = extract_csrf(client.get("/account").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302


# --- every kind of response carries the headers (one backend: the headers do not touch the database) ---


@dataclass
class Site:
    app: Flask
    instrument_code: str
    file_url: str
    api_file_url: str
    username: str


@pytest.fixture(scope="module")
def site(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A small portal: one host, instrument, enterprise user, and a completed service with a stored file."""
    folder = tmp_path_factory.mktemp("headers")
    shutil.copy(sqlite_template, folder / "portal.db")
    uploads = folder / "uploads"
    uploads.mkdir()
    app = make_app(f"sqlite:///{folder / 'portal.db'}", UPLOAD_FOLDER=str(uploads), RATELIMIT_ENABLED=False)

    def fail() -> None:
        raise RuntimeError("a bug in a page")

    def fail_in_api() -> None:
        raise RuntimeError("a bug in the API")

    app.add_url_rule("/test-only/bug", "test_bug", fail)
    app.add_url_rule("/api/v1/test-only/bug", "test_api_bug", fail_in_api)
    app.add_url_rule("/test-only/teapot", "test_teapot", lambda: abort(418))
    with app.app_context():
        host = Institution(
            name="安全测试大学",
            uscc=valid_uscc(),
            kind=InstitutionKind.UNIVERSITY,
            county="东昌府区",
            admission="admitted",
        )
        instrument = Instrument(
            code="SEC-00001",
            name="安全测试仪器",
            name_en="Security test instrument",
            category=db.session.scalar(select(Category).where(Category.code == "0102")),
            model="M1",
            manufacturer="Agilent (安捷伦)",
            country_of_origin="美国",
            original_value_fen=1_000_000_00,
            status=InstrumentStatus.NORMAL,
            fee_per_hour_fen=300_00,
            county="东昌府区",
            operator_name="张三",
            operator_phone="0635-8239999",
            institution=host,
        )
        user = User(
            username="headers",
            password_hash=generate_password_hash(PASSWORD, method=FAST_HASH),
            role=Role.ENTERPRISE,
            enterprise=Enterprise(
                uscc=valid_uscc(),
                name="聊城安全测试科技有限公司",
                kind=EnterpriseKind.TECH_SME,
                county="东昌府区",
                verification_state=VerificationState.VERIFIED,
            ),
        )
        db.session.add_all([host, instrument, user])
        db.session.flush()
        starts = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
        record = completed_service(
            instrument, user, starts, fee_fen=600_00, hours=Decimal(2), service_type="analysis"
        )
        stored = "security-test-invoice.pdf"
        (uploads / stored).write_bytes(b"%PDF-1.4\n% test invoice\n%%EOF\n")
        file = ServiceFile(
            record_id=record.id,
            kind=FileKind.INVOICE,
            original_name="invoice.pdf",
            stored_name=stored,
            content_type="application/pdf",
            size=31,
            sha256="0" * 64,
            uploaded_by_id=user.id,
        )
        db.session.add(file)
        db.session.commit()
        made = Site(
            app=app,
            instrument_code=instrument.code,
            file_url=f"/service-records/{record.id}/files/{file.id}",
            api_file_url=f"/api/v1/service-records/{record.id}/files/{file.id}",
            username=user.username,
        )
        db.session.remove()
    yield made
    with app.app_context():
        db.engine.dispose()


def _signed_in(site: Site) -> FlaskClient:
    client = site.app.test_client()
    sign_in(client, site.username)
    return client


def _bearer(site: Site) -> dict[str, str]:
    client = site.app.test_client()
    response = client.post("/api/v1/tokens", json={"username": site.username, "password": PASSWORD})
    assert response.status_code == 201
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def anonymous(path: str, method: str = "GET", **kwargs) -> Callable[[Site], object]:
    """A request by a visitor who is not signed in; `{code}`, `{file}`, `{api_file}` come from the site."""
    return lambda site: site.app.test_client().open(_fill(path, site), method=method, **kwargs)


def signed_in(path: str) -> Callable[[Site], object]:
    return lambda site: _signed_in(site).get(_fill(path, site))


def with_token(path: str) -> Callable[[Site], object]:
    return lambda site: site.app.test_client().get(_fill(path, site), headers=_bearer(site))


def _fill(path: str, site: Site) -> str:
    return path.format(code=site.instrument_code, file=site.file_url, api_file=site.api_file_url)


def _not_modified(site: Site):
    client = site.app.test_client()
    etag = client.get("/instruments/").headers["ETag"]
    return client.get("/instruments/", headers={"If-None-Match": etag})


def _hashed_static(filename: str, *, revalidate: bool = False, **kwargs) -> Callable[[Site], object]:
    """A static file under its hashed name, served by WhiteNoise in front of the app (portal.core.assets);
    with `revalidate`, asked again with the ETag of a first answer."""

    def fetch(site: Site):
        with site.app.test_request_context():
            url = url_for("static", filename=filename)
        assert url != f"/static/{filename}", "no hashed name"
        client = site.app.test_client()
        if revalidate:
            kwargs["headers"] = {"If-None-Match": client.get(url).headers["ETag"]}
        return client.open(url, **kwargs)

    return fetch


HTML, JSON = "text/html", "application/json"
# (name, request, expected status, expected content type or None for a body-less answer)
RESPONSES: list[tuple[str, Callable[[Site], object], int, str | None]] = [
    ("page", anonymous("/instruments/"), 200, HTML),
    ("signed-in page", signed_in("/account"), 200, HTML),
    ("page not modified", _not_modified, 304, None),
    ("redirect", anonymous("/"), 302, None),
    ("redirect to sign in", anonymous("/account"), 302, None),
    ("static file", anonymous("/static/css/portal.css"), 200, "text/css"),
    ("static file, hashed name", _hashed_static("css/portal.css"), 200, "text/css"),
    ("static file not modified", _hashed_static("js/portal.js", revalidate=True), 304, None),
    (
        "static file, compressed",
        _hashed_static("css/portal.css", headers={"Accept-Encoding": "br"}),
        200,
        "text/css",
    ),
    ("static file, wrong method", _hashed_static("css/portal.css", method="POST"), 405, None),
    ("bootstrap script", anonymous("/bootstrap/static/js/bootstrap.min.js"), 200, "text/javascript"),
    ("missing static file", anonymous("/static/no-such.css"), 404, HTML),
    ("page not found", anonymous("/no-such-page"), 404, HTML),
    ("forbidden page", signed_in("/review/"), 403, HTML),
    ("method not allowed", anonymous("/logout"), 405, HTML),
    ("CSRF failure", anonymous("/login", "POST", data={"username": "x"}), 400, HTML),
    ("unusual HTTP error", anonymous("/test-only/teapot"), 418, HTML),
    ("server error page", anonymous("/test-only/bug"), 500, HTML),
    ("file download", signed_in("{file}"), 200, "application/pdf"),
    ("calendar feed", anonymous("/instruments/{code}/calendar.ics"), 200, "text/calendar"),
    ("API answer", anonymous("/api/v1/instruments"), 200, JSON),
    ("API file download", with_token("{api_file}"), 200, "application/pdf"),
    ("API unauthorized", anonymous("/api/v1/bookings"), 401, JSON),
    ("API not found", anonymous("/api/v1/instruments/NO-SUCH"), 404, JSON),
    ("API validation error", anonymous("/api/v1/tokens", "POST", json={}), 422, JSON),
    ("API server error", anonymous("/api/v1/test-only/bug"), 500, JSON),
    ("OpenAPI document", anonymous("/api/v1/openapi.json"), 200, JSON),
]


@pytest.mark.parametrize(("kind", "fetch", "status", "mimetype"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_every_kind_of_response_carries_the_protective_headers(site, kind, fetch, status, mimetype):
    response = fetch(site)
    assert response.status_code == status
    if mimetype is not None:
        assert response.mimetype == mimetype
    assert_protective_headers(response)
    # Development and the tests serve plain HTTP: no HSTS that would pin a browser to HTTPS.
    assert "Strict-Transport-Security" not in response.headers


# --- production: HSTS and Secure cookies ---------------------------------------------------------


@pytest.fixture
def production_app(sqlite_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The production profile (as gunicorn would build it) on a scratch database."""
    shutil.copy(sqlite_template, tmp_path / "portal.db")
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    monkeypatch.setenv("SECRET_KEY", "production-test-secret")
    monkeypatch.setenv("DATABASE_URL", url)
    app = create_app(
        "production",
        {"SECRET_KEY": "production-test-secret", "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None},
    )
    app.test_client_class = IsolatedClient
    with app.app_context():
        db.session.add(
            User(
                username="prod",
                password_hash=generate_password_hash(PASSWORD, method=FAST_HASH),
                role=Role.ADMIN,
            )
        )
        db.session.commit()
        db.session.remove()
    yield app
    with app.app_context():
        db.engine.dispose()


def _set_cookie(response, name: str) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}="))


def test_production_sends_hsts_and_only_secure_httponly_samesite_cookies(production_app):
    assert production_app.config["HSTS_MAX_AGE"] >= 365 * 24 * 3600
    https = {
        "base_url": "https://portal.example.cn",
        "headers": {"Referer": "https://portal.example.cn/login"},
    }
    client = production_app.test_client()
    response = sign_in(client, "prod", remember=True, **https)
    for name in ("session", "remember_token"):
        cookie = _set_cookie(response, name)
        assert "; Secure" in cookie, cookie
        assert "; HttpOnly" in cookie, cookie
        assert "; SameSite=Lax" in cookie, cookie
    language = client.get("/language/en", **https)
    assert "; Secure" in _set_cookie(language, "lang")
    with production_app.test_request_context():
        static = url_for("static", filename="css/portal.css")
    for answer in (
        response,
        language,
        client.get("/api/v1/instruments", **https),
        client.get(static, **https),
    ):
        assert_protective_headers(answer)
        hsts = answer.headers["Strict-Transport-Security"]
        assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 365 * 24 * 3600
        assert "includeSubDomains" in hsts


def test_development_cookies_are_httponly_and_samesite_but_not_secure(site):
    response = sign_in(site.app.test_client(), site.username, remember=True)
    for name in ("session", "remember_token"):
        cookie = _set_cookie(response, name)
        assert "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
        assert "; Secure" not in cookie  # plain-HTTP development would otherwise lose its session


# --- sign-out really ends the session (both backends: the session version lives in the users row) ---

# For checks where the backend makes no difference.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_a_session_cookie_copied_before_sign_out_is_refused_after_it(app, make_user):
    make_user(username="victim")
    client = app.test_client()
    sign_in(client, "victim")
    copied = client.get_cookie("session").value

    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/account").status_code == 200  # the copy works while the user is signed in

    sign_out(client)
    replay = app.test_client()
    replay.set_cookie("session", copied)
    response = replay.get("/account")
    assert response.status_code == 302
    assert response.location.startswith("/login")

    # Signing in again later does not bring the old cookie back to life.
    sign_in(client, "victim")
    assert client.get("/account").status_code == 200
    again = app.test_client()
    again.set_cookie("session", copied)
    assert again.get("/account").status_code == 302


def test_a_remember_me_cookie_copied_before_sign_out_is_refused_after_it(app, make_user):
    make_user(username="keeper")
    client = app.test_client()
    sign_in(client, "keeper", remember=True)
    copied = client.get_cookie("remember_token").value

    thief = app.test_client()  # no session cookie: only "keep me signed in"
    thief.set_cookie("remember_token", copied)
    assert thief.get("/account").status_code == 200

    sign_out(client)
    assert client.get_cookie("remember_token") is None  # the browser's own copy is deleted
    replay = app.test_client()
    replay.set_cookie("remember_token", copied)
    response = replay.get("/account")
    assert response.status_code == 302
    assert response.location.startswith("/login")


@sqlite_only
def test_a_deactivated_account_loses_its_open_session(app, make_user):
    user = make_user(username="leaver")
    client = app.test_client()
    sign_in(client, "leaver", remember=True)
    assert client.get("/account").status_code == 200
    user.is_active_account = False
    db.session.commit()
    assert client.get("/account").status_code == 302


@sqlite_only
def test_the_api_does_not_accept_a_browser_session_cookie(app, make_user):
    make_user(username="browser")
    client = app.test_client()
    sign_in(client, "browser", remember=True)
    response = client.get("/api/v1/bookings")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


# --- no inline script or style for the CSP to refuse ---------------------------------------------


INLINE = {
    "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "event handler attribute": re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE),
    "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
    "style attribute": re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE),
    "style element": re.compile(r"<style[\s>]", re.IGNORECASE),
}


def test_templates_and_server_drawn_charts_have_nothing_inline_for_the_csp_to_refuse():
    sources = [*TEMPLATES.rglob("*.html"), TEMPLATES.parent / "core" / "charts.py"]
    assert len(sources) > 20
    found = [
        f"{path.relative_to(TEMPLATES.parent)}: {what}"
        for path in sources
        for what, pattern in INLINE.items()
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
