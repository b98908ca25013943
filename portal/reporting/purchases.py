"""The purchase check (查重评议): before public money buys an instrument, a reviewer looks at the city's
instruments of the same category and how much they ran in the last full year. One that ran fewer
effective hours than PURCHASE_CHECK_MIN_HOURS is flagged: the city may share it instead of buying.
The check is kept, with the reviewer's conclusion, as it was decided (append-only, audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import Institution, User
from portal.catalog.models import Category, Instrument
from portal.core import audit, clock
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.paging import Page, paginate
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting import hours as hours_
from portal.reporting.hours import Scope
from portal.reporting.models import PurchaseCheck

CHECKERS = (Role.REVIEWER, Role.ADMIN)
MAX_NAME, MAX_SPECS, MAX_CONCLUSION = 120, 2000, 2000


@dataclass(frozen=True)
class PlannedPurchase:
    category_code: str
    name: str
    key_specs: str
    price_fen: int
    conclusion: str = ""


def _require_checker(user: User) -> None:
    if user.role not in CHECKERS:
        raise Forbidden(_("Only the bureau's reviewers check planned purchases."))


def last_full_year() -> int:
    return clock.local_today().year - 1


def _category(code: str) -> Category:
    category = db.session.scalar(select(Category).where(Category.code == code))
    if category is None:
        message = _("Unknown category code “%(code)s”.", code=code)
        raise ValidationFailed(message, {"category_code": message})
    return category


def findings(category_code: str, year: int) -> list[dict[str, Any]]:
    """The city's instruments of the category (a first-level code takes its children too), each with
    its effective hours of the year, utilisation against its norm, and whether it is under-used; the
    least used first."""
    _category(category_code)
    threshold = current_app.config["PURCHASE_CHECK_MIN_HOURS"]
    stmt = (
        select(Instrument, Institution.name)
        .join(Category, Category.id == Instrument.category_id)
        .join(Institution, Institution.id == Instrument.institution_id)
        .where(Category.code.like(f"{category_code}%"))
    )
    rows = db.session.execute(stmt).all()
    # Counted from the records (a check is a record of its day), for these instruments only.
    year_hours = hours_.year_hours(year, Scope(instrument_ids=tuple(i.id for i, _name in rows)))
    out = []
    for instrument, institution_name in rows:
        effective = year_hours.of(instrument.id).effective_hours
        norm = hours_.norm_hours(instrument)
        out.append(
            {
                "code": instrument.code,
                "name": instrument.name,
                "institution": institution_name,
                "effective_hours": f"{effective}",
                "utilisation": f"{(effective / norm * 100).quantize(Decimal('0.1'))}",
                "under_used": effective < threshold,
            }
        )
    return sorted(out, key=lambda f: (Decimal(f["effective_hours"]), f["code"]))


def _check(planned: PlannedPurchase, *, concluding: bool) -> None:
    problems: dict[str, str] = {}
    if not planned.name.strip():
        problems["name"] = _("Name the planned instrument.")
    elif len(planned.name) > MAX_NAME:
        problems["name"] = _("At most %(n)d characters.", n=MAX_NAME)
    if len(planned.key_specs) > MAX_SPECS:
        problems["key_specs"] = _("At most %(n)d characters.", n=MAX_SPECS)
    if planned.price_fen <= 0:
        problems["price"] = _("Give the planned price.")
    if concluding and not planned.conclusion.strip():
        problems["conclusion"] = _("Write the conclusion of the check.")
    elif len(planned.conclusion) > MAX_CONCLUSION:
        problems["conclusion"] = _("At most %(n)d characters.", n=MAX_CONCLUSION)
    if problems:
        raise ValidationFailed(_("Please correct the marked fields."), problems)


def preview(user: User, planned: PlannedPurchase) -> list[dict[str, Any]]:
    """What a check of this purchase finds, before the reviewer concludes."""
    _require_checker(user)
    _check(planned, concluding=False)
    return findings(planned.category_code, last_full_year())


def record_check(user: User, planned: PlannedPurchase) -> PurchaseCheck:
    """Store the check with what it found and the reviewer's conclusion (audited)."""
    _require_checker(user)
    _check(planned, concluding=True)
    year = last_full_year()
    found = findings(planned.category_code, year)
    row = PurchaseCheck(
        category_code=planned.category_code,
        name=planned.name.strip(),
        key_specs=planned.key_specs.strip(),
        price_fen=planned.price_fen,
        year=year,
        threshold_hours=current_app.config["PURCHASE_CHECK_MIN_HOURS"],
        findings=found,
        flagged=any(f["under_used"] for f in found),
        conclusion=planned.conclusion.strip(),
        reviewer_id=user.id,
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        "purchase_check.recorded",
        "purchase_check",
        row.id,
        after={"category": row.category_code, "name": row.name, "flagged": row.flagged, "found": len(found)},
        actor_id=user.id,
    )
    db.session.commit()
    return row


def get_check(user: User, check_id: int) -> PurchaseCheck:
    _require_checker(user)
    row = db.session.get(PurchaseCheck, check_id)
    if row is None:
        raise NotFound(_("There is no such purchase check."))
    return row


def checks(user: User, page: int = 1) -> Page[PurchaseCheck]:
    """The checks made, the latest first."""
    _require_checker(user)
    return paginate(select(PurchaseCheck).order_by(PurchaseCheck.id.desc()), page, 50)
