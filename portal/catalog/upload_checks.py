"""Checking an uploaded catalogue file by its content, before anything is stored or parsed for real.

A zip archive must be a real XLSX workbook whose parts unpack to a bounded size (a zip bomb is refused
before it is parsed: `importer.check_workbook_size`); anything else must be UTF-8 text (a CSV). The
file's name only words the message. The rows are counted by the importer's own reader. A file beyond
a limit is refused with ImportTooLarge (API code `import_too_large`).
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from flask import current_app
from flask_babel import gettext as _

from portal.catalog.importer import LimitReached, RowError, check_workbook_size, read_table
from portal.core.errors import ValidationFailed
from portal.core.exports import XLSX_MIMETYPE

FORMATS = {"csv": ("text/csv", ".csv"), "xlsx": (XLSX_MIMETYPE, ".xlsx")}
ZIP_MAGIC = b"PK\x03\x04"
# The parts every XLSX workbook has; a zip archive without them is something else renamed.
WORKBOOK_PARTS = ("[Content_Types].xml", "xl/workbook.xml")


class ImportRefused(ValidationFailed):
    """A catalogue file that cannot be imported, with the problems found: [{"row", "column", "message"}]."""

    def __init__(self, message: str, errors: list[dict[str, Any]], error_count: int | None = None) -> None:
        super().__init__(message, {"file": message})
        self.errors = errors
        self.details.update(errors=errors, error_count=len(errors) if error_count is None else error_count)


class ImportTooLarge(ImportRefused):
    """A catalogue file beyond a configured limit; details.limit names the setting."""

    code = "import_too_large"


@dataclass(frozen=True)
class CheckedFile:
    data: bytes
    fmt: str  # "csv" or "xlsx"
    rows: int | None  # data rows; None for a large workbook (the worker counts them)


def _refuse(message: str) -> ImportRefused:
    return ImportRefused(message, [{"row": None, "column": None, "message": message}])


def _too_large(error: LimitReached) -> ImportTooLarge:
    message = str(error)
    refused = ImportTooLarge(message, [{"row": None, "column": None, "message": message}])
    refused.details["limit"] = error.setting
    return refused


def _read_limited(stream: BinaryIO) -> bytes:
    limit = current_app.config["IMPORT_MAX_BYTES"]
    data = stream.read(limit + 1)
    if not data:
        raise _refuse(_("The file is empty."))
    if len(data) > limit:
        message = _("The file is larger than %(mb)d MB.", mb=limit // (1024 * 1024))
        raise _too_large(LimitReached(message, "IMPORT_MAX_BYTES"))
    return data


def _check_workbook(data: bytes) -> None:
    """A real XLSX workbook within the size limits: a zip bomb is refused before it is parsed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            names = {member.filename for member in members}
            # Only deflate and no compression, never encrypted: Excel and WPS use nothing else.
            allowed = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            if any(part not in names for part in WORKBOOK_PARTS) or any(
                member.compress_type not in allowed or member.flag_bits & 0x1 for member in members
            ):
                raise _refuse(_("The file is a zip archive but not an XLSX workbook (or it is encrypted)."))
            check_workbook_size(archive)
    except LimitReached as error:
        raise _too_large(error) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise _refuse(_("The file is not an XLSX workbook: it is damaged or not a zip archive.")) from None


def _check_text(data: bytes) -> None:
    if b"\x00" in data:
        raise _refuse(_("The file is neither an XLSX workbook nor CSV text."))
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _refuse(_("The CSV file is not UTF-8 text; save it as “CSV UTF-8”.")) from None


def _count_rows(data: bytes, fmt: str) -> int:
    """Data rows (the header not counted), read by the importer's own reader."""
    try:
        return max(0, sum(1 for _row in read_table(io.BytesIO(data), f"file.{fmt}")) - 1)
    except LimitReached as error:
        raise _too_large(error) from None
    except RowError as error:
        raise _refuse(str(error)) from None
    except csv.Error as error:
        raise _refuse(_("The CSV file cannot be read: %(reason)s", reason=str(error))) from None


def check_upload(stream: BinaryIO, filename: str | None) -> CheckedFile:
    """Read an upload and check it by its content (the name only words the message); ImportRefused if bad."""
    config = current_app.config
    data = _read_limited(stream)
    if data.startswith(ZIP_MAGIC):
        _check_workbook(data)
        fmt = "xlsx"
    elif Path(filename or "").suffix.lower() in (".xlsx", ".xls", ".xlsm"):
        raise _refuse(
            _("The file is not a real XLSX workbook. Save it from Excel or WPS as .xlsx, or as CSV UTF-8.")
        )
    else:
        _check_text(data)
        fmt = "csv"
    rows = None
    if fmt == "csv" or len(data) <= config["IMPORT_ASYNC_BYTES"]:
        rows = _count_rows(data, fmt)
        if rows > config["IMPORT_MAX_ROWS"]:
            message = _("At most %(n)d rows per file.", n=config["IMPORT_MAX_ROWS"])
            raise _too_large(LimitReached(message, "IMPORT_MAX_ROWS"))
    return CheckedFile(data, fmt, rows)
