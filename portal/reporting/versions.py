"""Rows kept as numbered versions per institution and year (final reports, signed score sheets).

Each is only ever added: version 1, 2, … . Two writers racing for the same number are decided by the
table's unique (institution, year, version): the loser is told to look again, and nothing is written.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.core import audit
from portal.core.errors import ValidationFailed
from portal.extensions import db

V = TypeVar("V")


def versions_of(model: type[V], institution_id: int, year: int) -> list[V]:
    """Every version of the institution's year, the latest first."""
    table: Any = model
    return list(
        db.session.scalars(
            select(model)
            .where(table.institution_id == institution_id, table.year == year)
            .order_by(table.version.desc())
        )
    )


def next_version(model: type[Any], institution_id: int, year: int) -> int:
    latest = next(iter(versions_of(model, institution_id, year)), None)
    return (latest.version if latest else 0) + 1


def add_version(row: V, raced: str, action: str, object_type: str, after: dict[str, Any], actor_id: int) -> V:
    """Write the new version with its audit row; `raced` is what the loser of a race is told."""
    version: Any = row
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:  # another writer took this number a moment ago
        db.session.rollback()
        raise ValidationFailed(raced) from None
    audit.record(
        action, object_type, f"{version.institution_id}/{version.year}", after=after, actor_id=actor_id
    )
    db.session.commit()
    return row
