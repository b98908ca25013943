"""Price tables: which row applies to a customer, and what a use of the instrument costs (DESIGN §11).

The rules (`customer_category`, `choose_price`, `fee_for`) are pure functions of their arguments, so
the booking freezes a `Price` when it is made and the service record's fee comes from that frozen
price, whatever the table says later. Loading and saving the table is at the end of the module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import (
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    User,
    VerificationState,
)
from portal.catalog.models import Instrument
from portal.catalog.ownership import editable_instrument
from portal.catalog.price_models import CustomerCategory, PriceMode, PriceRow, PriceUnit
from portal.core import audit
from portal.core.database import serialized_write
from portal.core.errors import ValidationFailed
from portal.extensions import db

# Where a category without a row of its own is priced: its nearest wider category.
FALLBACK: dict[CustomerCategory, tuple[CustomerCategory, ...]] = {
    CustomerCategory.INTERNAL: (
        CustomerCategory.INTERNAL,
        CustomerCategory.ACADEMIC,
        CustomerCategory.ENTERPRISE,
    ),
    CustomerCategory.ACADEMIC: (CustomerCategory.ACADEMIC, CustomerCategory.ENTERPRISE),
    CustomerCategory.SME: (CustomerCategory.SME, CustomerCategory.ENTERPRISE),
    CustomerCategory.ENTERPRISE: (CustomerCategory.ENTERPRISE,),
}
MAX_PRICE_FEN = 10**10  # 100 million yuan a unit: anything above is a typing error
MAX_UNITS = 100_000


@dataclass(frozen=True)
class Step:
    """From the `from_units`-th unit on (1-based), a unit costs `unit_price_fen`."""

    from_units: int
    unit_price_fen: int


@dataclass(frozen=True)
class Price:
    """One row of a price table, as a booking freezes it."""

    customer: str
    mode: str
    unit: str
    unit_price_fen: int
    min_units: int = 0
    steps: tuple[Step, ...] = ()
    overtime_unit_price_fen: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The row in the API's shape (API.md, `prices`)."""
        return {
            "customer": self.customer,
            "mode": self.mode,
            "unit": self.unit,
            "unit_price_fen": self.unit_price_fen,
            "min_units": self.min_units,
            "steps": [{"from_units": s.from_units, "unit_price_fen": s.unit_price_fen} for s in self.steps],
            "overtime_unit_price_fen": self.overtime_unit_price_fen,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Price:
        steps = tuple(Step(int(s["from_units"]), int(s["unit_price_fen"])) for s in data.get("steps") or ())
        overtime = data.get("overtime_unit_price_fen")
        return cls(
            customer=str(data["customer"]),
            mode=str(data["mode"]),
            unit=str(data["unit"]),
            unit_price_fen=int(data["unit_price_fen"]),
            min_units=int(data.get("min_units") or 0),
            steps=tuple(sorted(steps, key=lambda s: s.from_units)),
            overtime_unit_price_fen=None if overtime is None else int(overtime),
        )


class PriceLike(Protocol):
    customer: Any
    mode: Any
    unit: Any
    unit_price_fen: int
    min_units: int
    steps: Any
    overtime_unit_price_fen: int | None


def as_price(row: PriceLike | Price) -> Price:
    """A stored row (or a price) as a frozen Price."""
    if isinstance(row, Price):
        return row
    return Price.from_json(
        {
            "customer": row.customer,
            "mode": row.mode,
            "unit": row.unit,
            "unit_price_fen": row.unit_price_fen,
            "min_units": row.min_units,
            "steps": row.steps,
            "overtime_unit_price_fen": row.overtime_unit_price_fen,
        }
    )


# --- the rules ------------------------------------------------------------------------------------


def customer_category(*, own_institution: bool, academic: bool, verified_sme: bool) -> CustomerCategory:
    """The category a customer is priced in: the owning institution's own people first, then other
    universities and institutes, then verified tech SMEs; everyone else is an enterprise."""
    if own_institution:
        return CustomerCategory.INTERNAL
    if academic:
        return CustomerCategory.ACADEMIC
    if verified_sme:
        return CustomerCategory.SME
    return CustomerCategory.ENTERPRISE


def legacy_prices(fee_per_hour_fen: int | None, fee_per_sample_fen: int | None) -> list[Price]:
    """The enterprise rows an instrument without a table has: its two published fees."""
    rows = []
    if fee_per_hour_fen is not None:
        rows += [Price("enterprise", mode, "hour", fee_per_hour_fen) for mode in ("self", "staff")]
    if fee_per_sample_fen is not None:
        rows.append(Price("enterprise", "sample", "sample", fee_per_sample_fen))
    return rows


def choose_price(rows: Iterable[PriceLike | Price], customer: str, mode: str) -> Price | None:
    """The row that prices `customer` in `mode`: its own, else its fallback's (FALLBACK); None
    when the table has no price for the mode at all."""
    by_key = {(str(r.customer), str(r.mode)): r for r in rows}
    for category in FALLBACK[CustomerCategory(customer)]:
        row = by_key.get((category.value, mode))
        if row is not None:
            return as_price(row)
    return None


def _graduated(price: Price, units: Decimal) -> Decimal:
    """Units priced through the quantity steps: each unit costs the price of the step it falls in."""
    bounds = [(Decimal(0), Decimal(price.unit_price_fen))]
    bounds += [
        (Decimal(s.from_units - 1), Decimal(s.unit_price_fen)) for s in price.steps if s.from_units > 1
    ]
    bounds.sort(key=lambda b: b[0])
    total = Decimal(0)
    for i, (start, unit_price) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else None
        upper = units if end is None else min(units, end)
        if upper > start:
            total += (upper - start) * unit_price
    return total


def fee_for(price: Price, used: Decimal | int, booked: Decimal | int | None = None) -> int:
    """The fee (fen, rounded half up) for `used` units at a frozen price.

    Below the minimum, the minimum is billed. Hours beyond `booked` cost the overtime price when
    the row has one; the other units go through the quantity steps.
    """
    used = Decimal(used)
    billable = max(used, Decimal(price.min_units))
    overtime = Decimal(0)
    if price.overtime_unit_price_fen is not None and booked is not None and used > Decimal(booked):
        overtime = used - Decimal(booked)
    total = _graduated(price, billable - overtime) + overtime * Decimal(price.overtime_unit_price_fen or 0)
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --- the table of an instrument -------------------------------------------------------------------


def price_rows(instrument: Instrument) -> list[PriceRow]:
    return list(
        db.session.scalars(
            select(PriceRow).where(PriceRow.instrument_id == instrument.id).order_by(PriceRow.id)
        )
    )


CUSTOMER_ORDER = [c.value for c in CustomerCategory]
MODE_ORDER = [m.value for m in PriceMode]


def in_order(table: Iterable[Price]) -> list[Price]:
    """A table ordered by customer category, then mode (how it is shown, stored and compared)."""
    return sorted(table, key=lambda p: (CUSTOMER_ORDER.index(p.customer), MODE_ORDER.index(p.mode)))


def price_table(instrument: Instrument) -> list[Price]:
    """The instrument's table (its two published fees as enterprise rows when it has none), ordered
    by customer category and mode."""
    rows = [as_price(r) for r in price_rows(instrument)]
    return in_order(rows or legacy_prices(instrument.fee_per_hour_fen, instrument.fee_per_sample_fen))


def category_of(enterprise: Enterprise, instrument: Instrument) -> CustomerCategory:
    """The category an enterprise is priced in on this instrument. A customer is the owning
    institution's own, or academic, when its credit code is that of the host or of another
    university or institute in the network; a tech SME only once verified."""
    host = db.session.scalar(select(Institution).where(Institution.uscc == enterprise.uscc))
    return customer_category(
        own_institution=host is not None and host.id == instrument.institution_id,
        academic=host is not None and host.kind in (InstitutionKind.UNIVERSITY, InstitutionKind.INSTITUTE),
        verified_sme=enterprise.kind is EnterpriseKind.TECH_SME
        and enterprise.verification_state is VerificationState.VERIFIED,
    )


def price_for(instrument: Instrument, customer: str, mode: str) -> Price | None:
    """The price a customer of this category pays for this mode today."""
    return choose_price(price_table(instrument), customer, mode)


def check_rows(rows: Sequence[Mapping[str, Any]]) -> list[Price]:
    """The rows as prices, or ValidationFailed naming every problem (`details.fields` by row)."""
    fields: dict[str, str] = {}
    prices: list[Price] = []
    seen: set[tuple[str, str]] = set()
    for n, row in enumerate(rows):
        where = f"prices[{n}]"
        try:
            price = Price.from_json(row)
            CustomerCategory(price.customer), PriceMode(price.mode), PriceUnit(price.unit)
        except (KeyError, TypeError, ValueError):
            fields[where] = _("Give a customer category, a mode, a unit and a price.")
            continue
        amounts = [price.unit_price_fen, *(s.unit_price_fen for s in price.steps)]
        if price.overtime_unit_price_fen is not None:
            amounts.append(price.overtime_unit_price_fen)
        if any(not 0 <= a <= MAX_PRICE_FEN for a in amounts):
            fields[where] = _("Prices must not be negative.")
        elif not 0 <= price.min_units <= MAX_UNITS or any(
            not 1 < s.from_units <= MAX_UNITS for s in price.steps
        ):
            fields[where] = _("Minimum units from 0, steps from the second unit on.")
        elif len({s.from_units for s in price.steps}) != len(price.steps):
            fields[where] = _("Two steps start at the same unit.")
        elif price.mode == "sample" and price.unit != "sample":
            fields[where] = _("Samples are priced per sample.")
        elif (price.customer, price.mode) in seen:
            fields[where] = _("This customer category and mode already have a price.")
        seen.add((price.customer, price.mode))
        prices.append(price)
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    return prices


def enterprise_fees(table: Iterable[Price]) -> tuple[int | None, int | None]:
    """The enterprise price per hour (the lower of self- and staff-operated) and per sample: the two
    fee columns of the catalogue, which its list shows, filters and sorts on."""
    hourly = [
        p.unit_price_fen
        for p in table
        if p.customer == "enterprise" and p.unit == "hour" and p.mode != "sample"
    ]
    sample = [p.unit_price_fen for p in table if p.customer == "enterprise" and p.mode == "sample"]
    return (min(hourly) if hourly else None, sample[0] if sample else None)


def replace_rows(instrument: Instrument, table: list[Price]) -> tuple[list[dict], list[dict]]:
    """Put this table in place of the instrument's (no check of the actor, no commit); a non-empty
    table also sets the two fee columns to its enterprise prices. Returns (before, after) as JSON."""
    existing = price_rows(instrument)
    table = in_order(table)
    before = [p.as_json() for p in in_order(as_price(r) for r in existing)]
    after = [p.as_json() for p in table]
    if before == after:
        return before, after
    for row in existing:
        db.session.delete(row)
    db.session.flush()
    for price in table:
        db.session.add(
            PriceRow(
                instrument_id=instrument.id,
                customer=CustomerCategory(price.customer),
                mode=PriceMode(price.mode),
                unit=PriceUnit(price.unit),
                unit_price_fen=price.unit_price_fen,
                min_units=price.min_units,
                steps=[{"from_units": s.from_units, "unit_price_fen": s.unit_price_fen} for s in price.steps],
                overtime_unit_price_fen=price.overtime_unit_price_fen,
            )
        )
    if table:
        instrument.fee_per_hour_fen, instrument.fee_per_sample_fen = enterprise_fees(table)
    return before, after


def set_price_table(user: User, code: str, rows: Sequence[Mapping[str, Any]]) -> list[Price]:
    """Replace an instrument's price table (its own institution's providers, administrators)."""
    instrument = editable_instrument(user, code)
    table = check_rows(rows)
    with serialized_write():
        before, after = replace_rows(instrument, table)
        if before != after:
            audit.record(
                "instrument.prices_changed",
                "instrument",
                instrument.code,
                before={"prices": before},
                after={"prices": after},
                actor_id=user.id,
            )
        db.session.commit()
    return price_table(instrument)


def booking_fee(
    terms: Mapping[str, Any] | None, hours: Decimal | None, samples: int | None, booked_hours: Decimal | None
) -> int | None:
    """The fee at a booking's frozen price (`Booking.price_terms`) for the usage recorded, hours or
    samples as its unit says; None when the booking froze no price (made before price tables) or
    the usage is not given in its unit."""
    if not terms:
        return None
    price = Price.from_json(terms)
    used = hours if price.unit == PriceUnit.HOUR else samples
    if used is None:
        return None
    return fee_for(price, used, booked_hours if price.unit == PriceUnit.HOUR else None)
