"""The shared XLSX writer (portal.core.exports.XlsxBook): what every spreadsheet the portal writes keeps,
read back with openpyxl."""

from __future__ import annotations

import io
import os
from datetime import UTC, date, datetime
from decimal import Decimal

from openpyxl import load_workbook

from portal.core.exports import FORMULA_PREFIXES, Code, XlsxBook, xlsx_bytes, xlsx_file


class Lazy:
    """Not a str, but shown as one (a lazily translated label is such a thing)."""

    def __str__(self) -> str:
        return "=SUM(A1:A2)"


def cells(data: bytes, sheet: int = 0) -> list[list[tuple]]:
    rows = load_workbook(io.BytesIO(data)).worksheets[sheet].iter_rows()
    return [[(c.value, c.data_type, c.number_format) for c in row] for row in rows]


def test_text_stays_text_and_never_starts_like_a_formula():
    data = xlsx_bytes(
        "s", [["=head", "b", "c", "d"], ["=1+1", "+1", "-1", "@x"], ["1E5", "0012", "http://x.y", Lazy()]]
    )
    rows = cells(data)
    assert [value for value, _type, _format in rows[0]] == ["'=head", "b", "c", "d"]
    assert [value for value, _type, _format in rows[1]] == ["'=1+1", "'+1", "'-1", "'@x"]
    assert [value for value, _type, _format in rows[2]] == ["1E5", "0012", "http://x.y", "'=SUM(A1:A2)"]
    for row in rows:
        for value, data_type, _format in row:
            assert data_type == "s" and not value.startswith(FORMULA_PREFIXES)


def test_numbers_dates_and_codes_keep_their_kind_and_format():
    moment = datetime(2026, 1, 2, 0, 30, tzinfo=UTC)
    data = xlsx_bytes(
        "s",
        [
            ["code", "amount", "day", "moment", "count", "flag", "empty"],
            [Code("0012"), Decimal("1234.50"), date(2026, 1, 2), moment, 7, True, None],
            ["Total", 3.25, None, None, None, None, ""],
        ],
        {1: "#,##0.00"},
    )
    _header, first, total = cells(data)
    assert first[0] == ("0012", "s", "@")  # a Code: text, in the Text format
    assert first[1] == (1234.5, "n", "#,##0.00")
    assert first[2] == (datetime(2026, 1, 2), "d", "yyyy-mm-dd")
    assert first[3] == (datetime(2026, 1, 2, 8, 30), "d", "yyyy-mm-dd hh:mm")  # Beijing time
    assert first[4][:2] == (7, "n") and first[5][:2] == (True, "b")
    assert first[6][0] is None
    assert total[:2] == [("Total", "s", "@"), (3.25, "n", "#,##0.00")]
    assert [value for value, _type, _format in total[2:]] == [None] * 5


def test_a_repeated_label_a_longer_row_and_a_sheet_without_rows():
    book_data = io.BytesIO()
    book = XlsxBook(book_data)
    book.sheet("repeated", [["名称", "名称", "名称"], ["a", "b", "c", "beyond the header", "and further"]])
    book.sheet("header only", [["名称", "金额"]])
    book.sheet("nothing", [])
    book.close()
    data = book_data.getvalue()
    header, row = ([c[0] for c in r] for r in cells(data, 0))
    assert header[:3] == ["名称", "名称 (2)", "名称 (3)"]
    assert [(label or "").strip() for label in header[3:]] == ["", ""]  # blank above the extra cells
    assert row == ["a", "b", "c", "beyond the header", "and further"]
    assert [[c[0] for c in row] for row in cells(data, 1)] == [["名称", "金额"]]
    assert load_workbook(io.BytesIO(data)).sheetnames == ["repeated", "header only", "nothing"]


def test_the_rows_are_read_while_the_file_is_written_and_an_error_leaves_no_file(tmp_path):
    def rows():
        yield ["n"]
        yield [1]
        raise RuntimeError("the database went away")

    target = tmp_path / "broken.xlsx"
    book = XlsxBook(target)
    book.sheet("s", rows())
    try:
        book.close()
    except RuntimeError as error:
        assert str(error) == "the database went away"
    else:
        raise AssertionError("the rows' error was swallowed")
    assert not target.exists()


def test_xlsx_file_is_a_rewound_temporary_file_deleted_when_closed():
    handle = xlsx_file("s", [["n"], *([n] for n in range(1000))])
    path = handle.name
    book = load_workbook(io.BytesIO(handle.read()))
    assert book.active.max_row == 1001
    handle.close()
    assert not os.path.exists(path)
