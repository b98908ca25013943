"""Service records and fees: the standard fee, recording a service (which completes its booking),
the enterprise's rating, and reading a record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol

from flask_babel import gettext as _
from sqlalchemy import update
from sqlalchemy.orm import selectinload

from portal.accounts.models import User
from portal.booking.files import add_file
from portal.booking.models import Booking, BookingMode, BookingState, FileKind, ServiceRecord, ServiceType
from portal.booking.services import (
    can_view,
    fresh_booking,
    is_booking_enterprise,
    manages,
    require_booking_enterprise,
    require_manager,
    tell,
)
from portal.booking.signals import service_recorded
from portal.booking.transitions import allows, has_begun, require_started, transition
from portal.catalog import prices
from portal.core import audit, clock, outbox, uploads
from portal.core.database import changed_rows, serialized_write
from portal.core.errors import InvalidTransition, NotFound, ValidationFailed
from portal.core.money import format_yuan
from portal.extensions import db
from portal.qualifications import services as use_rules

SERVICE_TYPES = tuple(t.value for t in ServiceType)


class PricedInstrument(Protocol):
    fee_per_hour_fen: int | None
    fee_per_sample_fen: int | None


def compute_fee(instrument: PricedInstrument, hours: Decimal | None, samples: int | None) -> int:
    """The fee the instrument's published standard gives (fen, rounded half up)."""
    total = Decimal(0)
    if hours and instrument.fee_per_hour_fen is not None:
        total += Decimal(instrument.fee_per_hour_fen) * hours
    if samples and instrument.fee_per_sample_fen is not None:
        total += Decimal(instrument.fee_per_sample_fen) * samples
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def quoted_fee(instrument: PricedInstrument, price: prices.Price | None, hours: Decimal) -> int:
    """The fee of `hours` at the price a booking would freeze (the standard where there is none)."""
    if price is not None and price.unit == "hour":
        return prices.fee_for(price, hours)
    return compute_fee(instrument, hours, None)


def standard_fee(booking: Booking, report: ServiceReport) -> int:
    """The fee at the price frozen when the booking was made (issue 17); bookings from before price
    tables follow the instrument's published standard."""
    computed = prices.booking_fee(booking.price_terms, report.hours, report.samples, booked_hours(booking))
    if computed is None:
        computed = compute_fee(booking.instrument, report.hours, report.samples)
    return computed


@dataclass(frozen=True)
class ServiceReport:
    hours: Decimal | None = None
    samples: int | None = None
    fee_fen: int | None = None
    fee_reason: str | None = None
    result_summary: str = ""
    service_type: str = "analysis"
    hours_reason: str | None = None


def booked_hours(booking: Booking) -> Decimal | None:
    """The hours a slot booking reserved (None for samples)."""
    if booking.mode is not BookingMode.SLOT or booking.starts_at is None or booking.ends_at is None:
        return None
    return Decimal((booking.ends_at - booking.starts_at).total_seconds()) / 3600


def _check_report(report: ServiceReport) -> None:
    fields: dict[str, str] = {}
    if report.hours is None and report.samples is None:
        fields["hours"] = _("Give the hours used or the number of samples.")
    if report.hours is not None and (
        report.hours <= 0 or report.hours > 1000 or report.hours != report.hours.quantize(Decimal("0.01"))
    ):
        fields["hours"] = _("Hours above 0, with at most two decimals.")
    if report.samples is not None and not 0 < report.samples <= 100_000:
        fields["samples"] = _("At least one sample.")
    if report.fee_fen is not None and not 0 <= report.fee_fen <= 10**11:
        fields["fee_fen"] = _("Must not be negative.")
    if report.service_type not in SERVICE_TYPES:
        fields["service_type"] = _("Unknown service type.")
    for name in ("fee_reason", "hours_reason"):
        if len(getattr(report, name) or "") > 500:
            fields[name] = _("At most 500 characters.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)


def _check_hours(booking: Booking, report: ServiceReport) -> str | None:
    """The reason for billing more hours than were booked; refused when it is missing."""
    booked = booked_hours(booking)
    reason = (report.hours_reason or "").strip() or None
    if booked is None or report.hours is None or report.hours <= booked:
        return None
    if not reason:
        message = _(
            "%(hours)s hours were used but %(booked)s booked: say why.",
            hours=f"{report.hours.normalize():f}",
            booked=f"{booked.normalize():f}",
        )
        raise ValidationFailed(message, {"hours_reason": message})
    return reason


def can_complete(user: User, booking: Booking, now: datetime | None = None) -> bool:
    """Whether `complete_booking` would let this user record the service now."""
    return allows(booking, "complete") and manages(user, booking.instrument) and has_begun(booking, now)


def will_complete(user: User, booking: Booking, now: datetime | None = None) -> bool:
    """This user will record the service, but not yet: the booked time or the samples are to come."""
    return allows(booking, "complete") and manages(user, booking.instrument) and not has_begun(booking, now)


def complete_booking(
    user: User,
    booking_id: int,
    report: ServiceReport,
    files: dict[FileKind, uploads.StoredFile] | None = None,
) -> ServiceRecord:
    """The provider records the service done, its fee and its evidence files, in one transaction.

    The fee is the standard one unless a reason is given; more hours than booked need a reason too.
    `files` are uploads already checked and stored (`portal.core.uploads`); they become the record's.
    """
    _check_report(report)
    with serialized_write():
        booking = fresh_booking(booking_id)
        require_manager(user, booking.instrument)
        require_started(booking, "complete")
        hours_reason = _check_hours(booking, report)
        computed = standard_fee(booking, report)
        fee = computed if report.fee_fen is None else report.fee_fen
        reason = (report.fee_reason or "").strip() or None
        if fee != computed and not reason:
            message = _("A fee other than the standard %(fee)s needs a reason.", fee=format_yuan(computed))
            raise ValidationFailed(message, {"fee_reason": message})
        transition(booking, "complete", user)
        record = ServiceRecord(
            booking_id=booking.id,
            hours=report.hours,
            samples=report.samples,
            computed_fee_fen=computed,
            fee_fen=fee,
            fee_reason=reason if fee != computed else None,
            hours_reason=hours_reason,
            result_summary=report.result_summary.strip()[:4000],
            service_type=report.service_type,
            service_way=use_rules.service_way(booking.mode.value, booking.operation),
            recorded_by_id=user.id,
            recorded_at=clock.utcnow(),
        )
        db.session.add(record)
        db.session.flush()
        _audit_record(user, booking, record)
        for kind, stored in (files or {}).items():
            add_file(user, record.id, kind, stored)
        tell(booking, "service.recorded", "enterprise", fee=format_yuan(fee))
        queue_service_tally(booking, record)
        db.session.commit()
    service_recorded.send(record, actor=user)  # vouchers: the reservation at payment
    return record


def queue_usage_tally(instrument_id: int, moment: datetime) -> None:
    """Recount the instrument's usage tally of the Beijing month of `moment` once this transaction
    commits (portal.usage.tallies, by task name: the usage area sits above this one)."""
    outbox.send_task("usage.tally", instrument_id, clock.local_month(moment))


def queue_service_tally(booking: Booking, record: ServiceRecord) -> None:
    """A service counts in the month of its start (a sample service: of its record)."""
    queue_usage_tally(booking.instrument_id, booking.starts_at or record.recorded_at)


def _audit_record(user: User, booking: Booking, record: ServiceRecord) -> None:
    booked = booked_hours(booking)
    audit.record(
        "service.recorded",
        "service_record",
        record.id,
        after={
            "booking": booking.id,
            "hours": None if record.hours is None else str(record.hours),
            "booked_hours": None if booked is None else str(booked),
            "fee_fen": record.fee_fen,
            "computed_fee_fen": record.computed_fee_fen,
        },
        reason="; ".join(r for r in (record.fee_reason, record.hours_reason) if r) or None,
        actor_id=user.id,
    )


def can_rate(user: User, booking: Booking) -> bool:
    """Whether `rate_service` would let this user rate the service (once, by the booking's enterprise)."""
    record = booking.service_record
    return (
        is_booking_enterprise(user, booking)
        and booking.state is BookingState.COMPLETED
        and record is not None
        and record.rating is None
    )


def rate_service(user: User, booking_id: int, rating: int, comment: str | None = None) -> ServiceRecord:
    """The enterprise confirms the service and rates it (1 = very poor … 5 = very satisfied), once."""
    if rating not in range(1, 6):
        raise ValidationFailed(
            _("Choose one of the five ratings."), {"rating": _("Choose one of the five ratings.")}
        )
    with serialized_write():
        booking = fresh_booking(booking_id)
        require_booking_enterprise(user, booking)
        record = booking.service_record
        if booking.state is not BookingState.COMPLETED or record is None:
            raise InvalidTransition(_("Only a completed service can be rated."))
        changed = changed_rows(
            update(ServiceRecord)
            .where(ServiceRecord.id == record.id, ServiceRecord.rating.is_(None))
            .values(
                rating=rating, rating_comment=(comment or "").strip()[:1000] or None, rated_at=clock.utcnow()
            )
            .execution_options(synchronize_session=False)
        )
        if changed != 1:
            db.session.rollback()
            raise InvalidTransition(_("This service has already been rated."))
        audit.record("service.rated", "service_record", record.id, after={"rating": rating}, actor_id=user.id)
        queue_service_tally(booking, record)
        db.session.commit()
    return db.session.get_one(ServiceRecord, record.id, populate_existing=True)


def get_service_record(user: User, record_id: int) -> ServiceRecord:
    record = db.session.get(ServiceRecord, record_id, options=[selectinload(ServiceRecord.files)])
    if record is None or not can_view(user, record.booking):
        raise NotFound(_("No service record with this number."))
    return record
