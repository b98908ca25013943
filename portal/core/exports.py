"""What every spreadsheet the portal hands out shares: formula-safe cells, Excel-friendly CSV, downloads."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from flask import Response

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def neutralise(value: Any) -> Any:
    """Make text safe for spreadsheets: a cell starting with = + - @ tab or CR is shown, never run."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    """Rows as CSV text with a BOM, so that Excel opens the UTF-8 (and its Chinese) correctly."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def attachment(body: str | bytes, mimetype: str, filename: str) -> Response:
    """A download; `filename` must be ASCII (a Chinese name would need RFC 5987 quoting)."""
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f"attachment; filename={filename}"
    return response
