"""Effective hours per instrument and year, and how each hour was measured.

A service's hours are its metered use where sessions measured it (check-in to check-out, or the
instrument PC's start to stop), else the hours on its service record; a metered service never counts
its record's hours as well. The owning institution's own use (internal use records) adds to the
effective hours; use an instrument PC reported without any booking or record adds only to the hours
the instrument ran (it may be idle running, or use nobody recorded). A service belongs to the year of
its start in Beijing time (a sample service: of its record). Open sessions do not count yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, case, distinct, func, or_, select

from portal.accounts.models import Enterprise, EnterpriseKind, VerificationState
from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.database import hours_between
from portal.extensions import cache, db
from portal.usage.models import InternalUse, UsageSession

ZERO = Decimal(0)
CENT = Decimal("0.01")


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The year in Beijing time, as UTC instants [start, end)."""
    return (
        clock.local_datetime_to_utc(date(year, 1, 1), time(0)),
        clock.local_datetime_to_utc(date(year + 1, 1, 1), time(0)),
    )


def as_hours(value: Any) -> Decimal:
    """A sum from either backend (float from SQLite's julianday, Decimal from PostgreSQL) to 2 places."""
    if value is None:
        return ZERO
    return Decimal(str(value)).quantize(CENT)


@dataclass(frozen=True)
class Scope:
    """Which instruments: one institution's, one county's, or all (None)."""

    institution_id: int | None = None
    county: str | None = None

    def where(self, stmt: Select) -> Select:
        if self.institution_id is not None:
            stmt = stmt.where(Instrument.institution_id == self.institution_id)
        if self.county:
            stmt = stmt.where(Instrument.county == self.county)
        return stmt

    def of_instruments(self, stmt: Select, column: Any) -> Select:
        """`stmt` narrowed to rows whose `column` names an instrument of the scope, by the instrument
        ids first: the bookings' (instrument, start) index then finds them, where a filter on the
        joined instrument would read every booking of the year."""
        if self.institution_id is None and not self.county:
            return stmt
        return stmt.where(column.in_(self.where(select(Instrument.id))))


@dataclass
class Hours:
    """One instrument's year."""

    instrument_id: int
    metered_hours: Decimal = ZERO  # services measured by their sessions
    recorded_hours: Decimal = ZERO  # services measured by their service record (no session)
    internal_hours: Decimal = ZERO  # the owning institution's own use
    unbooked_hours: Decimal = ZERO  # an instrument PC's sessions without a booking
    external_service_hours: Decimal = ZERO
    sme_service_hours: Decimal = ZERO
    income_fen: int = 0
    external_income_fen: int = 0
    services: int = 0
    users_served: int = 0
    rating_total: int = 0
    ratings: int = 0

    @property
    def service_hours(self) -> Decimal:
        return self.metered_hours + self.recorded_hours

    @property
    def effective_hours(self) -> Decimal:
        return self.service_hours + self.internal_hours

    @property
    def run_hours(self) -> Decimal:
        return self.effective_hours + self.unbooked_hours

    @property
    def rating_avg(self) -> Decimal | None:
        return None if not self.ratings else (Decimal(self.rating_total) / self.ratings).quantize(CENT)

    @property
    def measured_by(self) -> dict[str, Decimal]:
        """How the effective hours were measured: hours per source, the sources with none left out."""
        parts = {
            "metered": self.metered_hours,
            "service_records": self.recorded_hours,
            "internal_use": self.internal_hours,
        }
        return {source: hours for source, hours in parts.items() if hours}


@dataclass
class YearHours:
    year: int
    by_instrument: dict[int, Hours] = field(default_factory=dict)

    def of(self, instrument_id: int) -> Hours:
        return self.by_instrument.get(instrument_id) or Hours(instrument_id)


def service_year_filter(start: datetime, end: datetime) -> Any:
    """A service in [start, end): a slot by its start, a sample service by its record."""
    return or_(
        and_(Booking.starts_at >= start, Booking.starts_at < end),
        and_(
            Booking.starts_at.is_(None), ServiceRecord.recorded_at >= start, ServiceRecord.recorded_at < end
        ),
    )


def metered_subquery(start: datetime, end: datetime, scope: Scope) -> Any:
    """Hours of the ended sessions of each slot booking of the scope starting in [start, end).

    Narrowed to those bookings (not every session ever), so that the join stays small whatever plan
    the database picks: right after a bulk load, before its statistics are current, PostgreSQL may
    join by nested loop and evaluate the subquery once per service."""
    stmt = (
        select(
            UsageSession.booking_id.label("booking_id"),
            func.sum(hours_between(UsageSession.started_at, UsageSession.ended_at)).label("hours"),
        )
        .join(Booking, Booking.id == UsageSession.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(UsageSession.ended_at.is_not(None), Booking.starts_at >= start, Booking.starts_at < end)
        .group_by(UsageSession.booking_id)
    )
    return scope.of_instruments(stmt, Booking.instrument_id).subquery("metered")


def _services(year: int, scope: Scope) -> Iterable[Any]:
    start, end = year_bounds(year)
    metered = metered_subquery(start, end, scope)
    hours = func.coalesce(metered.c.hours, ServiceRecord.hours, 0)
    external = func.coalesce(Booking.tier, "") != "internal"
    sme = and_(
        Enterprise.kind == EnterpriseKind.TECH_SME,
        Enterprise.verification_state == VerificationState.VERIFIED,
    )
    stmt = (
        select(
            Booking.instrument_id,
            func.sum(metered.c.hours),
            func.sum(case((metered.c.hours.is_(None), func.coalesce(ServiceRecord.hours, 0)), else_=0)),
            func.sum(case((external, hours), else_=0)),
            func.sum(case((sme, hours), else_=0)),
            func.sum(ServiceRecord.fee_fen),
            func.sum(case((external, ServiceRecord.fee_fen), else_=0)),
            func.count(),
            func.count(distinct(Booking.enterprise_id)),
            func.coalesce(func.sum(ServiceRecord.rating), 0),
            func.count(ServiceRecord.rating),
        )
        .select_from(ServiceRecord)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .join(Enterprise, Enterprise.id == Booking.enterprise_id)
        .outerjoin(metered, metered.c.booking_id == Booking.id)
        .where(Booking.state == BookingState.COMPLETED, service_year_filter(start, end))
        .group_by(Booking.instrument_id)
    )
    return db.session.execute(scope.of_instruments(stmt, Booking.instrument_id))


def _per_instrument(model: Any, year: int, scope: Scope, *conditions: Any) -> dict[int, Decimal]:
    start, end = year_bounds(year)
    stmt = (
        select(model.instrument_id, func.sum(hours_between(model.started_at, model.ended_at)))
        .join(Instrument, Instrument.id == model.instrument_id)
        .where(model.started_at >= start, model.started_at < end, *conditions)
        .group_by(model.instrument_id)
    )
    return {instrument_id: as_hours(total) for instrument_id, total in db.session.execute(scope.where(stmt))}


def cached_year_hours(year: int, scope: Scope) -> YearHours:
    """year_hours, kept REPORTING_CACHE_SECONDS (the evaluation reads every instrument of the city)."""
    seconds = current_app.config["REPORTING_CACHE_SECONDS"]
    if seconds <= 0:  # 0 turns the cache off (to the cache itself, 0 would mean "for ever")
        return year_hours(year, scope)
    key = f"reporting:hours:{year}:{scope.institution_id}:{scope.county}"
    found = cache.get(key)
    if isinstance(found, YearHours):
        return found
    result = year_hours(year, scope)
    cache.set(key, result, timeout=seconds)
    return result


def year_hours(year: int, scope: Scope | None = None) -> YearHours:
    """Every instrument's hours, income and users of the year, within the scope."""
    scope = scope or Scope()
    out = YearHours(year)
    for row in _services(year, scope):
        (instrument_id, metered, recorded, external, sme, income, external_income, count, users) = row[:9]
        out.by_instrument[instrument_id] = Hours(
            instrument_id,
            metered_hours=as_hours(metered),
            recorded_hours=as_hours(recorded),
            external_service_hours=as_hours(external),
            sme_service_hours=as_hours(sme),
            income_fen=int(income or 0),
            external_income_fen=int(external_income or 0),
            services=count,
            users_served=users,
            rating_total=int(row[9] or 0),
            ratings=row[10],
        )
    for instrument_id, hours in _per_instrument(InternalUse, year, scope).items():
        out.by_instrument.setdefault(instrument_id, Hours(instrument_id)).internal_hours = hours
    unbooked = _per_instrument(
        UsageSession, year, scope, UsageSession.booking_id.is_(None), UsageSession.ended_at.is_not(None)
    )
    for instrument_id, hours in unbooked.items():
        out.by_instrument.setdefault(instrument_id, Hours(instrument_id)).unbooked_hours = hours
    return out
