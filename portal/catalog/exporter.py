"""Catalogue files written from the database, in the columns the importer reads (importer.HEADERS)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import Institution
from portal.catalog import price_import
from portal.catalog.importer import HEADERS, RowError
from portal.catalog.models import STATUS_FILE_NAMES, Category, Instrument
from portal.catalog.price_text import format_price_table
from portal.core.exports import Counted, XlsxBook, neutralise
from portal.core.money import fen_to_wan, fen_to_yuan
from portal.extensions import db


def export_rows() -> Iterable[list[Any]]:
    """The catalogue as file rows (header first), in code order, streamed from the database."""
    yield HEADERS
    institutions = {i.id: i.name for i in db.session.scalars(select(Institution))}
    categories = {c.id: c.code for c in db.session.scalars(select(Category))}
    tables = price_import.all_price_tables()
    stmt = select(Instrument).order_by(Instrument.code).execution_options(yield_per=1000)
    for instrument in db.session.scalars(stmt):
        yield [
            instrument.code,
            instrument.name,
            instrument.name_en,
            categories[instrument.category_id],
            instrument.model,
            instrument.manufacturer,
            instrument.country_of_origin,
            fen_to_wan(instrument.original_value_fen),
            instrument.in_service_on.isoformat() if instrument.in_service_on else None,
            institutions[instrument.institution_id],
            instrument.county,
            instrument.address,
            STATUS_FILE_NAMES[instrument.status],
            None if instrument.fee_per_hour_fen is None else fen_to_yuan(instrument.fee_per_hour_fen),
            None if instrument.fee_per_sample_fen is None else fen_to_yuan(instrument.fee_per_sample_fen),
            format_price_table(tables.get(instrument.id, [])) or None,
            instrument.specs,
            instrument.functions,
            instrument.service_content,
            instrument.operator_name,
            instrument.operator_phone,
            instrument.acquisition,
            instrument.funding_source,
            instrument.subject_area,
            instrument.department,
            instrument.user_requirements,
            "是" if instrument.specialised else "否",
            "是" if instrument.customs_supervised else "否",
            instrument.customs_declaration_number,
            instrument.customs_import_date.isoformat() if instrument.customs_import_date else None,
            instrument.customs_item_number,
        ]


def export_catalog(path: Path) -> int:
    """Write the catalogue to a .csv (UTF-8 with BOM, for Excel) or .xlsx file; returns the row count."""
    suffix = path.suffix.lower()
    count = -1
    if suffix == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            for row in export_rows():
                writer.writerow(["" if v is None else neutralise(str(v)) for v in row])
                count += 1
    elif suffix == ".xlsx":
        rows = Counted(export_rows())
        book = XlsxBook(path)  # every text cell formula-safe (neutralised) as it is written
        book.sheet("仪器", rows)
        book.close()
        count = rows.count - 1
    else:
        raise RowError(_("Only .csv and .xlsx files can be written."))
    return count
