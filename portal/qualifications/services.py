"""Qualification rules: the use rules of an instrument, granting and revoking, the check a booking
makes, the expiry reminder, and training sessions with their enrolments.

Each state change checks the actor, writes its audit row and queues its notifications in one
transaction. The owning institution's providers (and administrators) grant, revoke and publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from portal.accounts.models import User
from portal.catalog import prices
from portal.catalog.models import Instrument
from portal.catalog.ownership import editable_instrument, owns
from portal.core import audit, clock
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import Forbidden, NotFound, ServiceError, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.services import notify
from portal.qualifications import messages  # noqa: F401 - the notification texts
from portal.qualifications.models import (
    OPERATIONS,
    Qualification,
    TrainingEnrolment,
    TrainingSession,
    UseRules,
)

REMIND_DAYS_BEFORE = 30
MAX_NOTE = 500
# A qualification longer than this is a typing error (the usual term is one to three years).
MAX_VALIDITY_DAYS = 5 * 366


class NotQualified(ServiceError):
    """Self-operated time on an instrument that needs a qualification the user does not hold."""

    code = "not_qualified"
    status = 409


# --- use rules ------------------------------------------------------------------------------------


def use_rules_for(instrument: Instrument) -> UseRules:
    """The instrument's rules; a default (both modes, no qualification) when it has none stored."""
    rules = db.session.get(UseRules, instrument.id)
    if rules is None:
        rules = UseRules(
            instrument_id=instrument.id, operations=list(OPERATIONS), requires_qualification=False
        )
    return rules


def check_operations(operations: list[str]) -> list[str]:
    """The operation modes asked for, in their order; ValidationFailed on an unknown one."""
    chosen = [op for op in OPERATIONS if op in operations]
    if len(chosen) != len(set(operations)):
        raise ValidationFailed(_("Unknown operation mode."), {"operations": _("Use self and staff.")})
    return chosen


def write_use_rules(
    user: User, instrument: Instrument, operations: list[str], requires_qualification: bool
) -> UseRules:
    """Store the use rules (with an audit row when they change) in the caller's transaction."""
    chosen = check_operations(operations)
    rules = db.session.get(UseRules, instrument.id)
    before = None
    if rules is None:
        rules = UseRules(instrument_id=instrument.id)
        db.session.add(rules)
    else:
        before = {
            "operations": list(rules.operations),
            "requires_qualification": rules.requires_qualification,
        }
    after = {"operations": chosen, "requires_qualification": bool(requires_qualification)}
    rules.operations, rules.requires_qualification = chosen, bool(requires_qualification)
    if before != after:
        audit.record(
            "instrument.use_rules_changed",
            "instrument",
            instrument.code,
            before=before,
            after=after,
            actor_id=user.id,
        )
    return rules


def set_use_rules(
    user: User, instrument: Instrument, operations: list[str], requires_qualification: bool
) -> UseRules:
    """The owning provider chooses the operation modes offered and whether self time needs a qualification."""
    if not owns(user, instrument):
        raise Forbidden(_("Only the instrument's own institution can do this."))
    check_operations(operations)
    with serialized_write():
        rules = write_use_rules(user, instrument, operations, requires_qualification)
        db.session.commit()
    return rules


# --- the check a booking makes --------------------------------------------------------------------


def valid_qualification(user_id: int, instrument_id: int, day: date) -> Qualification | None:
    """A qualification of the user on the instrument, valid on that Beijing day (not revoked)."""
    return db.session.scalar(
        select(Qualification)
        .where(
            Qualification.user_id == user_id,
            Qualification.instrument_id == instrument_id,
            Qualification.revoked_at.is_(None),
            Qualification.valid_from <= day,
            Qualification.valid_until >= day,
        )
        .order_by(Qualification.valid_until.desc())
        .limit(1)
    )


def check_operation(
    user: User, instrument: Instrument, operation: str, starts_at: datetime, ends_at: datetime
) -> None:
    """Refuse an operation mode the instrument does not offer, and self-operated time without a
    qualification valid for the whole booking (NotQualified, saying how to get one)."""
    rules = use_rules_for(instrument)
    if operation not in OPERATIONS or operation not in rules.operations:
        message = _("This instrument does not offer this operation mode.")
        raise ValidationFailed(message, {"operation": message, "rule": "operation_not_offered"})
    if operation != "self" or not rules.requires_qualification:
        return
    first, last = clock.local_today(starts_at), clock.local_today(ends_at - timedelta(microseconds=1))
    held = valid_qualification(user.id, instrument.id, first)
    if held is None or held.valid_until < last:
        raise NotQualified(
            _(
                "Self-operated time on %(instrument)s needs a qualification valid on the day of the "
                "booking. %(institution)s grants it after a training or an exam: enrol in one of its "
                "training sessions on the instrument's page, or call %(contact)s. Until then, book "
                "staff-operated time.",
                instrument=instrument.name,
                institution=instrument.institution.name,
                contact=instrument.operator_phone or instrument.operator_name or instrument.institution.name,
            ),
            {"instrument_code": instrument.code, "operation": "self"},
        )


# --- what a booking records of this layer ----------------------------------------------------------

# The national service way (NRII serviceWay) of each way of using an instrument.
SERVICE_WAYS = {"self": "占用", "staff": "技术", "sample": "委托"}


def service_way(mode: str, operation: str | None) -> str:
    """占用 for self-operated time, 技术 for staff-operated time, 委托 for samples."""
    return SERVICE_WAYS["sample" if mode == "sample" else operation or "self"]


def booking_terms(
    user: User,
    instrument: Instrument,
    mode: str,
    operation: str | None,
    starts_at: datetime | None,
    ends_at: datetime | None,
) -> dict[str, Any]:
    """The columns a new booking takes from this layer, once its operation mode is allowed: the
    operation (slots only, `self` by default) and the price frozen for the user's category."""
    if mode == "sample":
        operation, price_mode = None, "sample"
    else:
        operation = price_mode = operation or "self"
        if starts_at is not None and ends_at is not None and starts_at < ends_at:
            check_operation(user, instrument, operation, starts_at, ends_at)
    customer = quoted_category(user, instrument)
    price = prices.price_for(instrument, customer, price_mode)
    if price is None:
        return {"operation": operation}
    return {
        "operation": operation,
        "tier": price.customer,
        "unit": price.unit,
        "unit_price_fen": price.unit_price_fen,
        "price_terms": price.as_json(),
    }


def quoted_category(user: User, instrument: Instrument) -> str:
    """The customer category whose price this user pays (a visitor without an enterprise: enterprise)."""
    if not user.is_authenticated or user.enterprise is None:
        return "enterprise"
    return prices.category_of(user.enterprise, instrument).value


def quoted_price(user: User, instrument: Instrument, price_mode: str) -> prices.Price | None:
    """The price a booking by this user would freeze now (for the booking form and its voucher hint)."""
    return prices.price_for(instrument, quoted_category(user, instrument), price_mode)


# --- granting and revoking ------------------------------------------------------------------------


def managed_instrument(user: User, code: str) -> Instrument:
    """The instrument, if the user is one of its institution's providers or an administrator;
    otherwise NotFound, as for a code nobody uses."""
    return editable_instrument(user, code)


def _tell(qualification: Qualification, kind: str, **extra: Any) -> None:
    instrument = qualification.instrument
    payload = {
        "instrument": instrument.name,
        "institution": instrument.institution.name,
        "valid_until": qualification.valid_until.isoformat(),
        **{k: ("" if v is None else v) for k, v in extra.items()},
    }
    notify(
        [qualification.user],
        kind,
        f"qualification:{qualification.id}:{kind}",
        payload=payload,
        link="/account",
    )


def grant_qualification(
    user: User, code: str, username: str, valid_until: date, note: str = "", valid_from: date | None = None
) -> Qualification:
    """Grant an enterprise user a qualification on the instrument until `valid_until` (included)."""
    instrument = managed_instrument(user, code)
    today = clock.local_today()
    valid_from = valid_from or today
    fields: dict[str, str] = {}
    holder = db.session.scalar(select(User).where(User.username == (username or "").strip()))
    if holder is None or holder.role is not Role.ENTERPRISE or not holder.is_active_account:
        fields["username"] = _("No enterprise user has this user name.")
    if valid_until < max(valid_from, today):
        fields["valid_until"] = _("This date has already passed.")
    elif valid_until > today + timedelta(days=MAX_VALIDITY_DAYS):
        fields["valid_until"] = _("At most five years ahead.")
    if len(note or "") > MAX_NOTE:
        fields["note"] = _("At most 500 characters.")
    if fields or holder is None:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    with serialized_write():
        qualification = Qualification(
            user_id=holder.id,
            instrument_id=instrument.id,
            granted_by_id=user.id,
            valid_from=valid_from,
            valid_until=valid_until,
            note=(note or "").strip(),
        )
        db.session.add(qualification)
        db.session.flush()
        audit.record(
            "qualification.granted",
            "qualification",
            qualification.id,
            after={
                "instrument": instrument.code,
                "username": holder.username,
                "valid_from": valid_from.isoformat(),
                "valid_until": valid_until.isoformat(),
            },
            reason=qualification.note or None,
            actor_id=user.id,
        )
        _tell(qualification, "qualification.granted")
        db.session.commit()
    return qualification


def _qualification_of(instrument: Instrument, qualification_id: int) -> Qualification:
    qualification = db.session.get(Qualification, qualification_id)
    if qualification is None or qualification.instrument_id != instrument.id:
        raise NotFound(_("No qualification with this number."))
    return qualification


def revoke_qualification(
    user: User, code: str, qualification_id: int, reason: str | None = None
) -> Qualification:
    """Revoke a qualification now; a second revocation changes nothing."""
    instrument = managed_instrument(user, code)
    if len(reason or "") > MAX_NOTE:
        raise ValidationFailed(_("At most 500 characters."), {"reason": _("At most 500 characters.")})
    with serialized_write():
        qualification = _qualification_of(instrument, qualification_id)
        now = clock.utcnow()
        done = changed_rows(
            update(Qualification)
            .where(Qualification.id == qualification.id, Qualification.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by_id=user.id, revoke_reason=(reason or "").strip() or None)
        )
        if done:
            db.session.refresh(qualification)
            audit.record(
                "qualification.revoked",
                "qualification",
                qualification.id,
                before={"revoked_at": None},
                after={"revoked_at": clock.iso_utc(now), "instrument": instrument.code},
                reason=qualification.revoke_reason,
                actor_id=user.id,
            )
            _tell(qualification, "qualification.revoked", reason=qualification.revoke_reason or "")
        db.session.commit()
    return qualification


def instrument_qualifications(user: User, code: str) -> list[Qualification]:
    """Every qualification on the instrument, the newest first (its providers, administrators)."""
    instrument = managed_instrument(user, code)
    return list(
        db.session.scalars(
            select(Qualification)
            .where(Qualification.instrument_id == instrument.id)
            .options(joinedload(Qualification.user))
            .order_by(Qualification.id.desc())
        )
    )


def user_qualifications(user: User) -> list[Qualification]:
    """The user's own qualifications, the latest expiry first (revoked ones too, marked)."""
    return list(
        db.session.scalars(
            select(Qualification)
            .where(Qualification.user_id == user.id)
            .options(joinedload(Qualification.instrument).joinedload(Instrument.institution))
            .order_by(Qualification.valid_until.desc(), Qualification.id.desc())
        )
    )


def send_expiry_reminders(now: datetime | None = None) -> int:
    """Tell each holder once, 30 days (or fewer, if granted late) before a qualification expires."""
    now = now or clock.utcnow()
    today = clock.local_today(now)
    due = db.session.scalars(
        select(Qualification).where(
            Qualification.revoked_at.is_(None),
            Qualification.reminded_at.is_(None),
            Qualification.valid_until >= today,
            Qualification.valid_until <= today + timedelta(days=REMIND_DAYS_BEFORE),
        )
    ).all()
    sent = 0
    for qualification in due:
        claimed = changed_rows(
            update(Qualification)
            .where(Qualification.id == qualification.id, Qualification.reminded_at.is_(None))
            .values(reminded_at=now)
        )
        if claimed:
            _tell(qualification, "qualification.expiring", days=(qualification.valid_until - today).days)
            sent += 1
        db.session.commit()
    return sent


# --- training sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingInput:
    starts_at: datetime
    ends_at: datetime
    capacity: int
    place: str = ""
    note: str = ""


def publish_training(user: User, code: str, data: TrainingInput) -> TrainingSession:
    """The owning provider announces a training (or exam) session on the instrument."""
    instrument = managed_instrument(user, code)
    fields: dict[str, str] = {}
    if data.starts_at >= data.ends_at:
        fields["ends_at"] = _("The end must come after the start.")
    if data.starts_at <= clock.utcnow():
        fields["starts_at"] = _("This date has already passed.")
    if not 0 < data.capacity <= 1000:
        fields["capacity"] = _("Between 1 and 1,000 places.")
    if len(data.place) > 200 or len(data.note) > 2000:
        fields["note"] = _("Too long.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    with serialized_write():
        session = TrainingSession(
            instrument_id=instrument.id,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            capacity=data.capacity,
            place=data.place.strip(),
            note=data.note.strip(),
            created_by_id=user.id,
        )
        db.session.add(session)
        db.session.flush()
        audit.record(
            "training.published",
            "training_session",
            session.id,
            after={
                "instrument": instrument.code,
                "starts_at": clock.iso_utc(data.starts_at),
                "capacity": data.capacity,
            },
            actor_id=user.id,
        )
        db.session.commit()
    return session


def upcoming_training(instrument: Instrument, now: datetime | None = None) -> list[TrainingSession]:
    """The instrument's sessions still to come, the soonest first (a calendar of them)."""
    return list(
        db.session.scalars(
            select(TrainingSession)
            .where(
                TrainingSession.instrument_id == instrument.id,
                TrainingSession.cancelled_at.is_(None),
                TrainingSession.ends_at > (now or clock.utcnow()),
            )
            .options(joinedload(TrainingSession.enrolments))
            .order_by(TrainingSession.starts_at)
        ).unique()
    )


def instrument_training(user: User, code: str) -> list[TrainingSession]:
    """Every session of the instrument with its enrolments, the newest first (its providers)."""
    instrument = managed_instrument(user, code)
    return list(
        db.session.scalars(
            select(TrainingSession)
            .where(TrainingSession.instrument_id == instrument.id)
            .options(joinedload(TrainingSession.enrolments).joinedload(TrainingEnrolment.user))
            .order_by(TrainingSession.starts_at.desc())
        ).unique()
    )


def training_session(session_id: int) -> TrainingSession:
    """A published session (not cancelled); any other id is simply not found."""
    session = db.session.get(TrainingSession, session_id)
    if session is None or session.cancelled_at is not None:
        raise NotFound(_("No training session with this number."))
    return session


def enrol(user: User, session_id: int) -> TrainingEnrolment:
    """An enterprise user takes a place in a session still to come; enrolling twice changes nothing."""
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts can enrol."))
    with serialized_write():
        session = training_session(session_id)
        existing = db.session.scalar(
            select(TrainingEnrolment).where(
                TrainingEnrolment.session_id == session.id, TrainingEnrolment.user_id == user.id
            )
        )
        if existing is not None:
            return existing
        if session.starts_at <= clock.utcnow():
            raise ValidationFailed(
                _("This session has already begun."), {"session": _("This session has already begun.")}
            )
        if len(session.enrolments) >= session.capacity:
            raise ValidationFailed(_("This session is full."), {"session": _("This session is full.")})
        enrolment = TrainingEnrolment(session_id=session.id, user_id=user.id)
        db.session.add(enrolment)
        db.session.flush()
        audit.record(
            "training.enrolled",
            "training_session",
            session.id,
            after={"user": user.username, "instrument_id": session.instrument_id},
            actor_id=user.id,
        )
        db.session.commit()
    return enrolment
