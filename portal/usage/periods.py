"""What the tallies count over: a scope of instruments, Beijing months, whole seconds, and which
services fall in a period. Shared by the usage tallies and the booking and customer tallies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Select, and_, or_, select

from portal.booking.models import Booking, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import clock


@dataclass(frozen=True)
class Scope:
    """Which instruments: one institution's, one county's, or all (None); `instrument_ids` narrows
    to those instruments (a recount after a change)."""

    institution_id: int | None = None
    county: str | None = None
    instrument_ids: tuple[int, ...] | None = None

    def where(self, stmt: Select) -> Select:
        if self.instrument_ids is not None:
            stmt = stmt.where(Instrument.id.in_(self.instrument_ids))
        if self.institution_id is not None:
            stmt = stmt.where(Instrument.institution_id == self.institution_id)
        if self.county:
            stmt = stmt.where(Instrument.county == self.county)
        return stmt

    def of_instruments(self, stmt: Select, column: Any) -> Select:
        """`stmt` narrowed to rows whose `column` names an instrument of the scope, by the instrument
        ids first: the bookings' (instrument, start) index then finds them, where a filter on the
        joined instrument would read every booking of the year."""
        if self.instrument_ids is not None:
            stmt = stmt.where(column.in_(self.instrument_ids))
        if self.institution_id is None and not self.county:
            return stmt
        return stmt.where(column.in_(self.where(select(Instrument.id))))


ALL = Scope()


def months_between(start: datetime, end: datetime) -> list[str]:
    """Every Beijing month that [start, end) touches."""
    months, month = [], clock.local_month(start)
    while clock.local_month_bounds(month)[0] < end:
        months.append(month)
        year, number = int(month[:4]), int(month[5:7])
        month = f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"
    return months


def seconds(hours: Any) -> int:
    """A sum of hours from either backend (float from SQLite's julianday, Decimal from PostgreSQL) as
    whole seconds."""
    if hours is None:
        return 0
    return int((Decimal(str(hours)) * 3600).to_integral_value(ROUND_HALF_UP))


def service_period_filter(start: datetime, end: datetime) -> Any:
    """A service in [start, end): a slot by its start, a sample service by its record."""
    return or_(
        and_(Booking.starts_at >= start, Booking.starts_at < end),
        and_(
            Booking.starts_at.is_(None), ServiceRecord.recorded_at >= start, ServiceRecord.recorded_at < end
        ),
    )
