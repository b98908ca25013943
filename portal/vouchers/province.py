"""Out-of-province providers (DESIGN section 13): the evidence beside an enterprise's justification.

A service from a provider outside Shandong is subsidised only with the enterprise's written
justification that no networked instrument in the province can do it (the claim check
`out_of_province_justified` in `checks`). The claim form and the reviewer's page show, beside it, the
networked instruments of the same categories in Liaocheng and elsewhere in the province, so that both
see at once what the justification has to answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from portal.accounts.models import Institution
from portal.booking.models import ServiceRecord
from portal.catalog.models import Category, Instrument
from portal.extensions import db

# The evidence lists at most this many instruments of each area (the count says how many there are).
SHOWN = 50


@dataclass
class Alternatives:
    """The networked instruments in the province of the categories of some out-of-province services."""

    categories: list[Category]
    city: list[Instrument] = field(default_factory=list)
    city_count: int = 0
    province: list[Instrument] = field(default_factory=list)
    province_count: int = 0

    @property
    def count(self) -> int:
        return self.city_count + self.province_count


def alternatives_for(records: Iterable[ServiceRecord]) -> Alternatives | None:
    """The province's instruments that could have done these services, or None when their provider
    is in the province (nothing to justify)."""
    instruments = [r.booking.instrument for r in records]
    if not instruments or all(i.institution.in_province for i in instruments):
        return None
    category_ids = sorted({i.category_id for i in instruments})
    categories = list(db.session.scalars(select(Category).where(Category.id.in_(category_ids))))
    found = Alternatives(categories)
    for local in (True, False):
        where = (
            Instrument.category_id.in_(category_ids),
            Institution.in_province.is_(True),
            Institution.is_local.is_(local),
        )
        count = db.session.scalar(
            select(func.count()).select_from(Instrument).join(Institution).where(*where)
        )
        shown = list(
            db.session.scalars(
                select(Instrument)
                .join(Institution)
                .where(*where)
                .options(joinedload(Instrument.institution))
                .order_by(Instrument.county, Institution.name, Instrument.code)
                .limit(SHOWN)
            )
        )
        if local:
            found.city, found.city_count = shown, count or 0
        else:
            found.province, found.province_count = shown, count or 0
    return found
