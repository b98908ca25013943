"""What every spreadsheet the portal hands out shares: formula-safe cells, codes kept as text,
Excel-friendly CSV, downloads."""

from __future__ import annotations

import csv
import io
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any, BinaryIO

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


# A date or time cell's format when its column has none; a column whose first row holds a date
# (no time) gets DATE_FORMAT.
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
DATE_FORMAT = "yyyy-mm-dd"


_AS_THEY_ARE = frozenset({int, float, type(None)})


def xlsx_cell(value: Any) -> Any:
    """A cell as the XLSX writer gets it: text formula-safe, an aware time in Beijing time (the
    writer ignores a time zone), Decimal as float (a cell holds a double), anything else that is
    no number, date or time as its formula-safe text."""
    if isinstance(value, str):  # a Code too: it is a str
        return "'" + value if value.startswith(FORMULA_PREFIXES) else value
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return clock.to_local(value).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, date):
        return value
    return neutralise(str(value))


def _key(text: str, keys: list[str]) -> str:
    """`text` as a record key not yet in `keys` (a record is a dict): a repeated label gets " (2)",
    " (3)", …; a blank one stays blank (more spaces)."""
    if not text.strip():
        return next(" " * n for n in itertools.count() if " " * n not in keys)
    return next(k for n in itertools.count(1) if (k := text if n == 1 else f"{text} ({n})") not in keys)


def _keys(header: list[Any]) -> list[str]:
    """The header as the writer's record keys, which it writes as the first row: text, formula-safe."""
    keys: list[str] = []
    for cell in header:
        keys.append(_key("" if cell is None else str(xlsx_cell(cell)), keys))
    return keys


def _column_formats(
    make: Callable[[], Any], first: list[Any], number_formats: dict[int, str], width: int
) -> list[Any]:
    """Each column's format (`make()` makes one), fixed before the first row is written: the writer's
    formats are by column. The caller's number formats; Text for a column whose first row is a
    Code; a date column's date format."""
    formats: list[Any] = []
    for column in range(width):
        value = first[column] if column < len(first) else None
        number_format = number_formats.get(column)
        if number_format is None and isinstance(value, Code):
            number_format = TEXT_FORMAT
        elif number_format is None and isinstance(value, date) and not isinstance(value, datetime):
            number_format = DATE_FORMAT
        formats.append(None if number_format is None else make().set_num_format(number_format))
    return formats


def _records(keys: list[str], first: list[Any] | None, rows: Iterator[Iterable[Any]]) -> Iterator[dict]:
    """The rows as the writer's records: dicts in column order under the header's keys (a row longer
    than the header gets blank keys for the columns beyond it)."""
    if first is None:
        yield dict.fromkeys(keys)  # no row: the header alone (a record of empty cells)
        return
    for row in itertools.chain((first,), rows):
        # xlsx_cell, with its commonest cases inline: a million rows make twelve million cells.
        cells = [
            value
            if (kind := type(value)) in _AS_THEY_ARE
            or (kind is str and not value.startswith(FORMULA_PREFIXES))
            else xlsx_cell(value)
            for value in row
        ]
        while len(keys) < len(cells):
            keys.append(_key("", keys))
        yield dict(zip(keys, cells, strict=False))  # a shorter row: its cells, the rest empty


class Counted:
    """Rows passed on as they are read, counted: how many a writer that reads them itself wrote."""

    def __init__(self, rows: Iterable[Iterable[Any]]) -> None:
        self.rows, self.count = rows, 0

    def __iter__(self) -> Iterator[Iterable[Any]]:
        for row in self.rows:
            self.count += 1
            yield row


class XlsxBook:
    """An XLSX workbook written by rustpy-xlsxwriter (rust_xlsxwriter, in Rust, in its constant-memory
    mode): the rows of each sheet are read while the file is written, so a million rows take no more
    memory than one. A million claim rows: 14 s for the whole export, where XlsxWriter's Python took
    about 70 s for the cells alone (bench/RESULTS.md).

    Every cell is formula-safe text, a number, a date or a time: a string is always written as text
    (never read as a formula, number or link) and starts with none of FORMULA_PREFIXES. Formats are
    the writer's, by column, for every cell of it: `number_formats` maps a column to the format of
    its numbers; a column whose first row below the header holds a Code is in the Text format, one
    that holds a date (no time) in DATE_FORMAT.
    """

    def __init__(self, target: str | os.PathLike | BinaryIO) -> None:
        # A path is written in constant memory; a buffer gets the whole file at once (small files only).
        self.target = os.fspath(target) if isinstance(target, str | os.PathLike) else target
        self.sheets: list[tuple[str, Iterable[Iterable[Any]], dict[int, str]]] = []

    def sheet(
        self, title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
    ) -> None:
        """A sheet of `rows`, the header first; they are read when the book is closed."""
        self.sheets.append((title[:31], rows, number_formats or {}))

    def close(self) -> None:
        """Write the file: each sheet's rows are read now, once."""
        # Imported at first use: only the spreadsheet exports need it, not every web and worker process.
        import rustpy_xlsxwriter

        entries: list[tuple[str, Any]] = []
        formats: dict[str, Any] = {}
        for title, rows, number_formats in self.sheets:
            iterator = iter(rows)
            header = [*next(iterator, [])]
            first = next(iterator, None)
            first = None if first is None else [*first]
            if not header and first is None:
                entries.append((title, []))  # an empty sheet
                continue
            width = max(len(header), len(first or ()))
            formats[title] = _column_formats(rustpy_xlsxwriter.Format, first or [], number_formats, width)
            entries.append((title, _records(_keys(header), first, iterator)))
        rustpy_xlsxwriter.write_worksheets(
            entries, self.target, column_formats=formats, datetime_format=DATETIME_FORMAT
        )


def xlsx_bytes(
    title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
) -> bytes:
    """A one-sheet workbook (the header first); `number_formats` maps a column to its numbers' format."""
    handle = xlsx_file(title, rows, number_formats)
    with handle:
        return handle.read()


def xlsx_file(
    title: str, rows: Iterable[Iterable[Any]], number_formats: dict[int, str] | None = None
) -> IO[bytes]:
    """The workbook of xlsx_bytes in a temporary file (rewound, deleted when closed)."""
    # Returned open: the response closes it once sent, and closing deletes it. Named, so that the
    # writer gets a path and writes in constant memory.
    handle = tempfile.NamedTemporaryFile(suffix=".xlsx")  # noqa: SIM115
    book = XlsxBook(handle.name)
    book.sheet(title, rows, number_formats)
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
