"""Walk the portal as one demo role, following the links of every page it sees.

Tests that must hold on every page type (English pages without Chinese interface text, phone widths
without sideways scrolling) walk the demo network this way instead of keeping a list of URLs that
goes stale: a new page is covered as soon as any page links to it. A kind of page is its path with
the numbers taken out (/bookings/12 and /bookings/13 are one kind).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from portal.accounts.models import User
from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from tests.factories import login

ROLES = ("anon", "enterprise", "enterprise-staff", "newco", "provider", "reviewer", "finance", "admin")
START = ("/", "/catalog/", "/network/", "/login", "/register", "/password/forgot")
# Links not followed: they sign out, switch language, download files or change state on GET.
SKIP = re.compile(
    r"^/(logout|language/|static/)|/(download|export|feed|calendar\.ics|file)|\.(ics|csv|xlsx|pdf)$"
)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


def kind(path: str) -> str:
    return re.sub(r"\d+", "#", path)


def set_language(app: Flask, username: str, language: str) -> None:
    """A user's saved language wins over the cookie: save the one the walk reads in."""
    with app.app_context():
        db.session.execute(db.update(User).where(User.username == username).values(language=language))
        db.session.commit()


def address_of(role: str, language: str) -> str:
    return f"10.{ROLES.index(role) + 1}.{1 + ('zh', 'en').index(language)}.7"


def browser_headers(role: str, language: str) -> dict[str, str]:
    """Extra headers for a browser context taking over `signed_in(app, role, language)`'s session."""
    return {"X-Forwarded-For": address_of(role, language)}


def signed_in(app: Flask, role: str, language: str, user_agent: str | None = None) -> FlaskClient:
    """A test client of `role` reading in `language` (anonymous: only the language cookie). A browser
    can take over its session when it sends the same User-Agent (sessions are bound to it)."""
    client = app.test_client()
    if user_agent:
        client.environ_base["HTTP_USER_AGENT"] = user_agent
    # Each role and language signs in from an address of its own, so that many walks in one test do
    # not meet the per-address sign-in limit. The browser that takes the session over sends the same
    # address as X-Forwarded-For (see browser_headers), which is what sessions are bound to.
    client.environ_base["REMOTE_ADDR"] = address_of(role, language)
    client.environ_base["HTTP_X_FORWARDED_FOR"] = address_of(role, language)
    client.set_cookie("lang", language)
    if role != "anon":
        set_language(app, role, language)
        answer = login(client, role, DEMO_PASSWORD)
        assert answer.status_code == 302, f"{role} cannot sign in"
    return client


def walk(
    app: Flask,
    role: str,
    language: str,
    *,
    per_kind: int,
    limit: int,
    client: FlaskClient | None = None,
    seen_kinds: set[str] | None = None,
) -> Iterator[tuple[str, str]]:
    """(url, html) of every page `role` reaches from the start pages, at most `per_kind` of a kind.

    With `seen_kinds` (shared by the walks of several roles), a kind another role has already been
    shown is still followed for its links but not yielded again, and the kinds yielded are added."""
    client = client or signed_in(app, role, language)
    queue = list(START)
    seen: set[str] = set()
    kinds: Counter[str] = Counter()
    pages = 0
    while queue and pages < limit:
        url = queue.pop(0)
        path = urlsplit(url).path
        if url in seen or SKIP.search(path) or kinds[kind(path)] >= per_kind:
            continue
        seen.add(url)
        kinds[kind(path)] += 1
        response = client.get(url)
        if response.status_code in (301, 302, 303) and response.location:
            queue.append(urlsplit(urljoin(url, response.location))._replace(scheme="", netloc="").geturl())
            continue
        if response.status_code != 200 or not response.mimetype.startswith("text/html"):
            continue
        body = response.get_data(as_text=True)
        if seen_kinds is None or kind(path) not in seen_kinds or kinds[kind(path)] > 1:
            pages += 1
            yield url, body
        if seen_kinds is not None and kinds[kind(path)] == 1:
            seen_kinds.add(kind(path))
        links = _Links()
        links.feed(body)
        for href in links.links:
            parts = urlsplit(urljoin(url, href))
            if not parts.netloc and parts.path.startswith("/"):
                queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
