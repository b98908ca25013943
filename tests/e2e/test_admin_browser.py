"""In a real browser: the administrator uploads a catalogue file with one bad row, reads the dry run,
fixes the file, uploads it again and applies it; the public catalogue shows the new instruments."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from portal.catalog.importer import HEADERS
from tests.e2e.conftest import open_page
from tests.e2e.test_booking_browser import sign_in

pytestmark = pytest.mark.e2e


def catalogue_file(path: Path, second_category: str) -> Path:
    rows = [
        {"仪器编码": "LC-E2E-001", "仪器名称": "场发射扫描电子显微镜", "仪器分类代码": "0101"},
        {"仪器编码": "LC-E2E-002", "仪器名称": "电感耦合等离子体质谱仪", "仪器分类代码": second_category},
    ]
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HEADERS, extrasaction="ignore")
        writer.writeheader()
        for values in rows:
            writer.writerow(
                {**values, "原值(万元)": "320.5", "依托单位": "聊城大学", "收费标准(元/小时)": "400"}
            )
    return path


def upload(page, base: str, path: Path) -> None:
    page.goto(f"{base}/admin/imports")
    page.get_by_label("仪器目录文件（CSV UTF-8 或 XLSX）").set_input_files(str(path))
    page.get_by_role("button", name="上传并检查（试运行）").click()
    page.wait_for_url(re.compile(r"/admin/imports/\d+$"))


def test_upload_a_file_with_a_bad_row_fix_it_and_import(live_portal, browser, browser_errors, tmp_path):
    base = live_portal.url
    page = open_page(browser, browser_errors)
    sign_in(page, base, "admin")
    page.locator("#user-menu-button").click()  # the console is in the user menu
    page.get_by_role("link", name="管理后台").click()
    page.get_by_role("link", name="仪器目录导入").click()
    page.wait_for_url(re.compile(r"/admin/imports$"))
    expect(
        page.locator("#import-history").get_by_text("仪器信息更新.csv")
    ).to_be_visible()  # the demo's import

    # The first file has a wrong category code in its second instrument (row 3 of the file).
    upload(page, base, catalogue_file(tmp_path / "新仪器.csv", "0177"))
    assert page.locator("#import-state").inner_text() == "有问题：未导入"
    problems = page.locator("#import-errors tbody tr")
    assert problems.count() == 1
    assert problems.first.locator("td").all_inner_texts()[:2] == ["3", "仪器分类代码"]
    assert "0177" in problems.first.inner_text()
    assert page.locator("#apply").count() == 0  # a file with an error cannot be applied

    # Fixed, it passes the dry run; nothing is written until it is applied.
    upload(page, base, catalogue_file(tmp_path / "新仪器-改.csv", "0102"))
    assert page.locator("#import-state").inner_text() == "已检查（试运行）：可以导入"
    assert page.locator("#count-created").inner_text() == "2"
    assert page.locator("#import-errors").count() == 0
    anonymous = browser.new_context(locale="zh-CN").new_page()
    assert anonymous.goto(f"{base}/instruments/LC-E2E-001").status == 404

    dialogs: list[str] = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.locator("#apply").click()
    page.wait_for_load_state()
    page.locator("#import-state[data-state=applied]").wait_for()
    assert dialogs and "2" in dialogs[0]  # it asked first, saying what it would do
    assert page.locator("#count-created").inner_text() == "2"

    # The public catalogue shows them at once.
    anonymous.goto(f"{base}/instruments/LC-E2E-002")
    assert anonymous.locator("h1").inner_text() == "电感耦合等离子体质谱仪"
    anonymous.context.close()

    # The history keeps both files, the bad one and the applied one.
    page.get_by_role("link", name="上传其他文件").click()
    states = page.locator("#import-history tbody tr").evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert states[:2] == ["applied", "invalid"]
    page.context.close()


def test_the_import_page_works_on_a_phone(live_portal, browser, browser_errors):
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.on("pageerror", lambda e: browser_errors.append(str(e)))
    sign_in(page, live_portal.url, "admin")
    for path in ("/admin/imports", "/admin/institutions", "/admin/enterprises", "/admin/schemes"):
        page.goto(f"{live_portal.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, path
    context.close()
