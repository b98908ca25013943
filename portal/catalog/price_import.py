"""The price tables of a catalogue file (issue 17): the 收费标准明细 column read and checked, each
row's table put in place after its instrument, and every table for the export. Old files without
the column still import: their two fee columns are the enterprise price."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from portal.catalog import prices
from portal.catalog.models import Instrument
from portal.catalog.price_models import PriceRow
from portal.catalog.price_text import parse_price_table
from portal.core.errors import ValidationFailed
from portal.extensions import db


def parse_table(text: str) -> list[dict[str, Any]]:
    """The rows of a price-table cell, checked; ValueError saying what is wrong."""
    rows = parse_price_table(text)
    try:
        prices.check_rows(rows)
    except ValidationFailed as error:
        raise ValueError("; ".join(error.fields.values()) or error.message) from None
    return rows


def enterprise_fees(table: list[dict[str, Any]]) -> tuple[int | None, int | None]:
    """The fee columns a table sets: its enterprise prices per hour and per sample."""
    return prices.enterprise_fees(prices.Price.from_json(r) for r in table)


def table_for(instrument: Instrument, table: list[dict[str, Any]] | None, fees: tuple) -> list[Any] | None:
    """The price table a row gives the instrument: its own column; or, for a file without one (or an
    empty cell), the stored table with its enterprise rows set from the two fee columns `fees` when
    they differ. None: no table stored and none given, so the fee columns alone are the enterprise
    price, as before price tables."""
    if table:
        return prices.in_order(prices.Price.from_json(r) for r in table)
    stored = (
        prices.in_order(prices.as_price(r) for r in prices.price_rows(instrument)) if instrument.id else []
    )
    if not stored:
        return None
    if prices.enterprise_fees(stored) == fees:
        return stored
    return prices.in_order([p for p in stored if p.customer != "enterprise"] + prices.legacy_prices(*fees))


def table_changes(
    instrument: Instrument, record: dict[str, Any], table: list[dict[str, Any]] | None
) -> tuple | None:
    """(before, after) of an existing instrument's price table if this row changes it, else None."""
    wanted = table_for(instrument, table, (record["fee_per_hour_fen"], record["fee_per_sample_fen"]))
    if wanted is None:
        return None
    before = [p.as_json() for p in prices.in_order(prices.as_price(r) for r in prices.price_rows(instrument))]
    after = [p.as_json() for p in wanted]
    return (before, after) if before != after else None


def write_tables(tables: dict[str, list[dict[str, Any]] | None]) -> None:
    """Put each row's price table in place, once every instrument of the file is written."""
    db.session.flush()
    for code, table in tables.items():
        instrument = db.session.scalars(select(Instrument).where(Instrument.code == code)).one()
        wanted = table_for(instrument, table, (instrument.fee_per_hour_fen, instrument.fee_per_sample_fen))
        if wanted is not None:
            prices.replace_rows(instrument, wanted)


def all_price_tables() -> dict[int, list[dict[str, Any]]]:
    """Every stored price table as JSON rows, by instrument id (one query for the whole export)."""
    tables: dict[int, list[Any]] = {}
    for row in db.session.scalars(select(PriceRow).order_by(PriceRow.instrument_id, PriceRow.id)):
        tables.setdefault(row.instrument_id, []).append(prices.as_price(row))
    return {key: [p.as_json() for p in prices.in_order(rows)] for key, rows in tables.items()}
