"""Effective hours per instrument and year, and how each hour was measured.

A service's hours are its metered use where sessions measured it (check-in to check-out, or the
instrument PC's start to stop), else the hours on its service record; a metered service never counts
its record's hours as well. The owning institution's own use (internal use records) adds to the
effective hours; use an instrument PC reported without any booking or record adds only to the hours
the instrument ran (it may be idle running, or use nobody recorded). A service belongs to the year of
its start in Beijing time (a sample service: of its record). Open sessions do not count yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from flask import current_app
from sqlalchemy import case

from portal.catalog.models import Instrument
from portal.usage import tallies
from portal.usage.periods import Scope
from portal.usage.tallies import year_bounds

__all__ = ["Scope", "year_bounds"]

ZERO = Decimal(0)
CENT = Decimal("0.01")


def norm_hours(instrument: Instrument) -> int:
    """The instrument's yearly norm of effective hours: the specialised or the general one."""
    general, specialised = _norms()
    return specialised if instrument.specialised else general


def norm_seconds() -> Any:
    """The same norm as a SQL expression over Instrument, in seconds (to compare with tally rows)."""
    general, specialised = _norms()
    return case((Instrument.specialised, specialised * 3600), else_=general * 3600)


def _norms() -> tuple[int, int]:
    config = current_app.config
    return int(config["REPORTING_NORM_HOURS_GENERAL"]), int(config["REPORTING_NORM_HOURS_SPECIALISED"])


def as_hours(value: Any) -> Decimal:
    """A sum from either backend (float from SQLite's julianday, Decimal from PostgreSQL) to 2 places."""
    if value is None:
        return ZERO
    return Decimal(str(value)).quantize(CENT)


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


def hours_of(value: int) -> Decimal:
    """Whole seconds as hours to 2 places."""
    return (Decimal(value) / 3600).quantize(CENT)


def _hours(instrument_id: int, figures: tallies.Figures) -> Hours:
    return Hours(
        instrument_id,
        metered_hours=hours_of(figures.metered_seconds),
        recorded_hours=hours_of(figures.recorded_seconds),
        internal_hours=hours_of(figures.internal_seconds),
        unbooked_hours=hours_of(figures.unbooked_seconds),
        external_service_hours=hours_of(figures.external_seconds),
        sme_service_hours=hours_of(figures.sme_seconds),
        income_fen=figures.income_fen,
        external_income_fen=figures.external_income_fen,
        services=figures.services,
        users_served=figures.enterprises,
        rating_total=figures.rating_total,
        ratings=figures.ratings,
    )


def year_hours(year: int, scope: Scope | None = None) -> YearHours:
    """Every instrument's hours, income and users of the year, within the scope, counted from the
    raw records (the national reports: exactly what the records say at this moment)."""
    out = YearHours(year)
    for instrument_id, figures in tallies.period_figures(*year_bounds(year), scope or Scope()).items():
        out.by_instrument[instrument_id] = _hours(instrument_id, figures)
    return out


def tallied_year_hours(year: int, scope: Scope | None = None) -> YearHours:
    """The same figures read from the usage tallies' year rows (the evaluation: one row per
    instrument, whatever the number of services)."""
    out = YearHours(year)
    for instrument_id, figures in tallies.tallied_figures(str(year), scope or Scope()).items():
        out.by_instrument[instrument_id] = _hours(instrument_id, figures)
    return out
