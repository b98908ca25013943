"""The national platform's fields in catalogue files (issue 19): each column's rule names its row and
column, an export reads back as it was written, and a file without the columns keeps what is stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from portal.catalog.importer import HEADERS
from portal.catalog.services import get_instrument
from tests.test_catalog_import import assert_export_reimports_unchanged, csv_bytes, row, run

NATIONAL = {
    "仪器来源": "研制",
    "主要购置经费来源": "省级财政",
    "主要学科领域": "化学",
    "所属单位内部门": "分析测试中心",
    "用户须知": "样品须提前三天送达",
    "专用仪器": "是",
    "海关监管": "是",
    "报关单号": "422020210000654321",
    "进口日期": "2021-03-15",
    "项号": "2",
}
OLD_HEADERS = [h for h in HEADERS if h not in NATIONAL]


@pytest.fixture
def host(make_institution):
    return make_institution(name="聊城测试大学", county="东昌府区")


def national_of(code: str) -> tuple:
    i = get_instrument(code)
    return (
        i.acquisition,
        i.funding_source,
        i.subject_area,
        i.department,
        i.user_requirements,
        i.specialised,
        i.customs_supervised,
        i.customs_declaration_number,
        i.customs_import_date,
        i.customs_item_number,
    )


STORED = (
    "研制",
    "省级财政",
    "化学",
    "分析测试中心",
    "样品须提前三天送达",
    True,
    True,
    "422020210000654321",
    date(2021, 3, 15),
    "2",
)


def test_the_national_columns_import(app, host):
    assert run(csv_bytes([row(**NATIONAL)])).ok
    assert national_of("LCU-90001") == STORED


@pytest.mark.parametrize(
    ("column", "value"),
    [("仪器来源", "租赁"), ("专用仪器", "maybe"), ("进口日期", "2021-02-30"), ("所属单位内部门", "长" * 81)],
)
def test_a_bad_cell_names_its_row_and_column_and_nothing_is_written(app, host, column, value):
    report = run(csv_bytes([row(**{**NATIONAL, column: value})]))
    assert not report.ok and report.created == 0
    (problem,) = report.problems
    assert (problem.row, problem.column) == (2, column)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_then_import_is_a_round_trip(app, host, tmp_path: Path, suffix):
    assert run(csv_bytes([row(**NATIONAL), row(**{"仪器编码": "LCU-90002"})])).ok
    assert_export_reimports_unchanged(tmp_path, suffix, 2)
    assert national_of("LCU-90001") == STORED
    assert national_of("LCU-90002") == (None, None, None, None, None, False, False, None, None, None)


def test_a_file_without_the_columns_keeps_what_is_stored(app, host):
    assert run(csv_bytes([row(**NATIONAL)])).ok
    report = run(csv_bytes([row(**{"规格型号": "新型号"})], headers=OLD_HEADERS))
    assert report.ok and report.updated == 1
    assert national_of("LCU-90001") == STORED
    assert get_instrument("LCU-90001").model == "新型号"
