"""The dashboard's figures: each one aggregate query (indexed, or over the monthly tallies).

A period is a range of whole months in Beijing time. The county filter applies to where the service
happened (the instrument's county) for instruments, bookings and utilisation, and to where the
enterprise is (the tallies' county) for subsidies, as the bureau's own reports do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, literal, select, union_all

from portal.accounts.models import ENTERPRISE_KIND_LABELS, Enterprise, Institution, User
from portal.catalog.models import Category, Instrument, OpeningWeek
from portal.catalog.opening import DAYS
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance.models import SubsidyTally
from portal.finance.services import month_range
from portal.usage.models import BookingTally, CustomerTally, MonthTotal
from portal.vouchers.models import Fund, Scheme
from portal.vouchers.schemes import in_fund_order

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

    out.bookings, out.enterprises_served, out.service_hours = _use_figures(period.months, county)
    tallies = select(
        func.coalesce(func.sum(SubsidyTally.approved_fen), 0),
        func.coalesce(func.sum(SubsidyTally.paid_fen), 0),
    ).where(SubsidyTally.month >= period.month_from, SubsidyTally.month <= period.month_to)
    if county:
        tallies = tallies.where(SubsidyTally.county == county)
    approved, paid = db.session.execute(tallies).one()
    out.approved_fen, out.paid_fen = int(approved), int(paid)
    return out


def _month_rows(column: Any, months: list[str]) -> ColumnElement[bool]:
    """Rows of these months, never a year's row ("2027" sorts between "2026-03" and "2027-02")."""
    return and_(column >= months[0], column <= months[-1], func.length(column) == 7)


def _use_figures(months: list[str], county: str | None) -> tuple[int, int, float]:
    """(bookings, distinct enterprises served, service hours) of the months, from the tallies."""
    totals = select(
        func.coalesce(func.sum(MonthTotal.bookings), 0), func.coalesce(func.sum(MonthTotal.record_seconds), 0)
    ).where(_month_rows(MonthTotal.month, months))
    served = select(func.count(distinct(CustomerTally.enterprise_id))).where(
        _month_rows(CustomerTally.period, months), CustomerTally.bookings > 0
    )
    if county:
        totals = totals.where(MonthTotal.county == county)
        served = served.where(CustomerTally.county == county)
    bookings, record_seconds = db.session.execute(totals).one()
    return int(bookings), int(db.session.scalar(served) or 0), int(record_seconds) / 3600


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


def _weekday_counts(period: Period) -> list[int]:
    first, last = period.local_days()
    counts = [0] * 7
    for offset in range((last - first).days + 1):
        counts[(first + timedelta(days=offset)).weekday()] += 1
    return counts


def _open_hours_per_instrument(period: Period, county: str | None):
    """Open hours in the period per instrument: its opening week's seconds of each weekday times the
    days of that weekday in the period (closures not subtracted)."""
    counts = _weekday_counts(period)
    seconds = sum(getattr(OpeningWeek, day) * count for day, count in zip(DAYS, counts, strict=True))
    query = select(OpeningWeek.instrument_id, (seconds / 3600.0).label("open_hours"))
    if county:
        query = query.join(Instrument, Instrument.id == OpeningWeek.instrument_id).where(
            Instrument.county == county
        )
    return query.subquery()


def _ratios(period: Period, county: str | None) -> Any:
    """Per instrument with opening hours: its booked seconds (the months' booking tallies), its open
    hours (the weekly hours times the days of the period) and their ratio, as a CTE."""
    opened = _open_hours_per_instrument(period, county)
    booked = (
        select(BookingTally.instrument_id, func.sum(BookingTally.booked_seconds).label("seconds"))
        .where(_month_rows(BookingTally.month, period.months))
        .group_by(BookingTally.instrument_id)
        .subquery()
    )
    seconds = func.coalesce(booked.c.seconds, 0)
    return (
        select(
            opened.c.instrument_id.label("id"),
            seconds.label("seconds"),
            opened.c.open_hours.label("open_hours"),
            (seconds / 3600.0 / opened.c.open_hours).label("ratio"),
        )
        .select_from(opened.outerjoin(booked, booked.c.instrument_id == opened.c.instrument_id))
        .where(opened.c.open_hours > 0)
        .cte("ratios")
    )


def _utilisation_rows(period: Period, county: str | None, listed: int) -> list[Any]:
    """One statement: the count and summed ratio of each tenth, then the `listed` most and least used
    (ties by id), so no instrument's row leaves the database but those shown."""
    ratios = _ratios(period, county)
    # As int(ratio * 10) would, capped at the last tenth.
    tenth = case(*[(ratios.c.ratio * 10 >= n, n) for n in range(9, 0, -1)], else_=0)
    buckets = select(
        literal("bucket").label("part"), tenth, func.count(), func.sum(ratios.c.ratio), literal(0.0)
    ).group_by(tenth)
    ends = [
        select(
            literal(part).label("part"), ratios.c.id, ratios.c.seconds, ratios.c.open_hours, ratios.c.ratio
        )
        .order_by(order, ratios.c.id)
        .limit(listed)
        .subquery()
        for part, order in (("top", ratios.c.ratio.desc()), ("bottom", ratios.c.ratio))
    ]
    stmt = union_all(buckets, *(select(*end.c) for end in ends))
    return list(db.session.execute(stmt))


def utilisation(period: Period, county: str | None = None, listed: int = 10) -> Utilisation:
    """Booked hours ÷ open hours per instrument with opening hours: a distribution and both ends."""
    rows = _utilisation_rows(period, county, listed)
    counts = {int(r[1]): (int(r[2]), float(r[3] or 0)) for r in rows if r[0] == "bucket"}
    ends: dict[str, list[tuple[int, float, float]]] = {"top": [], "bottom": []}
    for part, instrument_id, seconds, open_hours, _ratio in rows:
        if part in ends:
            ends[part].append((instrument_id, int(seconds) / 3600, float(open_hours)))
    labels = [f"{int(low * 100)}–{int(low * 100) + 10}%" for low in UTILISATION_BUCKETS]
    labels[-1] = "90%+"
    names = _instrument_names({r[0] for r in ends["top"] + ends["bottom"]})
    instruments = sum(n for n, _total in counts.values())
    total = sum(ratio for _n, ratio in counts.values())
    return Utilisation(
        [(labels[i], counts.get(i, (0, 0.0))[0]) for i in range(10)],
        [UtilisationRow(i, *names[i], hours, open_hours) for i, hours, open_hours in ends["top"]],
        [UtilisationRow(i, *names[i], hours, open_hours) for i, hours, open_hours in ends["bottom"]],
        instruments,
        total / instruments if instruments else 0.0,
    )


def _instrument_names(ids: set[int]) -> dict[int, tuple[str, str, str]]:
    """(code, name, host institution) of a few instruments."""
    rows = db.session.execute(
        select(Instrument.id, Instrument.code, Instrument.name, Institution.name)
        .join(Institution, Institution.id == Instrument.institution_id)
        .where(Instrument.id.in_(ids))
    )
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _bookings_by(key: Any, period: Period, county: str | None) -> list[tuple[Any, int]]:
    """The months' bookings summed per `key` (the county or the first-level category)."""
    total = func.sum(MonthTotal.bookings)
    query = (
        select(key, total)
        .where(_month_rows(MonthTotal.month, period.months))
        .group_by(key)
        .having(total > 0)
        .order_by(total.desc(), key)
    )
    if county:
        query = query.where(MonthTotal.county == county)
    return [(k, int(n)) for k, n in db.session.execute(query)]


def bookings_by_county(period: Period, county: str | None = None) -> list[tuple[str, int]]:
    return _bookings_by(MonthTotal.county, period, county)


def bookings_by_category(period: Period, county: str | None = None) -> list[tuple[str, int]]:
    """Per first-level category (the two-digit code prefix)."""
    counts = _bookings_by(MonthTotal.category_group, period, county)
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


def last_twelve_months(today: date) -> list[str]:
    """This Beijing month and the eleven before it."""
    index = today.year * 12 + today.month - 1
    return [f"{(index - back) // 12:04d}-{(index - back) % 12 + 1:02d}" for back in range(11, -1, -1)]


def public_headline(today: date) -> Headline:
    """The network in numbers over the last twelve months (this one included), for the public page."""
    months = last_twelve_months(today)
    services, record_seconds = db.session.execute(
        select(
            func.coalesce(func.sum(MonthTotal.services), 0),
            func.coalesce(func.sum(MonthTotal.record_seconds), 0),
        ).where(_month_rows(MonthTotal.month, months))
    ).one()
    served = db.session.scalar(
        select(func.count(distinct(CustomerTally.enterprise_id))).where(
            _month_rows(CustomerTally.period, months), CustomerTally.services > 0
        )
    )
    approved = db.session.scalar(
        select(func.coalesce(func.sum(SubsidyTally.approved_fen), 0)).where(
            SubsidyTally.month >= months[0], SubsidyTally.month <= months[-1]
        )
    )
    return Headline(
        db.session.execute(select(func.count()).select_from(Instrument)).scalar_one(),
        db.session.execute(select(func.count(distinct(Instrument.institution_id)))).scalar_one(),
        served or 0,
        int(services),
        int(record_seconds) / 3600,
        int(approved or 0),
    )


def most_used(today: date, limit: int = 10) -> list[tuple[str, str, str, float, int]]:
    """(code, name, institution, booked hours, bookings) of the most booked instruments over the last
    twelve months (this month's confirmed bookings included), from the booking tallies."""
    seconds = func.sum(BookingTally.booked_seconds)
    ranked = (
        select(
            BookingTally.instrument_id,
            seconds.label("seconds"),
            func.sum(BookingTally.bookings).label("bookings"),
        )
        .where(_month_rows(BookingTally.month, last_twelve_months(today)), BookingTally.bookings > 0)
        .group_by(BookingTally.instrument_id)
        .order_by(seconds.desc(), BookingTally.instrument_id)
        .limit(limit)
        .subquery()
    )
    rows = db.session.execute(
        select(Instrument.code, Instrument.name, Institution.name, ranked.c.seconds, ranked.c.bookings)
        .join(ranked, ranked.c.instrument_id == Instrument.id)
        .join(Institution, Institution.id == Instrument.institution_id)
        .order_by(ranked.c.seconds.desc(), Instrument.code)
    ).all()
    return [(c, n, i, int(s) / 3600, int(b)) for c, n, i, s, b in rows]
