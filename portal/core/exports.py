"""What every spreadsheet the portal hands out shares: formula-safe cells, codes kept as text,
Excel-friendly CSV, downloads."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from flask import Response, send_file, stream_with_context

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


def xlsx_cell(sheet, value: Any, number_format: str | None = None):
    """A cell of a write-only sheet: formula-safe; a Code as a text cell in the Text format."""
    # Imported at first use, as openpyxl is everywhere here: it takes ~0.1 s and ~8 MB to load, and
    # only the spreadsheet exports and imports need it, not every web and worker process.
    from openpyxl.cell import WriteOnlyCell

    if isinstance(value, Code):
        cell = WriteOnlyCell(sheet, value=neutralise(str(value)))
        cell.number_format = TEXT_FORMAT
        return cell
    cell = WriteOnlyCell(sheet, value=neutralise(value))
    if number_format:
        cell.number_format = number_format
    return cell


def xlsx_bytes(
    title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
) -> bytes:
    """A one-sheet workbook; `number_formats` maps a column index to the format of its numbers."""
    from openpyxl import Workbook  # at first use: see xlsx_cell

    formats = number_formats or {}
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    for row in rows:
        sheet.append([xlsx_cell(sheet, value, formats.get(i)) for i, value in enumerate(row)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def xlsx_file(
    title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
) -> IO[bytes]:
    """The workbook of xlsx_bytes written to a temporary file (rewound, deleted when closed): openpyxl's
    write-only sheet keeps its rows on disk, so memory stays flat however many rows there are."""
    from openpyxl import Workbook  # at first use: see xlsx_cell

    formats = number_formats or {}
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title)
    for row in rows:
        sheet.append([xlsx_cell(sheet, value, formats.get(i)) for i, value in enumerate(row)])
    # Returned open: the response closes it once sent, and closing deletes it.
    handle = tempfile.TemporaryFile()  # noqa: SIM115
    workbook.save(handle)
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
