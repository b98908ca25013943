"""Booking credit (信用, issue 18): violations are recorded when booking reports them, an enterprise
with too many in the scheme's window may not book online for a while, and a provider (of the
instrument) or a reviewer can waive a violation with a reason.

Booking sits below this area: it reports violations by `booking.signals.booking_violation` and asks
before every request by `booking.signals.booking_wanted`; both receivers are connected in
`portal.credit.init_app`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import Select, select, update
from sqlalchemy.orm import joinedload

from portal.accounts.members import users_of_enterprise
from portal.accounts.models import User
from portal.booking.models import Booking
from portal.booking.services import manages
from portal.catalog.models import Instrument
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, Suspended, ValidationFailed
from portal.core.paging import Page, paginate
from portal.core.permissions import Role
from portal.credit.models import DEFAULT_RULES, CreditRules, Violation, ViolationKind
from portal.credit.rules import Rules, suspended_until
from portal.extensions import db
from portal.notifications.services import notify
from portal.vouchers.schemes import current_scheme, require_scheme

WAIVERS = (Role.PROVIDER, Role.REVIEWER, Role.ADMIN)


def rules_in_force() -> Rules:
    """This year's scheme's rules; the defaults when it has none (or there is no scheme yet)."""
    scheme = current_scheme()
    row = db.session.get(CreditRules, scheme.id) if scheme else None
    values = {k: getattr(row, k) for k in DEFAULT_RULES} if row else DEFAULT_RULES
    return Rules(**values)


def _counting_times(enterprise_id: int) -> list[datetime]:
    return list(
        db.session.scalars(
            select(Violation.occurred_at).where(
                Violation.enterprise_id == enterprise_id, Violation.waived_at.is_(None)
            )
        )
    )


def enterprise_suspended_until(
    enterprise_id: int, now: datetime | None = None, rules: Rules | None = None
) -> datetime | None:
    """When the enterprise may book online again, or None if it may now (`rules`: those in force)."""
    return suspended_until(_counting_times(enterprise_id), rules or rules_in_force(), now or clock.utcnow())


@dataclass(frozen=True)
class CreditStatus:
    rules: Rules
    suspended_until: datetime | None
    violations: list[Violation]


def credit_status(user: User) -> CreditStatus:
    """The user's enterprise's record (every violation, newest first) and whether it is suspended."""
    if user.role is not Role.ENTERPRISE or user.enterprise_id is None:
        raise Forbidden(_("Only enterprise accounts have a booking credit record."))
    violations = db.session.scalars(
        select(Violation)
        .where(Violation.enterprise_id == user.enterprise_id)
        .options(joinedload(Violation.booking).joinedload(Booking.instrument))
        .order_by(Violation.occurred_at.desc(), Violation.id.desc())
    ).all()
    return CreditStatus(rules_in_force(), enterprise_suspended_until(user.enterprise_id), list(violations))


def suspension_message(until: datetime) -> str:
    return _(
        "Your enterprise may not book online until %(day)s because of repeated no-shows or late "
        "cancellations. Call the instrument's operator, or see your booking credit record.",
        day=clock.format_local(until, "%Y-%m-%d %H:%M"),
    )


def refuse_if_suspended(user: User, **_kw: Any) -> None:
    """Receiver of `booking_wanted`: a suspended enterprise's request is refused (409 suspended)."""
    if user.role is not Role.ENTERPRISE or user.enterprise_id is None:
        return
    until = enterprise_suspended_until(user.enterprise_id)
    if until is not None:
        raise Suspended(suspension_message(until), {"until": clock.iso_utc(until)})


def record_violation(booking: Booking, *, kind: str, at: datetime, **_kw: Any) -> None:
    """Receiver of `booking_violation`, in the booking's transaction: count it (once per booking and
    kind), audit it, and tell the enterprise if this suspends its booking."""
    counted = select(Violation.id).where(Violation.booking_id == booking.id, Violation.kind == kind)
    if db.session.scalar(counted) is not None:
        return  # a second report of the same violation
    rules = rules_in_force()  # read once: the no-show task and the demo record many in a row
    before = enterprise_suspended_until(booking.enterprise_id, at, rules)
    row = Violation(
        enterprise_id=booking.enterprise_id, booking_id=booking.id, kind=ViolationKind(kind), occurred_at=at
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        "credit.violation_recorded",
        "violation",
        row.id,
        after={"kind": kind, "booking": booking.id, "enterprise": booking.enterprise_id},
    )
    until = enterprise_suspended_until(booking.enterprise_id, at, rules)
    if until is not None and until != before:
        notify(
            users_of_enterprise(booking.enterprise_id),
            "credit.suspended",
            f"credit:{booking.enterprise_id}:suspended:{row.id}",
            payload={"until": clock.format_local(until, "%Y-%m-%d %H:%M")},
            link="/credit/",
        )


# --- waivers -----------------------------------------------------------------------------------


def _visible(user: User, stmt: Select) -> Select:
    """Violations a waiver may see: a provider those on its institution's instruments, the bureau all."""
    if user.role is Role.PROVIDER:
        return (
            stmt.join(Booking, Booking.id == Violation.booking_id)
            .join(Instrument, Instrument.id == Booking.instrument_id)
            .where(Instrument.institution_id == user.institution_id)
        )
    if user.role in (Role.REVIEWER, Role.ADMIN):
        return stmt
    return stmt.where(Violation.id.is_(None))


def violations_page(user: User, page: int = 1, per_page: int = 50) -> Page[Violation]:
    """A page of the violations the user may waive or has waived, newest first; every one reachable."""
    return paginate(_to_review(user), page, per_page)


def violations_to_review(user: User, limit: int = 200) -> list[Violation]:
    """The latest violations the user may waive or has waived, newest first."""
    return list(db.session.scalars(_to_review(user).limit(limit)).unique())


def _to_review(user: User) -> Select:
    if user.role not in WAIVERS:
        raise Forbidden(_("Only providers and the bureau's reviewers can waive violations."))
    stmt = _visible(user, select(Violation)).options(
        joinedload(Violation.booking).joinedload(Booking.instrument), joinedload(Violation.enterprise)
    )
    return stmt.order_by(Violation.occurred_at.desc(), Violation.id.desc())


def can_waive(user: User, violation: Violation) -> bool:
    """A provider of the booking's instrument, a reviewer or an administrator, while it counts."""
    if violation.waived_at is not None or not user.is_authenticated:
        return False
    if user.role is Role.PROVIDER:
        return manages(user, violation.booking.instrument)
    return user.role in (Role.REVIEWER, Role.ADMIN)


def get_violation(user: User, violation_id: int) -> Violation:
    """A violation the user may see (a waiver's, or its own enterprise's); any other is not found."""
    row = db.session.get(Violation, violation_id)
    if row is None:
        raise NotFound(_("No such violation."))
    own = user.role is Role.ENTERPRISE and user.enterprise_id == row.enterprise_id
    if not own and not (
        user.role in WAIVERS
        and db.session.scalar(_visible(user, select(Violation.id)).where(Violation.id == row.id))
    ):
        raise NotFound(_("No such violation."))
    return row


def violation_to_waive(user: User, violation_id: int) -> Violation:
    """A violation the user may waive: waivers only (403 otherwise), one they may see (404 otherwise)."""
    if user.role not in WAIVERS:
        raise Forbidden(_("Only providers and the bureau's reviewers can waive violations."))
    return get_violation(user, violation_id)


def waive_violation(user: User, violation_id: int, reason: str | None) -> Violation:
    """Waive a violation, saying why: it no longer counts (a suspension it caused may end at once)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
    if len(reason) > 1000:
        raise ValidationFailed(_("At most 1,000 characters."), {"reason": _("At most 1,000 characters.")})
    with serialized_write():
        row = violation_to_waive(user, violation_id)
        now = clock.utcnow()
        changed = changed_rows(
            update(Violation)
            .where(Violation.id == row.id, Violation.waived_at.is_(None))
            .values(waived_at=now, waived_by_id=user.id, waive_reason=reason)
            .execution_options(synchronize_session=False)
        )
        if changed != 1:
            db.session.rollback()
            raise InvalidTransition(_("This violation has already been waived."))
        audit.record(
            "credit.violation_waived",
            "violation",
            row.id,
            before={"waived": False},
            after={"waived": True, "enterprise": row.enterprise_id, "booking": row.booking_id},
            reason=reason,
            actor_id=user.id,
        )
        notify(
            users_of_enterprise(row.enterprise_id),
            "credit.waived",
            f"violation:{row.id}:waived",
            payload={"reason": reason, "booking": row.booking_id},
            link="/credit/",
        )
        db.session.commit()
    return db.session.get_one(Violation, violation_id, populate_existing=True)


# --- the scheme's rules ------------------------------------------------------------------------


def save_rules(user: User, values: dict[str, int]) -> Rules:
    """An administrator sets this year's scheme's N, M and K (audited)."""
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators change the scheme."))
    scheme = require_scheme()
    with serialized_write():
        row = db.session.get(CreditRules, scheme.id)
        before = {k: getattr(row, k) for k in DEFAULT_RULES} if row else None
        if row is None:
            row = CreditRules(scheme_id=scheme.id, **values)
            db.session.add(row)
        for key in DEFAULT_RULES:
            setattr(row, key, values[key])
        audit.record("credit.rules_changed", "credit_rules", scheme.year, before=before, after=dict(values))
        db.session.commit()
    return rules_in_force()
