"""Helpers of the accounts tests: the mail the portal wrote, the links in it, signing in, page forms."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.extensions import db
from tests.factories import PASSWORD, extract_csrf, login

LINK = re.compile(
    r"https?://[^/\s]+(/(?:password/reset|account/email|invitations|register/confirm)/[A-Za-z0-9_-]+)"
)


@pytest.fixture(name="mailbox")
def mailbox_fixture(app: Flask, tmp_path: Path) -> Path:
    """Without MAIL_SERVER the portal writes each mail as an .eml file; this folder is the test's own."""
    folder = tmp_path / "mail"
    app.config["MAIL_FILE_FOLDER"] = str(folder)
    return folder


def mails(folder: Path, to: str | None = None) -> list[EmailMessage]:
    """The mails written so far, oldest first (to one address, if given)."""
    if not folder.exists():
        return []
    found = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    ]
    return [m for m in found if to is None or m["To"] == to]


def link_in(message: EmailMessage) -> str:
    """The one-time link (path) in a mail."""
    match = LINK.search(message.get_content())
    assert match, f"no link in {message.get_content()!r}"
    return match.group(1)


def signed_in(app: Flask, username: str, password: str = PASSWORD) -> FlaskClient:
    client = app.test_client()
    response = login(client, username, password)
    assert response.status_code == 302, f"{username} could not sign in"
    return client


def post_form(client: FlaskClient, path: str, data: dict | None = None, page: str | None = None):
    """POST a page's form with the CSRF token of the page it is on (`page`, default `path`)."""
    token = extract_csrf(client.get(page or path).get_data(as_text=True))
    return client.post(path, data={**(data or {}), "csrf_token": token})


def run_deferred(response) -> None:
    """Close a response, which runs what it deferred to after sending (as a server does)."""
    response.close()
    db.session.rollback()  # read what the deferred work committed
