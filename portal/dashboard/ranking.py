"""The providers' yearly ranking (basis of the post-subsidy, 后补助): one GROUP BY, scored in Python.

The measures are summed by the database over the year's usage tally rows (portal.usage.tallies: one
per instrument and Beijing year, services counted in the year they took place, the hours as written
on their service records); only the normalisation and the score (a handful of multiplications per
row) happen here. An institution's enterprises served are distinct over its instruments (the customer
tallies). The county filter is where the service happened (the instrument's county), as on the rest
of the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, distinct, func, null, select

from portal.accounts.models import Institution
from portal.catalog.models import Instrument
from portal.extensions import db
from portal.usage.models import CustomerTally, UsageTally
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


def weights_for(year: int) -> dict[str, Decimal]:
    """The weights the scheme of `year` sets, or the defaults when there is no scheme."""
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == year))
    return scheme.ranking_weight_values if scheme is not None else dict(DEFAULT_RANKING_WEIGHTS)


def _totals(year: int, level: str, county: str | None) -> Select:
    """(key, seconds, samples, fees, services, enterprises, rating sum, ratings) per institution or
    instrument with services in the year, from the year's usage tally rows (one per instrument)."""
    measures = (
        UsageTally.record_seconds,
        UsageTally.samples,
        UsageTally.income_fen,
        UsageTally.services,
        UsageTally.enterprises,
        UsageTally.rating_total,
        UsageTally.ratings,
    )
    stmt: Select
    if level == "institution":
        stmt = select(Instrument.institution_id.label("key"), *(func.sum(m) for m in measures)).group_by(
            Instrument.institution_id
        )
    else:  # one row per instrument and year already: nothing to add up
        stmt = select(UsageTally.instrument_id.label("key"), *measures)
    stmt = stmt.join(Instrument, Instrument.id == UsageTally.instrument_id).where(
        UsageTally.period == str(year), UsageTally.services > 0
    )
    return stmt.where(Instrument.county == county) if county else stmt


def _aggregates(year: int, level: str, county: str | None, named: bool = True) -> list[Any]:
    """One row per institution or instrument with services in the year: its measures and, when
    `named`, its name; plain rows (a province's instruments are tens of thousands), columns as named
    below."""
    grouped = _totals(year, level, county).subquery()
    # Names are joined once per group, after the aggregation.
    if not named:
        stmt = select(grouped, null(), null(), null())
    elif level == "institution":
        stmt = select(grouped, Institution.name, null(), null()).join(
            Institution, Institution.id == grouped.c.key
        )
    else:
        stmt = (
            select(grouped, Instrument.name, Instrument.code, Institution.name)
            .join(Instrument, Instrument.id == grouped.c.key)
            .join(Institution, Institution.id == Instrument.institution_id)
        )
    # Core execution: the ORM's result processing costs more than the query for 40,000 rows.
    rows = db.session.connection().execute(stmt).all()
    if level == "institution":
        # An enterprise served at two instruments of one institution is one enterprise.
        served = _institution_customers(year, county)
        return [[*row[:ENTERPRISES], served.get(row[KEY], 0), *row[ENTERPRISES + 1 :]] for row in rows]
    return list(rows)


def _name(rows: list[list[Any]], level: str) -> None:
    """Fill in the names of these few rows (institution; or instrument, code and host)."""
    keys = [row[KEY] for row in rows]
    stmt: Select
    if level == "institution":
        stmt = select(Institution.id, Institution.name, null(), null()).where(Institution.id.in_(keys))
    else:
        stmt = (
            select(Instrument.id, Instrument.name, Instrument.code, Institution.name)
            .join(Institution, Institution.id == Instrument.institution_id)
            .where(Instrument.id.in_(keys))
        )
    names = {key: rest for key, *rest in db.session.execute(stmt)}
    for row in rows:
        row[NAME], row[CODE], row[HOST] = names[row[KEY]]


# The columns of an aggregate row, in order.
(KEY, SECONDS, SAMPLES, FEES, SERVICES, ENTERPRISES, RATING_SUM, RATINGS, NAME, CODE, HOST) = range(11)


def _institution_customers(year: int, county: str | None) -> dict[int, int]:
    """Distinct enterprises each institution served in the year (at the county's instruments)."""
    stmt = (
        select(CustomerTally.institution_id, func.count(distinct(CustomerTally.enterprise_id)))
        .where(CustomerTally.period == str(year), CustomerTally.services > 0)
        .group_by(CustomerTally.institution_id)
    )
    if county:
        stmt = stmt.where(CustomerTally.county == county)
    return {institution_id: count for institution_id, count in db.session.execute(stmt)}


def _rank_row(r: list[Any]) -> RankRow:
    return RankRow(
        id=r[KEY],
        name=r[NAME] if r[CODE] is None else f"{r[NAME]} ({r[CODE]})",
        institution=r[HOST],
        hours=(Decimal(int(r[SECONDS] or 0)) / 3600).quantize(RATING_PLACES),
        samples=int(r[SAMPLES] or 0),
        fees_fen=int(r[FEES] or 0),
        services=int(r[SERVICES]),
        enterprises=int(r[ENTERPRISES]),
        rating=(Decimal(int(r[RATING_SUM])) / r[RATINGS]).quantize(RATING_PLACES) if r[RATINGS] else None,
        ratings=int(r[RATINGS]),
    )


def _scale(raw: list[list[Any]]) -> dict[str, Decimal]:
    """The best value of each measure among the rows (the rating's scale is fixed)."""
    best = [
        max((int(r[column] or 0) for r in raw), default=0) for column in (SECONDS, SAMPLES, FEES, ENTERPRISES)
    ]
    return {
        "hours": (Decimal(best[0]) / 3600).quantize(RATING_PLACES),
        "samples": Decimal(best[1]),
        "fees": Decimal(best[2]),
        "enterprises": Decimal(best[3]),
        "rating": MAX_RATING,
    }


def _ranked(rows: list[RankRow], weights: dict[str, Decimal], scale: dict[str, Decimal]) -> list[RankRow]:
    _score(rows, weights, scale)
    rows.sort(key=lambda row: (-row.score, row.name))
    for position, row in enumerate(rows, start=1):
        row.rank = position
    return rows


def _checked(year: int, level: str, weights: dict[str, Decimal] | None) -> dict[str, Decimal]:
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")
    return weights if weights is not None else weights_for(year)


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
    weights = _checked(year, level, weights)
    raw = _aggregates(year, level, county)
    return _ranked([_rank_row(r) for r in raw], weights, _scale(raw))


# A float score differs from the exact one by the rounding of the average rating to cents (at most
# 0.005 × its weight ÷ 5) and float error: rows within this of the page's last float score may still
# rank above it once scored exactly, so they are scored exactly too.
FLOAT_MARGIN = 0.01


def ranking_top(
    year: int,
    level: str,
    weights: dict[str, Decimal] | None,
    county: str | None,
    limit: int,
) -> tuple[list[RankRow], int]:
    """The first `limit` rows of `ranking(...)` and how many rows it has, the same rows with the same
    exact scores and ranks, without scoring every one of a province's instruments exactly: a float
    score picks the candidates, and only they are scored in decimals."""
    weights = _checked(year, level, weights)
    raw = _aggregates(year, level, county, named=False)
    scale = _scale(raw)
    factors = {key: float(weights.get(key, 0)) / float(scale[key]) for key in MEASURES if scale[key] > 0}
    approx = [
        factors.get("hours", 0) * int(r[SECONDS] or 0) / 3600
        + factors.get("samples", 0) * int(r[SAMPLES] or 0)
        + factors.get("fees", 0) * int(r[FEES] or 0)
        + factors.get("enterprises", 0) * int(r[ENTERPRISES] or 0)
        + (factors.get("rating", 0) * int(r[RATING_SUM]) / r[RATINGS] if r[RATINGS] else 0)
        for r in raw
    ]
    if len(raw) > limit:
        cutoff = sorted(approx, reverse=True)[limit - 1] - FLOAT_MARGIN
        raw = [r for r, score in zip(raw, approx, strict=True) if score >= cutoff]
    raw = [list(r) for r in raw]
    _name(raw, level)  # ties go by name: only the candidates need theirs
    rows = _ranked([_rank_row(r) for r in raw], weights, scale)
    return rows[:limit], len(approx)


def measure_values(row: RankRow) -> dict[str, Decimal]:
    """The five measures of a row as Decimals (a missing rating counts as 0)."""
    return {
        "hours": row.hours,
        "samples": Decimal(row.samples),
        "fees": Decimal(row.fees_fen),
        "enterprises": Decimal(row.enterprises),
        "rating": row.rating if row.rating is not None else Decimal(0),
    }


def _score(rows: list[RankRow], weights: dict[str, Decimal], scale: dict[str, Decimal]) -> None:
    # The rating has a fixed scale; the other measures are relative to the best row this year.
    for row in rows:
        value = measure_values(row)
        total = sum(
            (Decimal(weights.get(key, 0)) * value[key] / scale[key] for key in MEASURES if scale[key] > 0),
            Decimal(0),
        )
        row.score = total.quantize(SCORE_PLACES)
