"""In a real browser: open the catalogue, search, filter, open an instrument, switch to English."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_browse_search_filter_open_and_switch_language(live_server, page):
    page.goto(f"{live_server}/instruments/")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    total = int(re.search(r"\d+", page.locator("#result-count").inner_text()).group())
    assert total == 1204  # the city's 1202 and a Shanghai test centre's 2 (out-of-province claims)

    page.get_by_label("关键词").fill("质谱")
    page.get_by_role("button", name="搜索", exact=True).click()
    page.wait_for_url(re.compile(r"q=%E8%B4%A8%E8%B0%B1"))
    found = int(re.search(r"\d+", page.locator("#result-count").inner_text()).group())
    assert 0 < found < total
    names = page.locator("a.instrument-link").all_inner_texts()
    assert names and all(name for name in names)

    page.get_by_label("所在区县").select_option("东昌府区")
    page.get_by_role("button", name="应用筛选").click()
    page.wait_for_url(re.compile(r"county="))
    assert "q=" in page.url  # the keyword stays while filtering
    filtered = int(re.search(r"\d+", page.locator("#result-count").inner_text()).group())
    assert 0 < filtered <= found
    assert page.get_by_label("关键词").input_value() == "质谱"

    first = page.locator("a.instrument-link").first
    name = first.inner_text()
    first.click()
    page.wait_for_url(re.compile(r"/instruments/[A-Z]"))
    assert page.locator("h1").inner_text() == name
    expect(page.get_by_text("收费标准")).to_be_visible()
    expect(page.get_by_text("登录后查看电话")).to_be_visible()

    page.get_by_role("link", name="English").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.get_by_text("Fee standard")).to_be_visible()
    expect(page.get_by_role("link", name="中文")).to_be_visible()


def test_catalogue_works_on_a_phone_screen(live_server, browser):
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{live_server}/instruments/")
    filters = page.locator("#filters")
    expect(filters).to_be_hidden()  # collapsed on a phone
    page.get_by_role("button", name="筛选").click()
    filters.wait_for(state="visible")
    expect(page.get_by_label("所在区县")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    context.close()
