"""Usage tallies: per instrument and Beijing month, and per instrument and year, the hours it served
and how they were measured, its own use, the income, the ratings and the enterprises served.

The pages that look at a whole city or province at once (the yearly evaluation, the ranking, the
dashboard and the public page) read these rows and those of portal.usage.booking_tallies, never
the raw bookings: a year is one row per instrument, however many services it had. A row's `period`
is "YYYY-MM" for a month or "YYYY" for the year. Like the subsidy tallies, a month's rows (and its
year's) are recomputed idempotently from the raw records by a Celery task queued (through the
outbox) by every change that moves them: a service recorded or rated, a session ended, internal
use recorded or deleted, a booking that starts or stops holding time. The nightly
`usage.tally_recent` recounts this month and the last, in case a queued recount was lost.

How an hour is counted (the same rules as the national report): a service's hours are its metered
use where sessions measured it (check-in to check-out, or the instrument PC's start to stop), else
the hours on its service record, never both. The owning institution's own use (internal use records)
adds to the effective hours; sessions an instrument PC reported without any booking add only to the
hours the instrument ran. A service belongs to the month of its start in Beijing time (a sample
service: of its record). Hours are kept as whole seconds, so months add up exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, distinct, func, insert, select

from portal.accounts.models import Enterprise, EnterpriseKind, VerificationState
from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.catalog.opening import refresh_opening_weeks
from portal.core import clock
from portal.core.database import hours_between, serialized_write
from portal.extensions import db
from portal.usage import booking_tallies
from portal.usage.models import InternalUse, UsageSession, UsageTally
from portal.usage.periods import ALL, Scope, months_between, seconds, service_period_filter

LOCK_USAGE_TALLY = 7311  # advisory lock class (PostgreSQL): one recount of a year at a time


@dataclass
class Figures:
    """One instrument's figures over a stretch of time (a tally row)."""

    metered_seconds: int = 0  # services measured by their sessions
    recorded_seconds: int = 0  # services measured by their service record (no session)
    internal_seconds: int = 0  # the owning institution's own use
    unbooked_seconds: int = 0  # an instrument PC's sessions without a booking
    external_seconds: int = 0  # services for customers outside the owning institution
    sme_seconds: int = 0  # services for verified technology SMEs
    income_fen: int = 0
    external_income_fen: int = 0
    record_seconds: int = 0  # the hours written on the service records (as billed), however measured
    services: int = 0
    samples: int = 0
    rating_total: int = 0
    ratings: int = 0
    enterprises: int = 0  # distinct enterprises served in the period (not a sum of months)

    @property
    def effective_seconds(self) -> int:
        return self.metered_seconds + self.recorded_seconds + self.internal_seconds


FIGURES = tuple(f.name for f in fields(Figures))


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
        .where(UsageSession.ended_at.is_not(None), Booking.starts_at >= start, Booking.starts_at < end)
        .group_by(UsageSession.booking_id)
    )
    return scope.of_instruments(stmt, Booking.instrument_id).subquery("metered")


def _services(start: datetime, end: datetime, scope: Scope) -> Iterable[Any]:
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
            func.coalesce(func.sum(ServiceRecord.samples), 0),
            func.coalesce(func.sum(ServiceRecord.rating), 0),
            func.count(ServiceRecord.rating),
            func.count(distinct(Booking.enterprise_id)),
            func.sum(ServiceRecord.hours),
        )
        .select_from(ServiceRecord)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Enterprise, Enterprise.id == Booking.enterprise_id)
        .outerjoin(metered, metered.c.booking_id == Booking.id)
        .where(Booking.state == BookingState.COMPLETED, service_period_filter(start, end))
        .group_by(Booking.instrument_id)
    )
    return db.session.execute(scope.of_instruments(stmt, Booking.instrument_id))


def _per_instrument(
    model: Any, start: datetime, end: datetime, scope: Scope, *conditions: Any
) -> dict[int, int]:
    stmt = (
        select(model.instrument_id, func.sum(hours_between(model.started_at, model.ended_at)))
        .where(model.started_at >= start, model.started_at < end, *conditions)
        .group_by(model.instrument_id)
    )
    rows = db.session.execute(scope.of_instruments(stmt, model.instrument_id))
    return {instrument_id: seconds(total) for instrument_id, total in rows}


def period_figures(start: datetime, end: datetime, scope: Scope = ALL) -> dict[int, Figures]:
    """Every instrument's figures over [start, end) counted from the raw records, within the scope;
    instruments without any use are left out."""
    out: dict[int, Figures] = {}
    for row in _services(start, end, scope):
        instrument_id, metered, recorded, external, sme, income, external_income = row[:7]
        out[instrument_id] = Figures(
            metered_seconds=seconds(metered),
            recorded_seconds=seconds(recorded),
            external_seconds=seconds(external),
            sme_seconds=seconds(sme),
            income_fen=int(income or 0),
            external_income_fen=int(external_income or 0),
            services=row[7],
            samples=int(row[8] or 0),
            rating_total=int(row[9] or 0),
            ratings=row[10],
            enterprises=row[11],
            record_seconds=seconds(row[12]),
        )
    for instrument_id, total in _per_instrument(InternalUse, start, end, scope).items():
        out.setdefault(instrument_id, Figures()).internal_seconds = total
    unbooked = _per_instrument(
        UsageSession, start, end, scope, UsageSession.booking_id.is_(None), UsageSession.ended_at.is_not(None)
    )
    for instrument_id, total in unbooked.items():
        out.setdefault(instrument_id, Figures()).unbooked_seconds = total
    return out


# --- keeping the tallies ------------------------------------------------------------------------


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The Beijing year as UTC instants [start, end)."""
    return (
        clock.local_datetime_to_utc(date(year, 1, 1), time(0)),
        clock.local_datetime_to_utc(date(year + 1, 1, 1), time(0)),
    )


def _replace(period: str, start: datetime, end: datetime, only: tuple[int, ...] | None) -> int:
    """The period's rows (of these instruments, or of all) counted afresh from the raw records."""
    figures = period_figures(start, end, Scope(instrument_ids=only))
    stale = delete(UsageTally).where(UsageTally.period == period)
    if only is not None:
        stale = stale.where(UsageTally.instrument_id.in_(only))
    db.session.execute(stale)
    now = clock.utcnow()
    rows = [
        {
            "instrument_id": i,
            "period": period,
            "updated_at": now,
            "effective_seconds": f.effective_seconds,
            **vars(f),
        }
        for i, f in figures.items()
    ]
    if rows:
        db.session.execute(insert(UsageTally), rows)
    return len(rows)


def tally_month(month: str, instrument_ids: Iterable[int] | None = None) -> int:
    """Recompute the month's tally rows, and the year's rows they add up to, of these instruments (or
    of all) from the raw records; idempotent. Returns the number of month rows written.

    The year's row is counted from the records too, not summed from the months: its enterprises
    served are distinct over the year (one enterprise in two months is one user)."""
    only = None if instrument_ids is None else tuple(sorted(set(instrument_ids)))
    return _tally(int(month[:4]), [month], only)


def _tally(year: int, months: list[str], only: tuple[int, ...] | None) -> int:
    # One recount of a year at a time: two months of one year both rewrite its year rows.
    with serialized_write((LOCK_USAGE_TALLY, year)):
        written = 0
        for month in months:
            start, end = clock.local_month_bounds(month)
            written += _replace(month, start, end, only)
            booking_tallies.replace_month(month, start, end, only)
            booking_tallies.replace_customers(month, start, end, only)
        _replace(str(year), *year_bounds(year), only)
        booking_tallies.replace_customers(str(year), *year_bounds(year), only)
        db.session.commit()
    return written


def tally_months(months: Iterable[str]) -> int:
    """Recompute whole months of every instrument, and their years' rows once per year (the nightly
    run, a bulk load, `flask usage tally`); returns the number of month rows written."""
    # The opening weeks are rebuilt with them: a bulk load or an import may have written hours
    # directly, and the nightly run repairs any that a change missed.
    refresh_opening_weeks()
    db.session.commit()
    by_year: dict[int, list[str]] = {}
    for month in sorted(set(months)):
        by_year.setdefault(int(month[:4]), []).append(month)
    return sum(_tally(year, chosen, None) for year, chosen in by_year.items())


def tallied_figures(period: str, scope: Scope = ALL) -> dict[int, Figures]:
    """Each instrument's figures of a month ("YYYY-MM") or a year ("YYYY"), from the tallies."""
    stmt = select(UsageTally.instrument_id, *(getattr(UsageTally, name) for name in FIGURES)).where(
        UsageTally.period == period
    )
    return {
        row[0]: Figures(*(int(value or 0) for value in row[1:]))
        for row in db.session.execute(scope.of_instruments(stmt, UsageTally.instrument_id))
    }


def tally_all() -> int:
    """Recount every month from the earliest use on record to this one (after a bulk load or an
    upgrade); returns the number of rows written."""
    earliest = [
        db.session.scalar(select(func.min(Booking.starts_at)).where(Booking.state == BookingState.COMPLETED)),
        db.session.scalar(select(func.min(ServiceRecord.recorded_at))),
        db.session.scalar(select(func.min(UsageSession.started_at))),
        db.session.scalar(select(func.min(InternalUse.started_at))),
    ]
    known = [moment for moment in earliest if moment is not None]
    if not known:
        return 0
    # Confirmed bookings ahead hold time in months to come: their booking tallies are counted too.
    latest = db.session.scalar(
        select(func.max(Booking.starts_at)).where(Booking.state.in_(booking_tallies.USED_STATES))
    )
    end = max(clock.utcnow(), latest or clock.utcnow()) + timedelta(days=1)
    return tally_months(months_between(min(known), end))
