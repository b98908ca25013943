"""What every spreadsheet the portal hands out shares: formula-safe cells, codes kept as text,
Excel-friendly CSV, downloads."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

from flask import Response, send_file, stream_with_context

from portal.core import clock

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The XLSX number format "Text": what is typed into the cell later stays text too.
TEXT_FORMAT = "@"


class Code(str):
    """A code made of digits and letters that must stay text: an account number, a credit code.

    Spreadsheets read a long run of digits as a number (6.22E+18, the last digits and any leading
    zero lost) and "1E5" as scientific notation; a Code is written so that Excel and LibreOffice
    keep every character.
    """


def neutralise(value: Any) -> Any:
    """Make text safe for spreadsheets: a cell starting with = + - @ tab or CR is shown, never run."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_cell(value: Any) -> Any:
    """A cell as CSV writes it: formula-safe; a Code followed by a tab.

    A CSV cell has no type. Excel and LibreOffice read a field that ends in a tab as text (it can
    no longer be a number), and a trailing tab, unlike a leading one, leaves the cell starting
    with its first character, so the formula guard above is untouched.
    """
    if isinstance(value, Code):
        return f"{neutralise(str(value))}\t"
    return neutralise(value)


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """Rows as CSV text with a BOM, so that Excel opens the UTF-8 (and its Chinese) correctly."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    csv.writer(buffer).writerows([csv_cell(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def csv_chunks(rows: Iterable[Iterable[Any]], rows_per_chunk: int = 500) -> Iterator[str]:
    """The CSV of csv_text, a few hundred rows at a time: a download as long as a year of services
    never sits in memory whole."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    for number, row in enumerate(rows, start=1):
        writer.writerow([csv_cell(cell) for cell in row])
        if number % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


class XlsxSheet:
    """A sheet that is written row after row, never held: formula-safe text, a Code as a text cell
    in the Text format, numbers as numbers (in `number_formats`' format by column), dates as dates."""

    def __init__(self, book: XlsxBook, title: str) -> None:
        self.book, self.sheet, self.row = book, book.workbook.add_worksheet(title[:31]), 0

    def append(self, values: Iterable[Any], number_formats: dict[int, str] | None = None) -> None:
        formats = number_formats or {}
        for column, value in enumerate(values):
            self.book.write(self.sheet, self.row, column, value, formats.get(column))
        self.row += 1


class XlsxBook:
    """An XLSX workbook written by XlsxWriter in its constant-memory mode: each row goes to disk as it
    is written, so a million rows take no more memory than one, in less time than openpyxl's
    write-only sheet (bench/RESULTS.md). Strings are never read as formulas, numbers or links: text
    stays text."""

    def __init__(self, target: str | os.PathLike | IO[bytes]) -> None:
        # Imported at first use: only the spreadsheet exports need it, not every web and worker process.
        import xlsxwriter

        options = {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
        }
        self.workbook = xlsxwriter.Workbook(
            str(target) if isinstance(target, os.PathLike) else target, options
        )
        self.formats: dict[str, Any] = {}

    def sheet(self, title: str) -> XlsxSheet:
        return XlsxSheet(self, title)

    def _format(self, number_format: str | None) -> Any:
        if number_format is None:
            return None
        if number_format not in self.formats:
            self.formats[number_format] = self.workbook.add_format({"num_format": number_format})
        return self.formats[number_format]

    def write(self, sheet: Any, row: int, column: int, value: Any, number_format: str | None) -> None:
        if value is None:
            return
        if isinstance(value, Code):
            sheet.write_string(row, column, neutralise(str(value)), self._format(TEXT_FORMAT))
        elif isinstance(value, str):
            sheet.write_string(row, column, neutralise(value), self._format(number_format))
        elif isinstance(value, bool):
            sheet.write_boolean(row, column, value)
        elif isinstance(value, int | float | Decimal):
            sheet.write_number(row, column, float(value), self._format(number_format))
        elif isinstance(value, datetime):
            moment = clock.to_local(value).replace(tzinfo=None) if value.tzinfo else value
            sheet.write_datetime(row, column, moment, self._format(number_format or "yyyy-mm-dd hh:mm"))
        elif isinstance(value, date):
            sheet.write_datetime(row, column, value, self._format(number_format or "yyyy-mm-dd"))
        else:
            sheet.write_string(row, column, neutralise(str(value)), self._format(number_format))

    def close(self) -> None:
        self.workbook.close()


def xlsx_bytes(
    title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
) -> bytes:
    """A one-sheet workbook; `number_formats` maps a column index to the format of its numbers."""
    handle = xlsx_file(title, rows, number_formats)
    with handle:
        return handle.read()


def xlsx_file(
    title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
) -> IO[bytes]:
    """The workbook of xlsx_bytes in a temporary file (rewound, deleted when closed)."""
    # Returned open: the response closes it once sent, and closing deletes it.
    handle = tempfile.TemporaryFile()  # noqa: SIM115
    book = XlsxBook(handle)
    sheet = book.sheet(title)
    for row in rows:
        sheet.append(row, number_formats)
    book.close()
    handle.seek(0)
    return handle


def streamed_csv(rows: Iterable[Iterable[Any]], filename: str) -> Response:
    """A CSV download written while it is sent (the rows are read as the response goes out)."""
    response = Response(stream_with_context(csv_chunks(rows)), mimetype="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    return response


def streamed_xlsx(title: str, rows: Iterable[Iterable[Any]], filename: str) -> Response:
    """An XLSX download sent from its temporary file in blocks."""
    return send_file(
        xlsx_file(title, rows), mimetype=XLSX_MIMETYPE, as_attachment=True, download_name=filename
    )


def attachment(body: str | bytes, mimetype: str, filename: str) -> Response:
    """A download; `filename` must be ASCII (a Chinese name would need RFC 5987 quoting)."""
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    return response
