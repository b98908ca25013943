"""Catalogue pages: the instrument record, contact privacy, caching headers, language, escaping."""

from __future__ import annotations

from datetime import time

import pytest

from tests.factories import login


def test_detail_page_shows_every_field(client, make_instrument):
    instrument = make_instrument(
        code="LCU-00042",
        name="场发射扫描电子显微镜",
        name_en="Field Emission Scanning Electron Microscope",
        category_code="0101",
        model="Sigma 300",
        manufacturer="ZEISS (蔡司)",
        country_of_origin="德国",
        original_value_fen=356_000_000,
        specs="分辨率：0.8 nm@15 kV",
        functions="表面形貌观察",
        service_content="对外提供形貌分析服务",
        fee_per_hour_fen=500_00,
        fee_per_sample_fen=200_00,
        address="湖南路1号理工楼101室",
        operator_name="李工",
        opening_hours=[
            (0, time(8, 30), time(12, 0)),
            (0, time(14, 0), time(17, 30)),
            (5, time(9, 0), time(12, 0)),
        ],
    )
    page = client.get(f"/instruments/{instrument.code}").get_data(as_text=True)
    for expected in (
        "场发射扫描电子显微镜",
        "Field Emission Scanning Electron Microscope",
        "Sigma 300",
        "ZEISS (蔡司)",
        "德国",
        "¥3,560,000.00",
        "分辨率：0.8 nm@15 kV",
        "表面形貌观察",
        "对外提供形貌分析服务",
        "¥500.00",
        "¥200.00",
        "湖南路1号理工楼101室",
        "李工",
        "08:30–12:00, 14:00–17:30",
        "09:00–12:00",
        "电子光学仪器",
        "分析仪器",
        instrument.institution.name,
    ):
        assert expected in page, expected


def test_operator_phone_only_for_signed_in_users(client, make_instrument, make_user):
    instrument = make_instrument(operator_phone="0635-8231234")
    anonymous = client.get(f"/instruments/{instrument.code}").get_data(as_text=True)
    assert "0635-8231234" not in anonymous
    assert "/login?next=" in anonymous
    make_user(username="viewer")
    login(client, "viewer")
    assert "0635-8231234" in client.get(f"/instruments/{instrument.code}").get_data(as_text=True)


def test_unknown_instrument_is_a_404_page(client):
    response = client.get("/instruments/NOPE")
    assert response.status_code == 404
    assert "页面不存在" in response.get_data(as_text=True)


def test_catalogue_page_is_revalidated_with_etags(client, make_instrument):
    make_instrument()
    first = client.get("/instruments/")
    assert first.headers["Cache-Control"] == "private, no-cache"
    assert client.get("/instruments/", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_chinese_by_default_and_english_on_request(client, make_instrument):
    instrument = make_instrument(name="液相色谱仪", name_en="Liquid Chromatograph")
    page = client.get("/instruments/").get_data(as_text=True)
    assert '<html lang="zh-CN">' in page and "大型科学仪器" in page
    response = client.get("/language/en?next=/instruments/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/instruments/")
    english = client.get("/instruments/").get_data(as_text=True)
    assert '<html lang="en">' in english and "Networked large instruments" in english
    assert "Liquid Chromatograph" in english
    assert "Mass spectrometers" in client.get(f"/instruments/{instrument.code}").get_data(as_text=True)


def test_language_switch_does_not_redirect_off_site(client):
    response = client.get("/language/en?next=https://evil.example/")
    assert response.headers["Location"].endswith("/instruments/")


def test_signed_in_users_keep_their_language(client, make_user):
    user = make_user(username="polyglot")
    login(client, "polyglot")
    client.get("/language/en")
    from portal.extensions import db

    db.session.refresh(user)
    assert user.language == "en"


def test_stored_markup_is_escaped(client, make_instrument):
    instrument = make_instrument(name="<script>alert(1)</script>", specs="<b>bold</b>")
    listing = client.get("/instruments/").get_data(as_text=True)
    detail = client.get(f"/instruments/{instrument.code}").get_data(as_text=True)
    for page in (listing, detail):
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in detail


def test_pages_carry_security_headers(client):
    headers = client.get("/instruments/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_pages_have_no_inline_script(client, make_instrument):
    import re

    instrument = make_instrument()
    for path in ("/instruments/", f"/instruments/{instrument.code}", "/login", "/register"):
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert " onclick=" not in html and " style=" not in html


def test_visitors_search_page_is_reused_until_the_catalogue_changes(app, client, make_instrument, make_user):
    from flask import template_rendered

    from portal.extensions import db

    instrument = make_instrument(name="液相色谱仪")
    url = "/instruments/?q=色谱&status=normal"
    rendered: list[str] = []

    def note(sender, template, context, **extra) -> None:
        rendered.append(template.name)

    template_rendered.connect(note, app)
    try:
        first = client.get(url).get_data(as_text=True)
        assert "液相色谱仪" in first and rendered == ["catalog/index.html"]
        again = client.get(url).get_data(as_text=True)
        assert again == first and rendered == ["catalog/index.html"], "the second visit rendered again"

        # An edit replaces the catalogue version: the next visitor sees it at once.
        instrument.name = "超高效液相色谱仪"
        db.session.commit()
        assert "超高效液相色谱仪" in client.get(url).get_data(as_text=True)
        assert rendered == ["catalog/index.html"] * 2

        # A signed-in user gets a page of their own (their name in the menu), never the visitor's copy.
        make_user(username="browser", full_name="浏览者")
        login(client, "browser")
        rendered.clear()
        assert "浏览者" in client.get(url).get_data(as_text=True)
        assert rendered == ["catalog/index.html"]
    finally:
        template_rendered.disconnect(note, app)


def test_a_visitors_page_with_a_message_is_not_kept(app, client, make_instrument):
    make_instrument(name="液相色谱仪")
    with client.session_transaction() as session:
        session["_flashes"] = [("info", "一次性提示")]
    assert "一次性提示" in client.get("/instruments/").get_data(as_text=True)
    assert "一次性提示" not in client.get("/instruments/").get_data(as_text=True)


@pytest.mark.parametrize("blank", [" ", "\n", "\t "])
def test_a_blank_choice_in_the_url_is_the_default(client, make_instrument, blank):
    for _ in range(3):
        make_instrument()
    for name in ("per_page", "category", "status", "sort", "institution"):
        response = client.get("/instruments/", query_string={name: blank})
        assert response.status_code == 200, name
        assert "共找到 3 台仪器" in response.get_data(as_text=True), name


def test_junk_parameters_redirect_to_the_one_url_of_the_search_and_make_no_cache_entry(
    app, client, make_instrument
):
    from portal.extensions import cache

    make_instrument(name="液相色谱仪")
    clean = client.get("/instruments/?q=色谱")
    assert clean.status_code == 200
    entries = len(cache.cache._cache)
    for junk in ("q=色谱&utm_source=x", "q=色谱&q=质谱", "q=色谱&x=1&y=2", "q=色谱&page=01"):
        answer = client.get(f"/instruments/?{junk}")
        assert answer.status_code == 302
        assert answer.headers["Location"] == "/instruments/?q=%E8%89%B2%E8%B0%B1"
    assert len(cache.cache._cache) == entries  # the junk URLs left nothing in the cache
    # What the search form sends (empty fields, default sort and page size) is the same search.
    form = "q=色谱&institution=&category=&status=&county=&fee_min=&fee_max=&sort=relevance&per_page=20"
    assert client.get(f"/instruments/?{form}").status_code == 200
    assert client.get("/instruments/?q=%20%20色谱%20&sort=relevance&page=1").status_code == 200
    assert len(cache.cache._cache) == entries
    assert client.get("/instruments/?fee_min=100.00").headers["Location"] == "/instruments/?fee_min=100"
