"""Catalogue files with price tables (the 收费标准明细 column), and old files with the two fee columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.catalog import prices
from portal.catalog.importer import HEADERS
from portal.catalog.price_text import format_price_table, parse_price_table
from portal.catalog.services import get_instrument
from tests.test_catalog_import import assert_export_reimports_unchanged, csv_bytes, row, run

CELL = (
    "企业/自主上机=300/小时 最低1 超时450; 企业/代为操作=450/小时; 科技型中小企业/送样=80/样 阶梯11:60|51:40"
)
OLD_HEADERS = [h for h in HEADERS if h != "收费标准明细"]


@pytest.fixture
def host(make_institution):
    return make_institution(name="聊城测试大学", county="东昌府区")


def table_of(code: str) -> list[dict]:
    return [p.as_json() for p in prices.price_table(get_instrument(code))]


def test_the_cell_format_reads_back_what_it_writes():
    rows = parse_price_table(CELL)
    assert rows[0] == {
        "customer": "enterprise",
        "mode": "self",
        "unit": "hour",
        "unit_price_fen": 300_00,
        "min_units": 1,
        "steps": [],
        "overtime_unit_price_fen": 450_00,
    }
    assert rows[2]["steps"] == [
        {"from_units": 11, "unit_price_fen": 60_00},
        {"from_units": 51, "unit_price_fen": 40_00},
    ]
    assert parse_price_table(format_price_table(rows)) == rows
    assert parse_price_table("enterprise/staff=12.5/hour min2") == [
        {
            "customer": "enterprise",
            "mode": "staff",
            "unit": "hour",
            "unit_price_fen": 12_50,
            "min_units": 2,
            "steps": [],
            "overtime_unit_price_fen": None,
        }
    ]


@pytest.mark.parametrize(
    "cell",
    ["企业=300", "外星人/自主上机=300", "企业/自主上机=-3", "企业/自主上机=3 打折9", "企业/送样=3/小时"],
)
def test_a_bad_cell_is_reported_and_nothing_written(app, host, cell):
    report = run(csv_bytes([row(**{"收费标准明细": cell})]))
    assert not report.ok and report.problems[0].column == "收费标准明细"


def test_a_table_imports_and_its_enterprise_prices_become_the_fee_columns(app, host):
    assert run(csv_bytes([row(**{"收费标准明细": CELL, "收费标准(元/小时)": "1", "收费标准(元/样)": ""})])).ok
    instrument = get_instrument("LCU-90001")
    assert (instrument.fee_per_hour_fen, instrument.fee_per_sample_fen) == (300_00, None)
    assert [(p["customer"], p["mode"]) for p in table_of("LCU-90001")] == [
        ("enterprise", "self"),
        ("enterprise", "staff"),
        ("sme", "sample"),
    ]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_then_import_with_price_tables_is_a_round_trip(app, host, tmp_path: Path, suffix):
    assert run(csv_bytes([row(**{"收费标准明细": CELL}), row(**{"仪器编码": "LCU-90002"})])).ok
    before = table_of("LCU-90001"), table_of("LCU-90002")
    assert_export_reimports_unchanged(tmp_path, suffix, 2)
    assert (table_of("LCU-90001"), table_of("LCU-90002")) == before


def test_an_old_file_imports_its_fees_as_the_enterprise_price(app, host):
    report = run(
        csv_bytes([row(**{"收费标准(元/小时)": "200", "收费标准(元/样)": "80"})], headers=OLD_HEADERS)
    )
    assert report.ok and report.created == 1
    assert [(p["customer"], p["mode"], p["unit_price_fen"]) for p in table_of("LCU-90001")] == [
        ("enterprise", "self", 200_00),
        ("enterprise", "staff", 200_00),
        ("enterprise", "sample", 80_00),
    ]


def test_an_old_file_changes_only_the_enterprise_rows_of_a_stored_table(app, host):
    full = CELL + "; 本单位/自主上机=100/小时"
    assert run(csv_bytes([row(**{"收费标准明细": full})])).ok
    # the same fees again: nothing changes
    same = run(csv_bytes([row(**{"收费标准(元/小时)": "300", "收费标准(元/样)": ""})], headers=OLD_HEADERS))
    assert (same.updated, same.unchanged) == (0, 1)
    changed = run(
        csv_bytes([row(**{"收费标准(元/小时)": "350", "收费标准(元/样)": "90"})], headers=OLD_HEADERS)
    )
    assert changed.updated == 1
    assert [(p["customer"], p["mode"], p["unit_price_fen"]) for p in table_of("LCU-90001")] == [
        ("internal", "self", 100_00),
        ("enterprise", "self", 350_00),
        ("enterprise", "staff", 350_00),
        ("enterprise", "sample", 90_00),
        ("sme", "sample", 80_00),
    ]
