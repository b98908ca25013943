"""The national reports of a year: who may read which institution's, the instrument and service
records in the national field names, and the yearly evaluation of effective hours.

Providers read their own institution's reports only; reviewers and administrators read every one.
Only instruments worth REPORTING_MIN_VALUE_FEN or more are reported and evaluated (the national rule).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import Select, and_, func, select
from sqlalchemy.orm import aliased

from portal.accounts.models import Enterprise, Institution, User
from portal.booking.models import Booking, BookingState, ServiceRecord
from portal.catalog import price_import, prices
from portal.catalog.models import Category, Instrument, InstrumentPhoto
from portal.catalog.price_text import format_price_table
from portal.core.errors import Forbidden, NotFound
from portal.core.money import fen_to_yuan
from portal.core.paging import Page, paginate
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting import hours as hours_
from portal.reporting import nrii
from portal.reporting.hours import Hours, Scope, YearHours
from portal.usage import periods, tallies
from portal.usage.models import UsageTally

READERS = (Role.PROVIDER, Role.REVIEWER, Role.ADMIN)


def report_scope(user: User, institution_id: int | None = None, county: str | None = None) -> Scope:
    """The institutions the user may read, narrowed to the one asked for: a provider's own only."""
    if user.role not in READERS:
        raise Forbidden(_("Only providers and the bureau's reviewers read the national reports."))
    if user.role is Role.PROVIDER:
        if institution_id is not None and institution_id != user.institution_id:
            raise Forbidden(_("You can read the reports of your own institution only."))
        return Scope(user.institution_id, county)
    if institution_id is not None and db.session.get(Institution, institution_id) is None:
        raise NotFound(_("There is no such institution."))
    return Scope(institution_id, county)


def institutions_to_choose(user: User) -> list[Institution]:
    """The institutions the user picks a report of: none for a provider (their own is the only one)."""
    if user.role is Role.PROVIDER:
        return []
    return list(db.session.scalars(select(Institution).order_by(Institution.name)))


def scoped_institution(user: User, institution_id: int) -> Institution:
    """The institution, if the user may read its reports; NotFound for an unknown one."""
    report_scope(user, institution_id)
    return db.session.get_one(Institution, institution_id)


def reported_instruments(scope: Scope) -> Select:
    """The instruments the scope reports (worth the national threshold or more), in code order."""
    stmt = (
        select(Instrument, Category.code)
        .join(Category, Category.id == Instrument.category_id)
        .where(Instrument.original_value_fen >= current_app.config["REPORTING_MIN_VALUE_FEN"])
        .order_by(Instrument.code)
    )
    return scope.where(stmt)


def portal_url(endpoint: str, **values: Any) -> str:
    """An absolute address here, always under PORTAL_BASE_URL (in a request or not), so a report's
    bytes do not depend on the address it was asked at, nor on where it was made."""
    path = current_app.url_map.bind("localhost").build(endpoint, values)
    return current_app.config["PORTAL_BASE_URL"].rstrip("/") + path


def _fee_texts(instruments: list[Instrument]) -> dict[int, str]:
    tables = price_import.all_price_tables() if len(instruments) > 100 else None
    texts = {}
    for instrument in instruments:
        if tables is not None:
            rows = tables.get(instrument.id) or [
                p.as_json()
                for p in prices.legacy_prices(instrument.fee_per_hour_fen, instrument.fee_per_sample_fen)
            ]
        else:
            rows = [p.as_json() for p in prices.price_table(instrument)]
        texts[instrument.id] = format_price_table(rows)
    return texts


def _main_photos(ids: list[int]) -> dict[int, str]:
    rows = db.session.execute(
        select(InstrumentPhoto.instrument_id, InstrumentPhoto.stored_name).where(
            InstrumentPhoto.instrument_id.in_(ids), InstrumentPhoto.is_main
        )
    )
    return {instrument_id: name for instrument_id, name in rows}


def instrument_items(rows: list[Any], year_hours: YearHours) -> list[dict[str, Any]]:
    """(instrument, category code) rows as national instrument records with the year's hours."""
    instruments = [r[0] for r in rows]
    fees = _fee_texts(instruments)
    photos = _main_photos([i.id for i in instruments])
    items = []
    for instrument, category_code in rows:
        hours = year_hours.of(instrument.id)
        photo = photos.get(instrument.id)
        facts = nrii.InstrumentFacts(
            category_code=category_code,
            fee_text=fees[instrument.id],
            service_url=portal_url("catalog.detail", code=instrument.code),
            image_url=portal_url("catalog.photo", code=instrument.code, name=photo) if photo else None,
            run_hours=hours.effective_hours,
            service_hours=hours.service_hours,
        )
        items.append(nrii.instrument_record(instrument, facts))
    return items


def instrument_page(scope: Scope, year: int, page: int, per_page: int) -> Page[dict[str, Any]]:
    """One page of the national instrument records, with the year's run and service hours."""
    rows: Page[Any] = paginate(reported_instruments(scope), page, per_page, item=lambda *r: r)
    return Page(instrument_items(rows.items, hours_.year_hours(year, scope)), rows.total, page, per_page)


def all_instruments(scope: Scope, year: int, year_hours: YearHours | None = None) -> list[dict[str, Any]]:
    """Every national instrument record of the scope (exports), with the year's hours (counted here
    unless the caller has them)."""
    rows = list(db.session.execute(reported_instruments(scope)))
    return instrument_items(rows, year_hours or hours_.year_hours(year, scope))


SERVICE_COLUMNS = (
    ServiceRecord.id.label("record_id"),
    Instrument.code.label("instrument_code"),
    Instrument.institution_id.label("institution_id"),
    Booking.mode.label("mode"),
    Booking.operation.label("operation"),
    Booking.tier.label("tier"),
    Booking.purpose_category.label("purpose_category"),
    Booking.starts_at.label("starts_at"),
    Booking.ends_at.label("ends_at"),
    ServiceRecord.recorded_at.label("recorded_at"),
    ServiceRecord.fee_fen.label("fee_fen"),
    ServiceRecord.hours.label("hours"),
    ServiceRecord.samples.label("samples"),
    ServiceRecord.service_way.label("service_way"),
    ServiceRecord.rating.label("rating"),
    func.coalesce(func.nullif(User.full_name, ""), User.username).label("applicant"),
    Enterprise.name.label("enterprise_name"),
)


def service_rows(scope: Scope, year: int) -> Select:
    """The year's completed services of the scope's reported instruments, in the order they happened."""
    start, end = hours_.year_bounds(year)
    metered = tallies.metered_subquery(start, end, scope)
    stmt = (
        select(*SERVICE_COLUMNS, metered.c.hours.label("metered_hours"))
        .select_from(ServiceRecord)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .join(Enterprise, Enterprise.id == Booking.enterprise_id)
        .join(User, User.id == Booking.requested_by_id)
        .outerjoin(metered, metered.c.booking_id == Booking.id)
        .where(
            Booking.state == BookingState.COMPLETED,
            periods.service_period_filter(start, end),
            Instrument.original_value_fen >= current_app.config["REPORTING_MIN_VALUE_FEN"],
        )
        .order_by(Booking.starts_at, ServiceRecord.recorded_at, ServiceRecord.id)
    )
    return scope.of_instruments(stmt, Booking.instrument_id)


SERVICE_NAMES = [c.name for c in SERVICE_COLUMNS] + ["metered_hours"]


def service_item(*row: Any) -> dict[str, Any]:
    """A row of service_rows as a national service record."""
    values = dict(zip(SERVICE_NAMES, row, strict=True))
    values["mode"] = str(values["mode"])
    if values["metered_hours"] is not None:
        values["metered_hours"] = hours_.as_hours(values["metered_hours"])
    return nrii.service_record(values)


def service_page(scope: Scope, year: int, page: int, per_page: int) -> Page[dict[str, Any]]:
    return paginate(service_rows(scope, year), page, per_page, item=service_item)


def all_services(scope: Scope, year: int) -> Iterator[dict[str, Any]]:
    """Every service of the year, streamed (exports), on a connection of its own: a streamed download
    reads on after its request has ended and its session has been closed (and, on PostgreSQL, its
    server-side cursor with it)."""
    stmt = service_rows(scope, year)
    with db.engine.connect() as connection:
        for row in connection.execution_options(yield_per=2000).execute(stmt):
            yield service_item(*row)


# --- the evaluation ---------------------------------------------------------------------------


@dataclass
class InstrumentScore:
    instrument: Instrument
    institution_name: str
    hours: Hours
    norm_hours: int

    @property
    def below_norm(self) -> bool:
        return self.hours.effective_hours < self.norm_hours


@dataclass
class InstitutionScore:
    institution_id: int
    name: str
    instruments: list[InstrumentScore] = field(default_factory=list)

    def total(self, attribute: str) -> Any:
        return sum((getattr(s.hours, attribute) for s in self.instruments), start=Decimal(0))

    def average(self, attribute: str) -> Decimal:
        if not self.instruments:
            return Decimal(0)
        return (self.total(attribute) / len(self.instruments)).quantize(hours_.CENT)

    @property
    def below_norm(self) -> int:
        return sum(1 for s in self.instruments if s.below_norm)


@dataclass
class Evaluation:
    year: int
    scope: Scope
    instruments: list[InstrumentScore]
    institutions: list[InstitutionScore]
    national_effective_hours: int
    national_external_hours: int

    @property
    def under_used(self) -> list[InstrumentScore]:
        """Below their norm, the least used first."""
        return sorted(
            (s for s in self.instruments if s.below_norm),
            key=lambda s: (s.hours.effective_hours, s.instrument.code),
        )


def evaluation_rows(scope: Scope) -> Select:
    return (
        reported_instruments(scope)
        .add_columns(Institution.name)
        .join(Institution, Institution.id == Instrument.institution_id)
    )


def _scored(year: int, rows: list[Any], scope: Scope | None = None) -> list[InstrumentScore]:
    """(instrument, institution name) rows with their year from the tallies: read for the scope when
    the rows are all of it, else for these instruments only."""
    wanted = scope or Scope(instrument_ids=tuple(instrument.id for instrument, _name in rows))
    year_hours = hours_.tallied_year_hours(year, wanted)
    return [
        InstrumentScore(instrument, name, year_hours.of(instrument.id), hours_.norm_hours(instrument))
        for instrument, name in rows
    ]


def evaluate(scope: Scope, year: int) -> Evaluation:
    """Every reported instrument's year against its norm, and each institution's totals, from the
    usage tallies' year rows (the exports, the API and the score sheets: every instrument listed)."""
    scores = _scored(
        year, [(i, name) for i, _code, name in db.session.execute(evaluation_rows(scope))], scope
    )
    institutions: dict[int, InstitutionScore] = {}
    for score in scores:
        key = score.instrument.institution_id
        institutions.setdefault(key, InstitutionScore(key, score.institution_name)).instruments.append(score)
    config = current_app.config
    return Evaluation(
        year,
        scope,
        scores,
        sorted(institutions.values(), key=lambda i: i.name),
        config["REPORTING_NATIONAL_EFFECTIVE_HOURS"],
        config["REPORTING_NATIONAL_EXTERNAL_HOURS"],
    )


# The page shows each institution's totals and the least used instruments: both come from the
# tallies' year rows (one per instrument), summed and sorted by the database, so a province of
# 100,000 instruments costs two queries, and only the instruments the page lists are loaded.
UNDER_USED_SHOWN = 50


@dataclass
class InstitutionTotals:
    institution_id: int
    name: str
    instruments: int
    effective_seconds: int
    external_seconds: int
    sme_seconds: int
    income_fen: int
    below_norm: int

    def _average(self, total_seconds: int) -> Decimal:
        return (Decimal(total_seconds) / 3600 / max(self.instruments, 1)).quantize(hours_.CENT)

    @property
    def effective_average(self) -> Decimal:
        return self._average(self.effective_seconds)

    @property
    def external_average(self) -> Decimal:
        return self._average(self.external_seconds)

    @property
    def sme_hours(self) -> Decimal:
        return hours_.hours_of(self.sme_seconds)


@dataclass
class Overview:
    year: int
    scope: Scope
    institutions: list[InstitutionTotals]
    under_used: list[InstrumentScore]  # the least used first, at most UNDER_USED_SHOWN
    under_used_count: int
    national_effective_hours: int
    national_external_hours: int


def _institution_totals(scope: Scope, year: int) -> tuple[list[InstitutionTotals], int]:
    """Each institution's totals over its reported instruments, and how many have no use at all."""
    tally = aliased(UsageTally)
    effective = func.coalesce(tally.effective_seconds, 0)
    totals = scope.where(
        select(
            Instrument.institution_id,
            Institution.name,
            func.count(),
            func.sum(effective),
            func.sum(func.coalesce(tally.external_seconds, 0)),
            func.sum(func.coalesce(tally.sme_seconds, 0)),
            func.sum(func.coalesce(tally.income_fen, 0)),
            func.count().filter(effective < hours_.norm_seconds()),
            func.count().filter(tally.id.is_(None)),
        )
        .join(Institution, Institution.id == Instrument.institution_id)
        .outerjoin(tally, and_(tally.instrument_id == Instrument.id, tally.period == str(year)))
        .where(Instrument.original_value_fen >= current_app.config["REPORTING_MIN_VALUE_FEN"])
        .group_by(Instrument.institution_id, Institution.name)
        .order_by(Institution.name)
    )
    rows = db.session.execute(totals).all()
    institutions = [InstitutionTotals(r[0], r[1], r[2], *(int(v or 0) for v in r[3:8])) for r in rows]
    return institutions, sum(r[8] for r in rows)


def _least_used(scope: Scope, year: int, some_unused: bool) -> list[Any]:
    """(instrument, institution name) of the UNDER_USED_SHOWN least used reported instruments below
    their norm: those without any use first (code order), then the year's rows in the order of the
    (period, effective seconds) index, so a province's 100,000 instruments are never sorted."""
    listed = scope.where(
        select(Instrument, Institution.name)
        .join(Institution, Institution.id == Instrument.institution_id)
        .where(Instrument.original_value_fen >= current_app.config["REPORTING_MIN_VALUE_FEN"])
        .limit(UNDER_USED_SHOWN)
    )
    least: list[Any] = []
    if some_unused:
        unused = (
            ~select(UsageTally.id)
            .where(UsageTally.instrument_id == Instrument.id, UsageTally.period == str(year))
            .exists()
        )
        least = list(db.session.execute(listed.where(unused).order_by(Instrument.code)))
    if len(least) < UNDER_USED_SHOWN:
        tally = aliased(UsageTally)
        used = (
            listed.join(tally, tally.instrument_id == Instrument.id)
            .where(tally.period == str(year), tally.effective_seconds < hours_.norm_seconds())
            .order_by(tally.effective_seconds, Instrument.code)
            .limit(UNDER_USED_SHOWN - len(least))
        )
        least += db.session.execute(used).all()
    return least


def evaluation_overview(scope: Scope, year: int) -> Overview:
    """What the evaluation page shows: each institution's totals and the least used instruments, from
    the tallies' year rows, with only the listed instruments loaded."""
    institutions, unused = _institution_totals(scope, year)
    least = _least_used(scope, year, unused > 0)
    config = current_app.config
    return Overview(
        year,
        scope,
        institutions,
        _scored(year, least),
        sum(i.below_norm for i in institutions),
        config["REPORTING_NATIONAL_EFFECTIVE_HOURS"],
        config["REPORTING_NATIONAL_EXTERNAL_HOURS"],
    )


def evaluation_page(scope: Scope, year: int, page: int, per_page: int) -> Page[InstrumentScore]:
    """One page of the evaluation's instruments (code order), each with its year from the tallies:
    only the page's instruments are loaded, whatever the size of the province."""
    rows: Page[Any] = paginate(evaluation_rows(scope), page, per_page, item=lambda i, _code, name: (i, name))
    scores = _scored(year, rows.items)
    return Page(scores, rows.total, page, per_page)


def evaluation_item(score: InstrumentScore) -> dict[str, Any]:
    """One instrument's evaluation in the API's names."""
    h = score.hours
    return {
        "instrument_code": score.instrument.code,
        "institution_id": score.instrument.institution_id,
        "effective_hours": float(h.effective_hours),
        "run_hours": float(h.run_hours),
        "service_hours": float(h.service_hours),
        "external_service_hours": float(h.external_service_hours),
        "sme_service_hours": float(h.sme_service_hours),
        "income_fen": h.income_fen,
        "users_served": h.users_served,
        "rating_avg": None if h.rating_avg is None else float(h.rating_avg),
        "norm_hours": score.norm_hours,
        "below_norm": score.below_norm,
        "measured_by": {source: float(value) for source, value in h.measured_by.items()},
    }


EVALUATION_HEADERS = (
    "仪器编号",
    "仪器名称",
    "依托单位",
    "有效机时",
    "运行机时",
    "服务机时",
    "对外服务机时",
    "服务中小企业机时",
    "服务收入(元)",
    "服务用户数",
    "平均评价",
    "定额机时",
    "未达定额",
    "计量方式",
)


def evaluation_table(result: Evaluation) -> Iterator[list[Any]]:
    """The evaluation as file rows: a header, then one row per instrument."""
    yield list(EVALUATION_HEADERS)
    for score in result.instruments:
        h = score.hours
        yield [
            score.instrument.code,
            score.instrument.name,
            score.institution_name,
            h.effective_hours,
            h.run_hours,
            h.service_hours,
            h.external_service_hours,
            h.sme_service_hours,
            fen_to_yuan(h.income_fen),
            h.users_served,
            h.rating_avg,
            score.norm_hours,
            "是" if score.below_norm else "否",
            "；".join(f"{MEASURES[k]} {v}" for k, v in h.measured_by.items()),
        ]


MEASURES = {"metered": "计量", "service_records": "服务记录", "internal_use": "内部使用"}
