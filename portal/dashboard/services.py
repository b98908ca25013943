"""The dashboard's figures: each one aggregate query (indexed, or over the monthly tallies).

A period is a range of whole months in Beijing time. The county filter applies to where the service
happened (the instrument's county) for instruments, bookings and utilisation, and to where the
enterprise is (the tallies' county) for subsidies, as the bureau's own reports do.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import and_, case, distinct, func, literal, select

from portal.accounts.models import ENTERPRISE_KIND_LABELS, Enterprise, Institution, User
from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.catalog.models import Category, Instrument, OpeningHours
from portal.core import clock
from portal.core.database import hours_between
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance.models import SubsidyTally
from portal.finance.services import month_range
from portal.vouchers.models import Fund, Scheme
from portal.vouchers.schemes import in_fund_order

# Bookings that took (or hold) instrument time.
USED_STATES = (BookingState.CONFIRMED, BookingState.COMPLETED)
UTILISATION_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Period:
    month_from: str
    month_to: str

    @property
    def start(self) -> datetime:
        return month_range(self.month_from)[0]

    @property
    def end(self) -> datetime:
        return month_range(self.month_to)[1]

    @property
    def months(self) -> list[str]:
        out, year, month = [], int(self.month_from[:4]), int(self.month_from[5:])
        while f"{year:04d}-{month:02d}" <= self.month_to:
            out.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return out

    def previous(self) -> Period:
        """The same number of months just before."""
        count = len(self.months)
        year, month = int(self.month_from[:4]), int(self.month_from[5:])
        index = year * 12 + month - 1 - count
        first = f"{index // 12:04d}-{index % 12 + 1:02d}"
        index_to = year * 12 + month - 2
        last = f"{index_to // 12:04d}-{index_to % 12 + 1:02d}"
        return Period(first, last)

    def local_days(self) -> tuple[date, date]:
        """First and last day (Beijing time) of the period."""
        first = date(int(self.month_from[:4]), int(self.month_from[5:]), 1)
        return first, clock.to_local(self.end).date() - timedelta(days=1)


@dataclass
class Figures:
    instruments: int = 0
    users: int = 0
    new_users: int = 0
    enterprises_served: int = 0
    bookings: int = 0
    service_hours: float = 0.0
    approved_fen: int = 0
    paid_fen: int = 0


@dataclass
class Budget:
    year: int
    budget_fen: int = 0
    committed_fen: int = 0
    paid_fen: int = 0
    funds: list[Fund] = field(default_factory=list)


def figures(period: Period, county: str | None = None) -> Figures:
    """The headline numbers of a period."""
    start, end = period.start, period.end
    out = Figures()
    instruments = select(func.count()).select_from(Instrument)
    if county:
        instruments = instruments.where(Instrument.county == county)
    out.instruments = db.session.execute(instruments).scalar_one()
    users = select(func.count()).select_from(User).where(User.role == Role.ENTERPRISE)
    if county:
        users = users.join(Enterprise, Enterprise.id == User.enterprise_id).where(Enterprise.county == county)
    out.users = db.session.execute(users.where(User.created_at < end)).scalar_one()
    out.new_users = db.session.execute(
        users.where(User.created_at >= start, User.created_at < end)
    ).scalar_one()

    bookings = (
        select(func.count(), func.count(distinct(Booking.enterprise_id)))
        .select_from(Booking)
        .where(Booking.state.in_(USED_STATES), Booking.starts_at >= start, Booking.starts_at < end)
    )
    if county:
        bookings = bookings.join(Instrument, Instrument.id == Booking.instrument_id).where(
            Instrument.county == county
        )
    out.bookings, out.enterprises_served = db.session.execute(bookings).one()
    hours = (
        select(func.coalesce(func.sum(ServiceRecord.hours), 0))
        .select_from(ServiceRecord)
        .where(ServiceRecord.recorded_at >= start, ServiceRecord.recorded_at < end)
    )
    if county:
        hours = (
            hours.join(Booking, Booking.id == ServiceRecord.booking_id)
            .join(Instrument, Instrument.id == Booking.instrument_id)
            .where(Instrument.county == county)
        )
    out.service_hours = float(db.session.scalar(hours) or 0)
    tallies = select(
        func.coalesce(func.sum(SubsidyTally.approved_fen), 0),
        func.coalesce(func.sum(SubsidyTally.paid_fen), 0),
    ).where(SubsidyTally.month >= period.month_from, SubsidyTally.month <= period.month_to)
    if county:
        tallies = tallies.where(SubsidyTally.county == county)
    approved, paid = db.session.execute(tallies).one()
    out.approved_fen, out.paid_fen = int(approved), int(paid)
    return out


def change(now: float, before: float) -> float | None:
    """Relative change from the previous period (None when there is nothing to compare with)."""
    if not before:
        return None
    return (now - before) / before


def budget(year: int) -> Budget | None:
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == year))
    if scheme is None:
        return None
    funds = list(scheme.funds)
    return Budget(
        year,
        sum(f.budget_fen for f in funds),
        sum(f.committed_fen for f in funds),
        sum(f.paid_fen for f in funds),
        funds,
    )


@dataclass
class BurnDown:
    months: list[str]
    funds: dict[str, list[int]]  # approved per month and fund (by name, in the schemes' order), fen
    cumulative: list[int]
    forecast: list[int]  # linear from the months so far to December
    budget_fen: int


def burn_down(year: int, today: date, county: str | None = None) -> BurnDown:
    """The year's approved subsidy per month and fund, cumulated, with a straight-line forecast."""
    months = [f"{year}-{m:02d}" for m in range(1, 13)]
    query = (
        select(SubsidyTally.month, SubsidyTally.fund, func.sum(SubsidyTally.approved_fen))
        .where(SubsidyTally.month >= months[0], SubsidyTally.month <= months[-1])
        .group_by(SubsidyTally.month, SubsidyTally.fund)
    )
    if county:
        query = query.where(SubsidyTally.county == county)
    amounts: dict[tuple[str, str], int] = {(m, f): int(a or 0) for m, f, a in db.session.execute(query)}
    names = in_fund_order(fund for _m, fund in amounts)
    funds = {name: [amounts.get((m, name), 0) for m in months] for name in names}
    cumulative, running = [], 0
    for index in range(len(months)):
        running += sum(series[index] for series in funds.values())
        cumulative.append(running)
    elapsed = 12 if today.year > year else (0 if today.year < year else today.month)
    rate = cumulative[elapsed - 1] / elapsed if elapsed else 0
    forecast = [round(rate * (i + 1)) for i in range(12)]
    plan = budget(year)
    return BurnDown(months, funds, cumulative, forecast, plan.budget_fen if plan else 0)


def _weekday_counts(period: Period) -> list[int]:
    first, last = period.local_days()
    counts = [0] * 7
    for offset in range((last - first).days + 1):
        counts[(first + timedelta(days=offset)).weekday()] += 1
    return counts


def _open_hours_per_instrument(period: Period, county: str | None):
    """Open hours in the period per instrument, from the weekly hours (closures not subtracted)."""
    counts = _weekday_counts(period)
    span = hours_between(OpeningHours.opens_at, OpeningHours.closes_at)
    days = case(*[(OpeningHours.weekday == d, literal(n)) for d, n in enumerate(counts)], else_=literal(0))
    query = select(OpeningHours.instrument_id, func.sum(span * days).label("open_hours")).group_by(
        OpeningHours.instrument_id
    )
    if county:
        query = query.join(Instrument, Instrument.id == OpeningHours.instrument_id).where(
            Instrument.county == county
        )
    return query.subquery()


def _booked_hours_per_instrument(period: Period, county: str | None):
    query = (
        select(
            Booking.instrument_id,
            func.sum(hours_between(Booking.starts_at, Booking.ends_at)).label("booked_hours"),
        )
        .where(
            Booking.state.in_(USED_STATES),
            Booking.starts_at.is_not(None),
            Booking.starts_at >= period.start,
            Booking.starts_at < period.end,
        )
        .group_by(Booking.instrument_id)
    )
    if county:
        query = query.join(Instrument, Instrument.id == Booking.instrument_id).where(
            Instrument.county == county
        )
    return query.subquery()


@dataclass
class UtilisationRow:
    instrument_id: int
    code: str
    name: str
    institution: str
    booked_hours: float
    open_hours: float

    @property
    def ratio(self) -> float:
        return self.booked_hours / self.open_hours if self.open_hours else 0.0


@dataclass
class Utilisation:
    buckets: list[tuple[str, int]]
    top: list[UtilisationRow]
    bottom: list[UtilisationRow]
    instruments: int
    mean: float


def utilisation(period: Period, county: str | None = None, listed: int = 10) -> Utilisation:
    """Booked hours ÷ open hours per instrument with opening hours: a distribution and both ends."""
    opened = _open_hours_per_instrument(period, county)
    booked = _booked_hours_per_instrument(period, county)
    booked_hours = func.coalesce(booked.c.booked_hours, 0)
    rows = [
        (instrument_id, float(hours or 0), float(open_hours))
        for instrument_id, hours, open_hours in db.session.execute(
            select(opened.c.instrument_id, booked_hours, opened.c.open_hours)
            .select_from(opened.outerjoin(booked, booked.c.instrument_id == opened.c.instrument_id))
            .where(opened.c.open_hours > 0)
        )
    ]
    counts: Counter[int] = Counter(min(int(hours / open_hours * 10), 9) for _id, hours, open_hours in rows)
    labels = [f"{int(low * 100)}–{int(low * 100) + 10}%" for low in UTILISATION_BUCKETS]
    labels[-1] = "90%+"
    # Both ends without sorting every instrument; ties go by id, as the lists are shown.
    top = heapq.nsmallest(listed, rows, key=lambda r: (-r[1] / r[2], r[0]))
    bottom = heapq.nsmallest(listed, rows, key=lambda r: (r[1] / r[2], r[0]))
    names = _instrument_names({r[0] for r in top + bottom})
    mean = sum(hours / open_hours for _id, hours, open_hours in rows) / len(rows) if rows else 0.0
    return Utilisation(
        [(labels[i], counts[i]) for i in range(10)],
        [UtilisationRow(i, *names[i], hours, open_hours) for i, hours, open_hours in top],
        [UtilisationRow(i, *names[i], hours, open_hours) for i, hours, open_hours in bottom],
        len(rows),
        mean,
    )


def _instrument_names(ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """(code, name, host institution) of a few instruments."""
    rows = db.session.execute(
        select(Instrument.id, Instrument.code, Instrument.name, Institution.name)
        .join(Institution, Institution.id == Instrument.institution_id)
        .where(Instrument.id.in_(ids))
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def bookings_by_county(period: Period, county: str | None = None) -> list[tuple[str, int]]:
    query = (
        select(Instrument.county, func.count())
        .select_from(Booking)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(
            Booking.state.in_(USED_STATES), Booking.starts_at >= period.start, Booking.starts_at < period.end
        )
        .group_by(Instrument.county)
        .order_by(func.count().desc())
    )
    if county:
        query = query.where(Instrument.county == county)
    return [(c, n) for c, n in db.session.execute(query)]


def bookings_by_category(period: Period, county: str | None = None) -> list[tuple[str, int]]:
    """Per first-level category (the two-digit code prefix)."""
    prefix = func.substr(Category.code, 1, 2)
    query = (
        select(prefix, func.count())
        .select_from(Booking)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .join(Category, Category.id == Instrument.category_id)
        .where(
            Booking.state.in_(USED_STATES), Booking.starts_at >= period.start, Booking.starts_at < period.end
        )
        .group_by(prefix)
        .order_by(func.count().desc())
    )
    if county:
        query = query.where(Instrument.county == county)
    counts = db.session.execute(query).all()
    # The category's name in the interface language (Category.label).
    names = {
        category.code: category.label
        for category in db.session.scalars(select(Category).where(Category.code.in_([c for c, _n in counts])))
    }
    return [(names.get(code, code), n) for code, n in counts]


def subsidies_by_enterprise_kind(period: Period, county: str | None = None) -> list[tuple[str, int]]:
    query = (
        select(Enterprise.kind, func.sum(SubsidyTally.approved_fen))
        .select_from(SubsidyTally)
        .join(Enterprise, Enterprise.id == SubsidyTally.enterprise_id)
        .where(SubsidyTally.month >= period.month_from, SubsidyTally.month <= period.month_to)
        .group_by(Enterprise.kind)
        .order_by(func.sum(SubsidyTally.approved_fen).desc())
    )
    if county:
        query = query.where(SubsidyTally.county == county)
    return [(str(ENTERPRISE_KIND_LABELS.get(k, k)), int(a or 0)) for k, a in db.session.execute(query)]


@dataclass
class Headline:
    instruments: int
    institutions: int
    enterprises_served: int
    services: int
    service_hours: float
    subsidy_approved_fen: int


def _year_before(today: date) -> datetime:
    return clock.local_datetime_to_utc(today - timedelta(days=365), datetime.min.time())


def public_headline(today: date) -> Headline:
    """The network in numbers over the last twelve months, for the public page."""
    since = _year_before(today)
    services, hours = db.session.execute(
        select(func.count(), func.coalesce(func.sum(ServiceRecord.hours), 0)).where(
            ServiceRecord.recorded_at >= since
        )
    ).one()
    served = db.session.scalar(
        select(func.count(distinct(Booking.enterprise_id))).where(
            Booking.state == BookingState.COMPLETED, Booking.starts_at >= since
        )
    )
    months = f"{today.year - 1:04d}-{today.month:02d}"
    approved = db.session.scalar(
        select(func.coalesce(func.sum(SubsidyTally.approved_fen), 0)).where(SubsidyTally.month > months)
    )
    return Headline(
        db.session.execute(select(func.count()).select_from(Instrument)).scalar_one(),
        db.session.execute(select(func.count(distinct(Instrument.institution_id)))).scalar_one(),
        served or 0,
        services,
        float(hours or 0),
        int(approved or 0),
    )


def most_used(today: date, limit: int = 10) -> list[tuple[str, str, str, float, int]]:
    """(code, name, institution, booked hours, bookings) of the most booked instruments, last 12 months."""
    since = _year_before(today)
    hours = func.sum(hours_between(Booking.starts_at, Booking.ends_at))
    ranked = (
        select(Booking.instrument_id, hours.label("hours"), func.count().label("bookings"))
        .where(
            Booking.state.in_(USED_STATES),
            Booking.starts_at.is_not(None),
            and_(Booking.starts_at >= since, Booking.starts_at < clock.utcnow()),
        )
        .group_by(Booking.instrument_id)
        .order_by(hours.desc(), Booking.instrument_id)
        .limit(limit)
        .subquery()
    )
    rows = db.session.execute(
        select(Instrument.code, Instrument.name, Institution.name, ranked.c.hours, ranked.c.bookings)
        .join(ranked, ranked.c.instrument_id == Instrument.id)
        .join(Institution, Institution.id == Instrument.institution_id)
        .order_by(ranked.c.hours.desc(), Instrument.code)
    ).all()
    return [(c, n, i, float(h or 0), b) for c, n, i, h, b in rows]
