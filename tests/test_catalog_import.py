"""Catalogue files: precise error reports, all-or-nothing writes, idempotent re-import, round trips."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from portal.catalog.exporter import export_catalog
from portal.catalog.importer import HEADERS, import_catalog
from portal.catalog.models import Instrument, InstrumentStatus
from portal.catalog.services import catalog_version
from portal.core.models import AuditEvent
from portal.extensions import db

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


def row(**overrides) -> dict[str, str]:
    values = {
        "仪器编码": "LCU-90001",
        "仪器名称": "气相色谱-质谱联用仪",
        "英文名称": "Gas Chromatograph-Mass Spectrometer",
        "仪器分类代码": "0102",
        "规格型号": "7890B-5977B",
        "生产制造商": "Agilent (安捷伦)",
        "产地国别": "美国",
        "原值(万元)": "86.50",
        "启用日期": "2019-05-20",
        "依托单位": "聊城测试大学",
        "所在区县": "",
        "安放地址": "湖南路1号",
        "运行状态": "正常",
        "收费标准(元/小时)": "",
        "收费标准(元/样)": "300",
        "主要技术指标": "质量范围：1.2～1050 u",
        "主要功能": "挥发性有机物定性定量分析",
        "服务内容": "对外提供检测服务",
        "联系人": "张三",
        "联系电话": "0635-8239999",
    }
    values.update(overrides)
    return values


def csv_bytes(rows: list[dict[str, str]], headers: list[str] | None = None, bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=headers or HEADERS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def xlsx_bytes(rows: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for r in rows:
        sheet.append(r)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.fixture
def host(make_institution):
    return make_institution(name="聊城测试大学", county="东昌府区")


def count() -> int:
    return db.session.scalar(select(func.count()).select_from(Instrument))


def run(data: bytes, name: str = "catalog.csv", **kwargs):
    return import_catalog(io.BytesIO(data), name, **kwargs)


def assert_export_reimports_unchanged(tmp_path: Path, suffix: str, count: int) -> None:
    """The catalogue exported to a file of this kind imports again with nothing created or changed."""
    path = tmp_path / f"export{suffix}"
    assert export_catalog(path) == count
    with path.open("rb") as handle:
        report = import_catalog(handle, path.name)
    assert report.ok, report.problems
    assert (report.created, report.updated, report.unchanged) == (0, 0, count)


def test_import_creates_instruments_with_exact_values(app, host):
    report = run(csv_bytes([row(), row(**{"仪器编码": "LCU-90002", "收费标准(元/小时)": "450.5"})], bom=True))
    assert report.ok, report.problems
    assert (report.created, report.updated, report.unchanged) == (2, 0, 0)
    first = db.session.scalar(select(Instrument).where(Instrument.code == "LCU-90001"))
    assert first.original_value_fen == 86_500_000
    assert first.fee_per_sample_fen == 30_000
    assert first.fee_per_hour_fen is None
    assert first.county == "东昌府区"  # taken from the host when the file leaves it empty
    assert first.category.code == "0102"
    assert first.status is InstrumentStatus.NORMAL
    second = db.session.scalar(select(Instrument).where(Instrument.code == "LCU-90002"))
    assert second.fee_per_hour_fen == 45_050


def test_reimporting_the_same_file_changes_nothing(app, host):
    data = csv_bytes([row(), row(**{"仪器编码": "LCU-90002"})])
    assert run(data).created == 2
    version = catalog_version()
    audit_rows = db.session.scalar(select(func.count()).select_from(AuditEvent))
    again = run(data)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert catalog_version() == version
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == audit_rows


def test_import_updates_changed_rows_by_code_and_audits_the_change(app, host):
    run(csv_bytes([row()]))
    report = run(csv_bytes([row(**{"运行状态": "待修", "收费标准(元/样)": "320"})]))
    assert (report.created, report.updated) == (0, 1)
    instrument = db.session.scalar(select(Instrument).where(Instrument.code == "LCU-90001"))
    assert instrument.status is InstrumentStatus.AWAITING_REPAIR
    assert instrument.fee_per_sample_fen == 32_000
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "instrument.updated"))
    assert event.before == {"status": "normal", "fee_per_sample_fen": 30_000}
    assert event.after == {"status": "awaiting_repair", "fee_per_sample_fen": 32_000}


def test_every_bad_row_is_reported_with_row_column_and_reason_and_nothing_is_written(app, host):
    rows = [
        row(),  # row 2: fine
        row(**{"仪器编码": "LCU-2", "原值(万元)": "12.345"}),  # row 3
        row(**{"仪器编码": "LCU-3", "仪器分类代码": "0177"}),  # row 4
        row(**{"仪器编码": "LCU-4", "依托单位": "不存在的大学"}),  # row 5
        row(**{"仪器编码": "LCU-5", "启用日期": "2019/05/20"}),  # row 6
        row(**{"仪器编码": "LCU-6", "运行状态": "坏了"}),  # row 7
        row(**{"仪器编码": "LCU-90001"}),  # row 8: duplicate of row 2
        row(**{"仪器编码": "LCU-8", "仪器名称": ""}),  # row 9
        row(**{"仪器编码": "LCU-9", "收费标准(元/小时)": "-5"}),  # row 10
        row(**{"仪器编码": "LCU 10"}),  # row 11
        row(**{"仪器编码": "LCU-11", "所在区县": "海淀区"}),  # row 12
    ]
    report = run(csv_bytes(rows))
    found = {(p.row, p.column) for p in report.problems}
    assert found == {
        (3, "原值(万元)"),
        (4, "仪器分类代码"),
        (5, "依托单位"),
        (6, "启用日期"),
        (7, "运行状态"),
        (8, "仪器编码"),
        (9, "仪器名称"),
        (10, "收费标准(元/小时)"),
        (11, "仪器编码"),
        (12, "所在区县"),
    }
    messages = {(p.row, p.column): p.message for p in report.problems}
    assert "0177" in messages[(4, "仪器分类代码")]
    assert "2" in messages[(8, "仪器编码")]  # names the row it repeats
    assert count() == 0


def test_a_missing_required_column_is_reported_and_nothing_is_written(app, host):
    headers = [h for h in HEADERS if h != "原值(万元)"]
    report = run(csv_bytes([row()], headers=headers))
    assert [(p.row, p.column) for p in report.problems] == [(1, "原值(万元)")]
    assert count() == 0


def test_dry_run_reports_but_writes_nothing(app, host):
    report = run(csv_bytes([row()]), dry_run=True)
    assert report.ok and report.created == 1
    assert count() == 0


def test_headers_in_any_order_with_unknown_columns_and_full_width_brackets(app, host):
    values = row()
    headers = ["备注", *reversed(HEADERS)]
    data = csv_bytes([{**values, "备注": "ignored"}], headers=headers).replace(
        "原值(万元)".encode(), "原值（万元）*".encode()
    )
    report = run(data)
    assert report.ok, report.problems
    assert count() == 1


def test_xlsx_import_with_numeric_and_date_cells(app, host):
    from datetime import datetime

    values = row()
    values["原值(万元)"] = 86.5
    values["收费标准(元/样)"] = 300
    values["启用日期"] = datetime(2019, 5, 20)
    data = xlsx_bytes([HEADERS, [values.get(h) for h in HEADERS]])
    report = run(data, "catalog.xlsx")
    assert report.ok, report.problems
    instrument = db.session.scalar(select(Instrument))
    assert instrument.original_value_fen == 86_500_000
    assert instrument.in_service_on.isoformat() == "2019-05-20"


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\xff\xfe\x00bad", "catalog.csv", "UTF-8"),
        (b"MZ\x90\x00 not a workbook", "catalog.xlsx", "XLSX"),
        (b"anything", "catalog.txt", ".csv"),
        (b"", "catalog.csv", "文件为空"),
    ],
)
def test_unreadable_files_get_a_clear_message(app, host, data, name, message):
    report = run(data, name)
    assert not report.ok
    assert message in str(report.problems[0]) or message in report.problems[0].message
    assert count() == 0


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_then_import_is_a_round_trip(app, host, tmp_path: Path, suffix):
    tricky = row(
        **{
            "仪器编码": "LCU-90003",
            "规格型号": '=HYPERLINK("x")',
            "主要功能": "+1 检测\n第二行",
            "联系人": "@王",
        }
    )
    assert run(csv_bytes([row(), tricky])).ok
    assert_export_reimports_unchanged(tmp_path, suffix, 2)


def test_exports_contain_no_formulas(app, host, tmp_path: Path):
    assert run(csv_bytes([row(**{"规格型号": "=1+2", "联系人": "-cmd", "主要功能": "@SUM(A1)"})])).ok
    xlsx = tmp_path / "out.xlsx"
    export_catalog(xlsx)
    sheet = load_workbook(xlsx).active
    cells = [c for r in sheet.iter_rows() for c in r]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    assert any(c.value == "'=1+2" for c in cells)
    csv_path = tmp_path / "out.csv"
    export_catalog(csv_path)
    text = csv_path.read_text(encoding="utf-8-sig")
    assert "'=1+2" in text and "'-cmd" in text and "'@SUM(A1)" in text
    assert csv_path.read_bytes().startswith(b"\xef\xbb\xbf")


def test_cli_import_reports_problems_and_exits_non_zero(app, host, tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(csv_bytes([row(**{"原值(万元)": "abc"})]))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["catalog", "import", str(bad)])
    assert result.exit_code != 0
    assert "原值(万元)" in result.output and "2" in result.output
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes([row()]))
    dry = runner.invoke(args=["catalog", "import", "--dry-run", str(good)])
    assert dry.exit_code == 0 and "would have created 1" in dry.output
    assert count() == 0
    real = runner.invoke(args=["catalog", "import", str(good)])
    assert real.exit_code == 0 and "created 1" in real.output
    assert count() == 1
