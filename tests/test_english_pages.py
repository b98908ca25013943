"""English pages carry no Chinese interface text, and Chinese data on them is marked `lang="zh"`.

Every role of the demo network walks the portal in English, following the links of every page it can
see (a few pages of each kind), and every page is read as a screen reader or a translator would: any
Chinese character in text or in a readable attribute (title, placeholder, aria-label, alt) that is not
inside an element marked `lang="zh"` fails the test. Chinese interface text means a string that is not
translated; Chinese data (an instrument or institution without an English name, a person's name) is
fine, but must carry its language so that screen readers read it in Chinese.
"""

from __future__ import annotations

import html
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask

from portal.accounts.models import User
from portal.demo import DEMO_PASSWORD
from portal.extensions import db
from tests import page_walk
from tests.conftest import demo_upload_folder, make_app
from tests.factories import login

CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
# Not read as page text: code, and the document title (it cannot mark a part of itself as Chinese; a
# page about one instrument is titled with its name).
UNREAD = ("script", "style", "template", "title")
READABLE_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
ROLES = page_walk.ROLES
PAGES_PER_KIND = 2  # a kind of page is its path with the numbers taken out
PAGES_PER_ROLE = 160


class _Reader(HTMLParser):
    """Collects (text, where) for Chinese text outside any element with lang="zh…"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, chinese here)
        self.found: list[str] = []
        self.links: list[str] = []
        self.skip_depth = 0

    def _chinese(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        lang = values.get("lang")
        chinese = lang.lower().startswith("zh") if lang is not None else self._chinese()
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if not chinese:
            for name in READABLE_ATTRIBUTES:
                if values.get(name) and CJK.search(values[name] or ""):
                    self.found.append(f"<{tag} {name}={values[name]!r}>")
            if (
                tag == "input"
                and values.get("type") in ("submit", "button")
                and CJK.search(values.get("value") or "")
            ):
                self.found.append(f"<input value={values['value']!r}>")
        if tag in VOID:
            return
        if tag in UNREAD:
            self.skip_depth += 1
        self.stack.append((tag, chinese))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag in UNREAD:
                self.skip_depth -= 1
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self._chinese() or not CJK.search(data):
            return
        parent = self.stack[-1][0] if self.stack else "?"
        self.found.append(f"<{parent}> {data.strip()[:80]!r}")


def read(html: str) -> _Reader:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader


@pytest.fixture(scope="module")
def english_portal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    """A copy of the demo network (the walk changes nothing, but it must not touch the shared one)."""
    demo_url = request.getfixturevalue("demo_database_url_sqlite")
    folder = tmp_path_factory.mktemp("english")
    shutil.copy(Path(demo_url.removeprefix("sqlite:///")), folder / "portal.db")
    shutil.copytree(demo_upload_folder(demo_url), folder / "uploads")
    return make_app(f"sqlite:///{folder / 'portal.db'}", UPLOAD_FOLDER=str(folder / "uploads"))


def walk(app: Flask, role: str) -> tuple[dict[str, list[str]], int]:
    """Every page this role reaches by links, read: {url: Chinese found}, pages read."""
    problems: dict[str, list[str]] = {}
    pages = 0
    for url, body in page_walk.walk(app, role, "en", per_kind=PAGES_PER_KIND, limit=PAGES_PER_ROLE):
        pages += 1
        page = read(body)
        if page.found:
            problems[url] = page.found
    return problems, pages


@pytest.mark.parametrize("role", ROLES)
def test_english_pages_have_no_chinese_interface_text(english_portal: Flask, role: str) -> None:
    problems, pages = walk(english_portal, role)
    assert pages >= 5, f"{role} read only {pages} pages"
    report = "\n".join(f"{url}\n    " + "\n    ".join(found[:8]) for url, found in sorted(problems.items()))
    assert not problems, f"Chinese text outside lang='zh' on {len(problems)} of {pages} pages:\n{report}"


def test_the_reader_finds_unmarked_chinese_and_accepts_marked_chinese() -> None:
    assert read("<p>Book <b>质谱仪</b></p>").found == ["<b> '质谱仪'"]
    assert read('<p lang="zh">质谱仪 <b>高分辨</b></p><img alt="照片">').found == ["<img alt='照片'>"]
    assert read('<td><span lang="zh-CN">聊城大学</span> host</td>').found == []
    assert read("<script>var a = '中文';</script><input placeholder='搜索'>").found == [
        "<input placeholder='搜索'>"
    ]


def test_a_claims_stored_checks_are_read_in_the_readers_language(english_portal: Flask) -> None:
    """Checks are stored when a claim is submitted, in the submitter's language; the reviewer reads
    them in their own (the demo's enterprises submit in Chinese)."""
    from portal.vouchers.models import Claim

    with english_portal.app_context():
        claim = db.session.execute(
            db.select(Claim).where(Claim.submitted_at.is_not(None)).limit(1)
        ).scalar_one()
        check = claim.checks[0]
        assert set(check["messages"]) == {"zh", "en"}
        assert has_cjk(check["messages"]["zh"]) and not has_cjk(check["messages"]["en"])
        claim_id = claim.id
    client = english_portal.test_client()
    login(client, "admin", DEMO_PASSWORD)
    for language, expected in (("en", check["messages"]["en"]), ("zh", check["messages"]["zh"])):
        client.get(f"/language/{language}")
        with english_portal.app_context():
            db.session.execute(db.update(User).where(User.username == "admin").values(language=language))
            db.session.commit()
        page = client.get(f"/vouchers/claims/{claim_id}").get_data(as_text=True)
        assert html.escape(expected, quote=False) in page, language


def test_api_error_messages_follow_accept_language(english_portal: Flask) -> None:
    client = english_portal.test_client()
    english = client.post("/api/v1/tokens", json={}, headers={"Accept-Language": "en-US,en;q=0.9"}).get_json()
    chinese = client.post("/api/v1/tokens", json={}, headers={"Accept-Language": "zh-CN"}).get_json()
    assert english["error"]["code"] == chinese["error"]["code"]
    assert not has_cjk(english["error"]["message"]) and has_cjk(chinese["error"]["message"])
    # Without the header the portal's default language (Chinese) answers, as before.
    assert has_cjk(client.post("/api/v1/tokens", json={}).get_json()["error"]["message"])


def test_counties_and_countries_are_named_in_english(english_portal: Flask) -> None:
    client = english_portal.test_client()
    client.set_cookie("lang", "en")
    page = client.get("/instruments/?county=高新区").get_data(as_text=True)
    assert "High-tech Zone" in page and "高新区</td>" not in page
    with english_portal.app_context():
        from portal.catalog.models import Instrument

        code = db.session.execute(
            db.select(Instrument.code).where(Instrument.country_of_origin == "德国").limit(1)
        ).scalar_one()
    assert "Germany" in client.get(f"/instruments/{code}").get_data(as_text=True)


def has_cjk(text: str) -> bool:
    return bool(CJK.search(text))
