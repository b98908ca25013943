"""Booking, month and customer tallies: each instrument's bookings per Beijing month, the month's
use per county and first-level category, and which enterprises each institution served, per county
and month or year (issue 20).

The dashboard, the ranking and the public page read these rows, never the raw bookings: at a
province's size a month holds a million bookings. They are recounted with the usage tallies
(portal.usage.tallies, under the same lock and in the same transaction), after every booking that
starts or stops holding time, every service recorded or rated, and nightly.

- A booking counts when it took or holds its instrument's time (confirmed or completed), in the
  month of its start; sample services have no start and are not bookings of time. Only months with
  such bookings have a row.
- The month totals add up the month's booking and usage tally rows per county and first-level
  category (a recount redoes only the groups of the instruments it recounts): the dashboard's
  headline figures and its charts read a few hundred rows, not one per instrument.
- Distinct enterprises cannot be added up from months or instruments, so they are kept as
  (institution, county, enterprise) rows with the period's bookings and services: a few rows per
  institution, not one per booking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, false, func, insert, or_, select

from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.booking.records import queue_usage_tally
from portal.catalog.models import Category, Instrument
from portal.core import clock
from portal.core.database import hours_between
from portal.extensions import db
from portal.usage.models import BookingTally, CustomerTally, MonthTotal, UsageTally
from portal.usage.periods import Scope, seconds, service_period_filter

# Bookings that took (or hold) instrument time.
USED_STATES = (BookingState.CONFIRMED, BookingState.COMPLETED)


def booked(start: datetime, end: datetime, scope: Scope) -> dict[int, tuple[int, int]]:
    """(bookings, booked seconds) of each instrument's slot bookings that took or hold its time and
    start in [start, end)."""
    stmt = (
        select(
            Booking.instrument_id, func.count(), func.sum(hours_between(Booking.starts_at, Booking.ends_at))
        )
        .where(Booking.state.in_(USED_STATES), Booking.starts_at >= start, Booking.starts_at < end)
        .group_by(Booking.instrument_id)
    )
    rows = db.session.execute(scope.of_instruments(stmt, Booking.instrument_id))
    return {instrument_id: (count, seconds(hours)) for instrument_id, count, hours in rows}


def replace_month(month: str, start: datetime, end: datetime, only: tuple[int, ...] | None) -> int:
    """The month's booking tally rows (of these instruments, or of all) counted afresh, and the
    month's totals they add to; call after the month's usage tallies are recounted."""
    taken = booked(start, end, Scope(instrument_ids=only))
    stale = delete(BookingTally).where(BookingTally.month == month)
    if only is not None:
        stale = stale.where(BookingTally.instrument_id.in_(only))
    db.session.execute(stale)
    now = clock.utcnow()
    rows = [
        {"month": month, "instrument_id": i, "bookings": n, "booked_seconds": s, "updated_at": now}
        for i, (n, s) in sorted(taken.items())
        if n
    ]
    if rows:
        db.session.execute(insert(BookingTally), rows)
    _replace_totals(month, only)
    return len(rows)


CATEGORY_GROUP = func.substr(Category.code, 1, 2)  # the first-level category of a category code


def _in_group(county: str, group: str) -> ColumnElement[bool]:
    """An instrument of this county and first-level category."""
    # The expression is written out, not CATEGORY_GROUP == group: ruff's yoda rule would turn that
    # into `group == CATEGORY_GROUP`, a str's comparison that only SQLAlchemy's reflection rescues.
    return and_(Instrument.county == county, func.substr(Category.code, 1, 2) == group)


def _groups_of(only: tuple[int, ...]) -> list[tuple[str, str]]:
    """The (county, first-level category) pairs these instruments are in."""
    stmt = (
        select(Instrument.county, CATEGORY_GROUP)
        .join(Category, Category.id == Instrument.category_id)
        .where(Instrument.id.in_(only))
        .distinct()
    )
    return [(county, group) for county, group in db.session.execute(stmt)]


def _replace_totals(month: str, only: tuple[int, ...] | None) -> None:
    """The month's totals per county and first-level category, of the groups these instruments are
    in (or of all), summed afresh from the month's booking and usage tally rows."""
    keys = (Instrument.county, CATEGORY_GROUP)
    booked_rows = select(*keys, func.sum(BookingTally.bookings), func.sum(BookingTally.booked_seconds)).where(
        BookingTally.month == month, BookingTally.instrument_id == Instrument.id
    )
    served_rows = select(*keys, func.sum(UsageTally.services), func.sum(UsageTally.record_seconds)).where(
        UsageTally.period == month, UsageTally.instrument_id == Instrument.id
    )
    stale = delete(MonthTotal).where(MonthTotal.month == month)
    totals: dict[tuple[str, str], list[int]] = {}
    if only is not None:
        pairs = _groups_of(only)
        chosen = or_(false(), *(_in_group(county, group) for county, group in pairs))
        booked_rows, served_rows = booked_rows.where(chosen), served_rows.where(chosen)
        stale = stale.where(
            or_(false(), *(and_(MonthTotal.county == c, MonthTotal.category_group == g) for c, g in pairs))
        )
    for position, stmt in ((0, booked_rows), (2, served_rows)):
        stmt = stmt.join(Category, Category.id == Instrument.category_id).group_by(*keys)
        for county, group, count, total in db.session.execute(stmt):
            row = totals.setdefault((county, group), [0, 0, 0, 0])
            row[position], row[position + 1] = int(count or 0), int(total or 0)
    db.session.execute(stale)
    now = clock.utcnow()
    rows = [
        {
            "month": month,
            "county": county,
            "category_group": group,
            "bookings": values[0],
            "booked_seconds": values[1],
            "services": values[2],
            "record_seconds": values[3],
            "updated_at": now,
        }
        for (county, group), values in sorted(totals.items())
        if any(values)
    ]
    if rows:
        db.session.execute(insert(MonthTotal), rows)


CustomerKey = tuple[int, str, int]  # institution, county, enterprise


def customers(start: datetime, end: datetime, institutions: Any) -> dict[CustomerKey, list[int]]:
    """[bookings, services] per (institution, county, enterprise) in [start, end), for the
    instruments of these institutions (a subquery of ids, or None for all)."""
    key = (Instrument.institution_id, Instrument.county, Booking.enterprise_id)
    booked_rows = (
        select(*key, func.count())
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(Booking.state.in_(USED_STATES), Booking.starts_at >= start, Booking.starts_at < end)
        .group_by(*key)
    )
    served_rows = (
        select(*key, func.count())
        .select_from(ServiceRecord)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(Booking.state == BookingState.COMPLETED, service_period_filter(start, end))
        .group_by(*key)
    )
    out: dict[CustomerKey, list[int]] = {}
    for position, stmt in enumerate((booked_rows, served_rows)):
        if institutions is not None:
            # By the instruments' ids first, so the bookings' (instrument, start) index finds them.
            ours = select(Instrument.id).where(Instrument.institution_id.in_(institutions))
            stmt = stmt.where(Booking.instrument_id.in_(ours))
        for institution_id, county, enterprise_id, count in db.session.execute(stmt):
            out.setdefault((institution_id, county, enterprise_id), [0, 0])[position] = count
    return out


def replace_customers(period: str, start: datetime, end: datetime, only: tuple[int, ...] | None) -> int:
    """The period's customer rows counted afresh: of the institutions owning these instruments (a
    row is per institution and county, so all their instruments are recounted), or of all."""
    institutions = None
    stale = delete(CustomerTally).where(CustomerTally.period == period)
    if only is not None:
        institutions = select(Instrument.institution_id).where(Instrument.id.in_(only)).distinct()
        stale = stale.where(CustomerTally.institution_id.in_(institutions))
    found = customers(start, end, institutions)
    db.session.execute(stale)
    now = clock.utcnow()
    rows = [
        {
            "period": period,
            "institution_id": institution_id,
            "county": county,
            "enterprise_id": enterprise_id,
            "bookings": counts[0],
            "services": counts[1],
            "updated_at": now,
        }
        for (institution_id, county, enterprise_id), counts in sorted(found.items())
    ]
    if rows:
        db.session.execute(insert(CustomerTally), rows)
    return len(rows)


def on_booking_state_changed(
    booking: Booking, *, before: BookingState, after: BookingState, **_extra: Any
) -> None:
    """Receiver of `booking_state_changed`: a slot booking that starts or stops holding its
    instrument's time moves the month's booking tally, so the month is recounted once this
    transaction commits."""
    if booking.starts_at is not None and (before in USED_STATES or after in USED_STATES):
        queue_usage_tally(booking.instrument_id, booking.starts_at)
