"""Catalogue files (CSV or XLSX with the network's Chinese headers): import with a precise report.

A file is checked completely before anything is written. If any row is wrong, the report lists every
problem with its row number, column and reason, and the database is left exactly as it was.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import Institution
from portal.catalog import price_import
from portal.catalog.columns import (
    COLUMN_OF as COLUMN_OF,
)
from portal.catalog.columns import (
    COLUMNS,
    HEADERS,
    NATIONAL_ATTRS,
    PHONE_PATTERN,
    PLAIN_ATTRS,
    YES_NO_ATTRS,
    Column,
    RowError,
    parse_cell,
)
from portal.catalog.models import Category, Instrument, InstrumentStatus
from portal.core import audit
from portal.core.exports import FORMULA_PREFIXES
from portal.extensions import db

# Re-exported: the catalogue's other modules have always asked the importer for the columns.
__all__ = ["COLUMN_OF", "HEADERS", "PHONE_PATTERN", "Column", "RowError", "parse_cell"]

MAX_ROWS = 200_000  # unless IMPORT_MAX_ROWS says otherwise
# A long import reports how far it got every this many rows (see `import_catalog`'s `progress`).
PROGRESS_EVERY = 500

# progress(phase, rows): "reading" while the rows are checked, "writing" while they are applied.
Progress = Callable[[str, int], None]


class LimitReached(RowError):
    """A file beyond a configured limit; `setting` names it (IMPORT_MAX_UNPACKED_BYTES, IMPORT_MAX_ROWS…)."""

    code = "import_too_large"

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass
class Problem:
    row: int
    column: str
    message: str
    code: str | None = None  # "import_too_large": a limit stopped the reading

    def __str__(self) -> str:
        where = _("row %(row)d", row=self.row) if self.row else _("file")
        if self.column:
            where += _(", column “%(column)s”", column=self.column)
        return f"{where}: {self.message}"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    dry_run: bool = False
    rows: int = 0  # data rows that are not empty
    # The catalogue changed while the file was applied (a concurrent edit): nothing was written, and
    # the same file can simply be applied again.
    conflict: bool = False
    # The setting whose limit stopped the reading (IMPORT_MAX_ROWS…), if one did.
    limit: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _normal_header(text: str) -> str:
    # Files come from Excel and WPS: full-width brackets and stray spaces or asterisks are common.
    return (
        str(text or "").strip().lstrip("*").rstrip("*").replace("（", "(").replace("）", ")").replace(" ", "")
    )


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        value = Decimal(repr(value))
        # A whole number prints without ".0" (a huge one, 1e308, as it is: quantize cannot hold it).
        return str(int(value)) if value == value.to_integral_value() and abs(value) < 10**15 else str(value)
    text = str(value).strip()
    # Exports neutralise formula-like text with a leading apostrophe; take it off again on the way in.
    if text.startswith("'") and text[1:2] in FORMULA_PREFIXES:
        text = text[1:]
    return text


def _read_limited(stream: IO[bytes]) -> bytes:
    limit = current_app.config["IMPORT_MAX_BYTES"]
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise LimitReached(
            _("The file is larger than %(mb)d MB.", mb=limit // (1024 * 1024)), "IMPORT_MAX_BYTES"
        )
    return data


def check_workbook_size(archive: zipfile.ZipFile) -> None:
    """Refuse (LimitReached) a workbook of too many parts or that unpacks to too much, before it is parsed.

    A zip bomb of 0.4 MB unpacks to 400 MB, and openpyxl keeps a sheet's shared strings in memory. The
    sizes the archive declares are summed first (cheap); then every part is unpacked as a stream, in
    constant memory, and the bytes that really come out are counted, because a declared size can lie.
    """
    config = current_app.config
    members = archive.infolist()
    if len(members) > config["IMPORT_MAX_ZIP_MEMBERS"]:
        raise LimitReached(
            _("The workbook has too many parts (%(n)d).", n=len(members)), "IMPORT_MAX_ZIP_MEMBERS"
        )
    limit = config["IMPORT_MAX_UNPACKED_BYTES"]

    def too_large(unpacked: int) -> LimitReached:
        message = _(
            "The workbook unpacks to %(mb)d MB, more than the %(limit)d MB allowed.",
            mb=unpacked // (1024 * 1024),
            limit=limit // (1024 * 1024),
        )
        return LimitReached(message, "IMPORT_MAX_UNPACKED_BYTES")

    declared = sum(member.file_size for member in members)
    if declared > limit:
        raise too_large(declared)
    unpacked = 0
    for member in members:
        with archive.open(member) as part:
            while chunk := part.read(256 * 1024):
                unpacked += len(chunk)
                if unpacked > limit:
                    raise too_large(unpacked)


def read_table(stream: IO[bytes], filename: str) -> Iterator[list[Any]]:
    """The rows of a CSV or XLSX file as lists of cell values (header row first), within the size limits."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".xlsx":
        from openpyxl import load_workbook  # at first use: ~0.1 s and ~8 MB (as in portal.core.exports)

        data = _read_limited(stream)
        if not data.startswith(b"PK"):
            raise RowError(_("The file is not an XLSX workbook."))
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                check_workbook_size(archive)
        except LimitReached:
            raise
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            NotImplementedError,
            RuntimeError,
            ValueError,
            EOFError,
            OSError,
        ):
            raise RowError(_("The XLSX workbook cannot be read.")) from None
        try:
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:
            raise RowError(_("The XLSX workbook cannot be read.")) from None
        try:
            sheet = workbook.worksheets[0]
            for row in sheet.iter_rows(values_only=True):
                yield list(row)
        except Exception:
            # A damaged sheet (broken XML, an entity bomb defusedxml refuses) is the file's problem.
            raise RowError(_("The XLSX workbook cannot be read.")) from None
        finally:
            workbook.close()
    elif suffix == ".csv":
        try:
            text = _read_limited(stream).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RowError(_("The CSV file is not UTF-8 text; save it as “CSV UTF-8”.")) from None
        yield from csv.reader(io.StringIO(text, newline=""))
    else:
        raise RowError(_("Only .csv and .xlsx files can be imported."))


@dataclass
class Lookups:
    """What cells are looked up in: category codes, host institutions by name, the network's counties."""

    categories: dict[str, Category]
    institutions: dict[str, Institution]
    counties: tuple[str, ...]

    @classmethod
    def load(cls) -> Lookups:
        return cls(
            categories={c.code: c for c in db.session.scalars(select(Category))},
            institutions={i.name: i for i in db.session.scalars(select(Institution))},
            counties=tuple(current_app.config["COUNTIES"]),
        )

    def category(self, code: str) -> Category:
        category = self.categories.get(code)
        if category is None:
            raise RowError(_("Unknown category code “%(code)s”.", code=code))
        return category

    def county(self, name: str) -> str:
        if name not in self.counties:
            raise RowError(_("Unknown county “%(name)s”.", name=name))
        return name


def _parse_row(
    cells: dict[str, str],
    row: int,
    lookups: Lookups,
    problems: list[Problem],
    absent: frozenset[str] = frozenset(),
) -> dict | None:
    values: dict[str, Any] = {}
    before = len(problems)
    for column in COLUMNS:
        try:
            values[column.attr] = parse_cell(column, cells.get(column.header, ""))
        except RowError as error:
            problems.append(Problem(row, column.header, str(error)))
    if len(problems) > before:
        return None
    try:
        category = lookups.category(values["category_code"])
    except RowError as error:
        category = None
        problems.append(Problem(row, "仪器分类代码", str(error)))
    institution = lookups.institutions.get(values["institution_name"])
    if institution is None:
        problems.append(
            Problem(
                row,
                "依托单位",
                _(
                    "Unknown host institution “%(name)s”; an administrator must add it first.",
                    name=values["institution_name"],
                ),
            )
        )
    county = values["county"] or (institution.county if institution else None)
    if county:
        try:
            lookups.county(county)
        except RowError as error:
            problems.append(Problem(row, "所在区县", str(error)))
    if len(problems) > before or category is None or institution is None:  # (each None is a problem)
        return None
    out = {attr: values[attr] for attr in PLAIN_ATTRS if attr not in absent}
    for attr in YES_NO_ATTRS - absent:
        out[attr] = bool(out[attr])  # an empty cell is 否
    if values["price_table"]:
        # The table's enterprise prices are the two fee columns (what the list filters and sorts on).
        out["fee_per_hour_fen"], out["fee_per_sample_fen"] = price_import.enterprise_fees(
            values["price_table"]
        )
    out.update(
        price_table=values["price_table"],
        category_id=category.id,
        institution_id=institution.id,
        county=county,
        status=values["status"] or InstrumentStatus.NORMAL,
    )
    return out


def _records(
    rows: Iterator[list[Any]], report: ImportReport, lookups: Lookups, progress: Progress | None = None
) -> Iterator[tuple[int, dict]]:
    problems = report.problems
    max_rows = current_app.config.get("IMPORT_MAX_ROWS", MAX_ROWS)
    header_row = next(rows, None)
    if header_row is None:
        problems.append(Problem(0, "", _("The file is empty.")))
        return
    headers = [_normal_header(h) for h in header_row]
    missing = [c.header for c in COLUMNS if c.required and c.header not in headers]
    for header in missing:
        problems.append(Problem(1, header, _("This required column is missing.")))
    if missing:
        return
    positions = {h: i for i, h in reversed(list(enumerate(headers))) if h in HEADERS}
    absent = frozenset(c.attr for c in COLUMNS if c.attr in NATIONAL_ATTRS and c.header not in positions)
    seen: dict[str, int] = {}
    for row_number, row in enumerate(rows, start=2):
        if row_number > max_rows + 1:
            raise LimitReached(_("At most %(n)d rows per file.", n=max_rows), "IMPORT_MAX_ROWS")
        if progress and (row_number - 1) % PROGRESS_EVERY == 0:
            progress("reading", row_number - 1)
        cells = {h: _cell_text(row[i]) if i < len(row) else "" for h, i in positions.items()}
        if not any(cells.values()):
            continue
        report.rows += 1
        record = _parse_row(cells, row_number, lookups, problems, absent)
        if record is None:
            continue
        if record["code"] in seen:
            problems.append(
                Problem(
                    row_number,
                    "仪器编码",
                    _(
                        "The code %(code)s already appears in row %(row)d.",
                        code=record["code"],
                        row=seen[record["code"]],
                    ),
                )
            )
            continue
        seen[record["code"]] = row_number
        yield row_number, record


def _comparable(value: Any) -> Any:
    return value.value if isinstance(value, InstrumentStatus) else value


def import_catalog(
    stream: IO[bytes],
    filename: str,
    *,
    dry_run: bool = False,
    actor_id: int | None = None,
    progress: Progress | None = None,
    before_commit: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Check a whole catalogue file and, if every row is good and this is not a dry run, upsert it by code.

    `progress` hears how many rows are done now and then; `before_commit` may add its own rows to the
    import's transaction (a history row), so that they are written together with the catalogue or not at all.
    """
    report = ImportReport(dry_run=dry_run)
    records = _checked_records(stream, filename, report, progress)
    if records is None or report.problems:
        return report
    existing = _existing_instruments([record["code"] for _row, record in records])
    reason = f"import {Path(filename).name}"
    tables: dict[str, list[dict[str, Any]] | None] = {}
    for done, (_row, record) in enumerate(records, start=1):
        if progress and not dry_run and done % PROGRESS_EVERY == 0:
            progress("writing", done)
        instrument = existing.get(record["code"])
        tables[record["code"]] = table = record.pop("price_table")
        if instrument is None:
            _create(record, report, dry_run, actor_id)
        else:
            _update(instrument, record, table, report, dry_run, actor_id, reason)
    if dry_run:
        db.session.rollback()
        return report
    price_import.write_tables(tables)
    _commit(report, filename, actor_id, before_commit)
    return report


def _checked_records(
    stream: IO[bytes], filename: str, report: ImportReport, progress: Progress | None
) -> list[tuple[int, dict[str, Any]]] | None:
    """Every row of the file checked; None when the file itself cannot be read (the problem is reported)."""
    lookups = Lookups.load()
    try:
        return list(_records(read_table(stream, filename), report, lookups, progress))
    except LimitReached as error:
        report.problems.append(Problem(0, "", str(error), code=error.code))
        report.limit = error.setting
    except RowError as error:
        report.problems.append(Problem(0, "", str(error)))
    except csv.Error as error:
        report.problems.append(
            Problem(0, "", _("The CSV file cannot be read: %(reason)s", reason=str(error)))
        )
    return None


def _existing_instruments(codes: list[str]) -> dict[str, Instrument]:
    """The instruments already in the catalogue under these codes, by code (asked for in chunks)."""
    existing: dict[str, Instrument] = {}
    for start in range(0, len(codes), 500):
        chunk = codes[start : start + 500]
        existing.update(
            (i.code, i) for i in db.session.scalars(select(Instrument).where(Instrument.code.in_(chunk)))
        )
    return existing


def _create(record: dict[str, Any], report: ImportReport, dry_run: bool, actor_id: int | None) -> None:
    db.session.add(Instrument(**record))
    report.created += 1
    if not dry_run:
        audit.record(
            "instrument.imported",
            "instrument",
            record["code"],
            after=_jsonable(record),
            actor_id=actor_id,
        )


def _update(
    instrument: Instrument,
    record: dict[str, Any],
    table: list[dict[str, Any]] | None,
    report: ImportReport,
    dry_run: bool,
    actor_id: int | None,
    reason: str,
) -> None:
    changes = {
        attr: (_comparable(getattr(instrument, attr)), _comparable(value))
        for attr, value in record.items()
        if _comparable(getattr(instrument, attr)) != _comparable(value)
    }
    table_changed = price_import.table_changes(instrument, record, table)
    if table_changed:
        changes["price_table"] = table_changed
    if not changes:
        report.unchanged += 1
        return
    for attr in changes:
        if attr != "price_table":
            setattr(instrument, attr, record[attr])
    report.updated += 1
    if not dry_run:
        audit.record(
            "instrument.updated",
            "instrument",
            instrument.code,
            before=_jsonable({a: old for a, (old, _new) in changes.items()}),
            after=_jsonable({a: new for a, (_old, new) in changes.items()}),
            reason=reason,
            actor_id=actor_id,
        )


def _commit(
    report: ImportReport,
    filename: str,
    actor_id: int | None,
    before_commit: Callable[[ImportReport], None] | None,
) -> None:
    """Write the import (with its summary audit row and the caller's rows); a conflict undoes it all."""
    if report.created or report.updated:
        audit.record(
            "catalog.imported",
            "catalog",
            None,
            after={
                "file": Path(filename).name,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
            },
            actor_id=actor_id,
        )
    if before_commit is not None:
        before_commit(report)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        report.created = report.updated = report.unchanged = 0
        report.conflict = True
        report.problems.append(
            Problem(0, "", _("The catalogue changed while this file was imported; run the import again."))
        )


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, date) else _comparable(v)) for k, v in values.items()}
