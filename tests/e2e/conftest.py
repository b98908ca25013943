"""A live portal on a free port and a headless Debian Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from portal.extensions import db
from tests.conftest import (
    MONDAY_9AM,
    FakeClock,
    demo_upload_folder,
    install_clock,
    make_app,
    next_monday_9am,
)

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# A phone's screen (the pages must work at 390 pixels).
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def demo_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The clock of tests on a demo copy: a Monday 09:00 in Liaocheng, MONDAY_9AM or the first one
    after the real now, whichever is later. The demo was loaded at the real time, so a fixed date that
    the real one has passed would put every row the test writes behind the demo's own (the provider's
    queue, newest first, would list the demo's requests above the test's)."""
    return install_clock(monkeypatch, max(MONDAY_9AM, next_monday_9am(datetime.now(UTC))))


@pytest.fixture
def served(app) -> Iterator[str]:
    """The test's own app (a fresh database) served over HTTP in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@dataclass
class LivePortal:
    url: str
    app: Flask


@contextmanager
def serve_demo_copy(
    request: pytest.FixtureRequest, folder: Path, *, photos: bool = False, **overrides: object
) -> Iterator[LivePortal]:
    """A copy of the demo network (its database, and with `photos` its photos and evidence) served
    by a real HTTP server in a background thread; mail links point at it."""
    demo_url = request.getfixturevalue("demo_database_url_sqlite")
    shutil.copy(Path(demo_url.removeprefix("sqlite:///")), folder / "live.db")
    if photos:
        shutil.copytree(demo_upload_folder(demo_url), folder / "uploads")
    app = make_app(f"sqlite:///{folder / 'live.db'}", UPLOAD_FOLDER=str(folder / "uploads"), **overrides)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    app.config["PORTAL_BASE_URL"] = url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LivePortal(url, app)
    finally:
        server.shutdown()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="module")
def live_portal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LivePortal]:
    """A copy of the demo network served by a real HTTP server in a background thread."""
    with serve_demo_copy(request, tmp_path_factory.mktemp("live"), photos=True) as portal:
        yield portal


@pytest.fixture(scope="module")
def live_server(live_portal: LivePortal) -> str:
    return live_portal.url


@pytest.fixture(scope="module")
def browser(chromium_path: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def answer_dialogs(page) -> list[str]:
    """Agree to every confirm() (irreversible actions ask first, portal.js) and keep what was asked,
    in order, as `page.asked`, so a test can check that a step asked before it acted. A test that
    wants to say no appends False to `page.answers` before the step (each answer is used once)."""
    asked: list[str] = []
    answers: list[bool] = []

    def answer(dialog) -> None:
        asked.append(dialog.message)
        if answers and not answers.pop(0):
            dialog.dismiss()
        else:
            dialog.accept()

    page.on("dialog", answer)
    page.asked = asked
    page.answers = answers
    return asked


def open_page(browser, errors: list[str]):
    """A fresh browser session (its own cookies) that records console errors and agrees to confirms."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    answer_dialogs(page)
    return page


@pytest.fixture
def browser_errors() -> Iterator[list[str]]:
    errors: list[str] = []
    yield errors
    assert errors == [], f"browser console errors: {errors}"


@pytest.fixture
def page(browser, browser_errors):
    page = open_page(browser, browser_errors)
    yield page
    page.context.close()
