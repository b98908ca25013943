"""The providers' yearly ranking (basis of the post-subsidy, 后补助): one GROUP BY, scored in Python.

The measures are summed by the database over the service records of a calendar year in Beijing time;
only the normalisation and the score (a handful of multiplications per row) happen here. The county
filter is where the service happened (the instrument's county), as on the rest of the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, distinct, func, null, select

from portal.accounts.models import Institution
from portal.booking.models import Booking, ServiceRecord
from portal.catalog.models import Instrument
from portal.extensions import db
from portal.finance.services import month_range
from portal.vouchers.models import DEFAULT_RANKING_WEIGHTS, Scheme

LEVELS = ("institution", "instrument")
MEASURES = tuple(DEFAULT_RANKING_WEIGHTS)  # hours, samples, fees, enterprises, rating
MAX_RATING = Decimal(5)
SCORE_PLACES = Decimal("0.0001")
RATING_PLACES = Decimal("0.01")


@dataclass
class RankRow:
    id: int
    name: str
    institution: str | None  # the host, for instruments
    hours: Decimal
    samples: int
    fees_fen: int
    services: int
    enterprises: int
    rating: Decimal | None  # average of the rated services, two places
    ratings: int
    score: Decimal = Decimal(0)
    rank: int = 0


def year_range(year: int) -> tuple[datetime, datetime]:
    """The calendar year in Beijing time as a half-open range of UTC instants."""
    return month_range(f"{year:04d}-01")[0], month_range(f"{year:04d}-12")[1]


def weights_for(year: int) -> dict[str, Decimal]:
    """The weights the scheme of `year` sets, or the defaults when there is no scheme."""
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == year))
    return scheme.ranking_weight_values if scheme is not None else dict(DEFAULT_RANKING_WEIGHTS)


def _decimal(value: Any) -> Decimal:
    """SUM of a NUMERIC comes back as Decimal on PostgreSQL and may be a float on SQLite."""
    if value is None:
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value)).quantize(RATING_PLACES)


def _aggregates(year: int, level: str, county: str | None):
    """One row per institution or instrument with services in the year: the summed measures."""
    start, end = year_range(year)
    key = Instrument.institution_id if level == "institution" else Booking.instrument_id
    totals = (
        select(
            key.label("key"),
            func.sum(func.coalesce(ServiceRecord.hours, 0), type_=Numeric(14, 2)).label("hours"),
            func.sum(func.coalesce(ServiceRecord.samples, 0)).label("samples"),
            func.sum(ServiceRecord.fee_fen).label("fees_fen"),
            func.count(ServiceRecord.id).label("services"),
            func.count(distinct(Booking.enterprise_id)).label("enterprises"),
            func.sum(ServiceRecord.rating).label("rating_sum"),
            func.count(ServiceRecord.rating).label("ratings"),
        )
        .select_from(ServiceRecord)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .where(ServiceRecord.recorded_at >= start, ServiceRecord.recorded_at < end)
        .group_by(key)
    )
    # The instruments are only joined when needed: grouping by booking.instrument_id needs no join.
    if level == "institution" or county:
        totals = totals.join(Instrument, Instrument.id == Booking.instrument_id)
    if county:
        totals = totals.where(Instrument.county == county)
    grouped = totals.subquery()
    # Names are joined once per group, after the aggregation, not once per service record.
    if level == "institution":
        stmt = select(
            grouped, Institution.name.label("name"), null().label("code"), null().label("host")
        ).join(Institution, Institution.id == grouped.c.key)
    else:
        stmt = (
            select(grouped, Instrument.name, Instrument.code, Institution.name.label("host"))
            .join(Instrument, Instrument.id == grouped.c.key)
            .join(Institution, Institution.id == Instrument.institution_id)
        )
    return db.session.execute(stmt)


def ranking(
    year: int,
    level: str = "institution",
    weights: dict[str, Decimal] | None = None,
    county: str | None = None,
) -> list[RankRow]:
    """Institutions or instruments ranked by their weighted, normalised service of `year`.

    Score = Σ weight × value / max (the maximum among the ranked rows; the rating over 5), so the
    best provider in every measure scores the sum of the weights. Ties go by name.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    weights = weights if weights is not None else weights_for(year)
    rows = [
        RankRow(
            id=r.key,
            name=r.name if r.code is None else f"{r.name} ({r.code})",
            institution=r.host,
            hours=_decimal(r.hours),
            samples=int(r.samples or 0),
            fees_fen=int(r.fees_fen or 0),
            services=int(r.services),
            enterprises=int(r.enterprises),
            rating=(Decimal(int(r.rating_sum)) / r.ratings).quantize(RATING_PLACES) if r.ratings else None,
            ratings=int(r.ratings),
        )
        for r in _aggregates(year, level, county)
    ]
    _score(rows, weights)
    rows.sort(key=lambda row: (-row.score, row.name))
    for position, row in enumerate(rows, start=1):
        row.rank = position
    return rows


def measure_values(row: RankRow) -> dict[str, Decimal]:
    """The five measures of a row as Decimals (a missing rating counts as 0)."""
    return {
        "hours": row.hours,
        "samples": Decimal(row.samples),
        "fees": Decimal(row.fees_fen),
        "enterprises": Decimal(row.enterprises),
        "rating": row.rating if row.rating is not None else Decimal(0),
    }


def _score(rows: list[RankRow], weights: dict[str, Decimal]) -> None:
    values = [measure_values(row) for row in rows]
    # The rating has a fixed scale; the other measures are relative to the best row this year.
    scale = {key: max((v[key] for v in values), default=Decimal(0)) for key in MEASURES}
    scale["rating"] = MAX_RATING
    for row, value in zip(rows, values, strict=True):
        total = sum(
            (Decimal(weights.get(key, 0)) * value[key] / scale[key] for key in MEASURES if scale[key] > 0),
            Decimal(0),
        )
        row.score = total.quantize(SCORE_PLACES)
