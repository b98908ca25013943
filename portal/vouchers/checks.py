"""The automatic checks of a claim's services (all must pass before a claim is submitted or approved)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from flask import current_app
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.models import Enterprise, User
from portal.admission.models import AdmissionState
from portal.booking.models import (
    FILE_KIND_LABELS,
    Booking,
    BookingMode,
    BookingState,
    FileKind,
    ServiceRecord,
)
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.errors import InvalidTransition
from portal.core.money import format_yuan
from portal.extensions import db
from portal.usage.services import metered_hours, usage_of
from portal.vouchers.models import Claim, EnterpriseRelation, Scheme, Voucher, VoucherState

EVIDENCE = (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT)


# --- claims: checks and subsidy -----------------------------------------------------------------


@dataclass
class Check:
    code: str
    passed: bool
    message: str
    # Passed, with something the reviewer should know (hours_above_usage: a service not metered).
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "passed": self.passed, "message": self.message, "warning": self.warning}


def records_of(record_ids: list[int]) -> list[ServiceRecord]:
    return list(
        db.session.scalars(
            select(ServiceRecord)
            .where(ServiceRecord.id.in_(record_ids))
            .options(
                joinedload(ServiceRecord.booking)
                .joinedload(Booking.instrument)
                .joinedload(Instrument.institution),
                selectinload(ServiceRecord.files),
            )
            .order_by(ServiceRecord.id)
            .execution_options(populate_existing=True)
        )
    )


def claim_record_ids(claim: Claim) -> list[int]:
    return [item.service_record_id for item in claim.items]


def _service_day(record: ServiceRecord) -> date:
    booking = record.booking
    if booking.mode is BookingMode.SLOT and booking.starts_at:
        return clock.to_local(booking.starts_at).date()
    return clock.to_local(record.recorded_at).date()


# Per check: (code, the message when every service passes, [(service record id, why it fails)]).
CheckFailures = list[tuple[str, str, list[tuple[int, str]]]]
# What the enterprise itself can still put right on a service before claiming it.
FIXABLE_CHECKS = frozenset({"service_completed", "evidence"})

Failures = list[tuple[int, str]]


def _check_records(
    enterprise: Enterprise, scheme: Scheme, records: list[ServiceRecord], claim_id: int | None = None
) -> CheckFailures:
    """Every automatic check over these services, with the services that fail each and why."""
    return [
        (
            "service_completed",
            _("Every service is completed and rated by the enterprise."),
            _not_completed(records),
        ),
        (
            "evidence",
            _("Contract, invoice and payment receipt are attached to every service."),
            _missing_evidence(records),
        ),
        (
            "service_window",
            _(
                "Every service lies inside %(start)s to %(end)s.",
                start=scheme.service_window_start,
                end=scheme.service_window_end,
            ),
            _outside_window(scheme, records),
        ),
        ("related_party", _("No provider is related to the enterprise."), _related(enterprise, records)),
        ("claimed_twice", _("No service has been claimed before."), _claimed_before(records, claim_id)),
        (
            "excluded_service",
            _("No service is of an excluded type (statutory testing, mandatory certification)."),
            _excluded(scheme, records),
        ),
        ("hours_within_booking", _("No service bills more hours than were booked."), _over_booked(records)),
        (
            "hours_above_usage",
            _("No service bills more machine hours than were metered at the instrument."),
            _above_usage(scheme, records),
        ),
        (
            "provider_admitted",
            _("Every service's provider is admitted to the voucher scheme."),
            _not_admitted(records),
        ),
    ]


def _not_admitted(records: list[ServiceRecord]) -> Failures:
    """Services of providers not admitted (or suspended); those outside Shandong are the reviewer's
    call, case by case, so they are not checked here."""
    failures = []
    for r in records:
        host = r.booking.instrument.institution
        if host.admission != AdmissionState.ADMITTED and host.in_province:
            message = _("The provider of service #%(id)d is not admitted to the voucher scheme.", id=r.id)
            failures.append((r.id, message))
    return failures


def _not_completed(records: list[ServiceRecord]) -> Failures:
    return [
        (r.id, _("Service #%(id)d is not completed and rated.", id=r.id))
        for r in records
        if r.booking.state is not BookingState.COMPLETED or r.rating is None
    ]


def _missing_evidence(records: list[ServiceRecord]) -> Failures:
    missing = []
    for r in records:
        kinds = {f.kind for f in r.files if f.replaced_at is None}
        lacking = [k for k in EVIDENCE if k not in kinds]
        if lacking:
            names = ", ".join(str(FILE_KIND_LABELS[k]) for k in lacking)
            missing.append((r.id, _("Service #%(id)d lacks: %(kinds)s.", id=r.id, kinds=names)))
    return missing


def _outside_window(scheme: Scheme, records: list[ServiceRecord]) -> Failures:
    return [
        (
            r.id,
            _(
                "Service #%(id)d took place on %(day)s, outside the scheme's window.",
                id=r.id,
                day=_service_day(r),
            ),
        )
        for r in records
        if not scheme.service_window_start <= _service_day(r) <= scheme.service_window_end
    ]


def _related(enterprise: Enterprise, records: list[ServiceRecord]) -> Failures:
    relations = {
        institution_id: kind
        for institution_id, kind in db.session.execute(
            select(EnterpriseRelation.institution_id, EnterpriseRelation.kind).where(
                EnterpriseRelation.enterprise_id == enterprise.id
            )
        )
    }
    related = []
    for r in records:
        host = r.booking.instrument.institution
        if host.uscc and host.uscc == enterprise.uscc:
            related.append((r.id, _("%(host)s has the enterprise's own credit code.", host=host.name)))
        elif enterprise.controller_group and host.controller_group == enterprise.controller_group:
            related.append(
                (r.id, _("%(host)s has the same actual controller as the enterprise.", host=host.name))
            )
        elif host.id in relations:
            related.append((r.id, _("The enterprise declared a relation with %(host)s.", host=host.name)))
    return related


def _claimed_before(records: list[ServiceRecord], claim_id: int | None) -> Failures:
    return [
        (r.id, _("Service #%(id)d is already in claim #%(claim)d.", id=r.id, claim=r.claim_id))
        for r in records
        if r.claim_id is not None and r.claim_id != claim_id
    ]


def _excluded(scheme: Scheme, records: list[ServiceRecord]) -> Failures:
    excluded = set(scheme.excluded_service_types or [])
    return [
        (r.id, _("Service #%(id)d is of an excluded type.", id=r.id))
        for r in records
        if r.service_type in excluded
    ]


def _over_booked(records: list[ServiceRecord]) -> Failures:
    over = []
    for r in records:
        booking = r.booking
        if booking.mode is BookingMode.SLOT and r.hours is not None and booking.starts_at and booking.ends_at:
            booked = Decimal((booking.ends_at - booking.starts_at).total_seconds()) / 3600
            if r.hours > booked:
                message = _(
                    "Service #%(id)d bills %(billed)s hours for %(booked)s booked.",
                    id=r.id,
                    billed=r.hours,
                    booked=booked.normalize(),
                )
                over.append((r.id, message))
    return over


def _billed_hours(records: list[ServiceRecord]) -> dict[int, tuple[ServiceRecord, Decimal | None]]:
    """The services that bill machine hours, each with its metered hours (None: not metered)."""
    billed = [r for r in records if r.booking.mode is BookingMode.SLOT and r.hours is not None]
    usage = usage_of(r.booking_id for r in billed)
    return {r.id: (r, metered_hours(usage.get(r.booking_id))) for r in billed}


def _above_usage(scheme: Scheme, records: list[ServiceRecord]) -> Failures:
    """Metered services billing more hours than were used; unmetered ones where the scheme requires
    metering (elsewhere they only warn: see _not_metered_warning)."""
    failures = []
    for record, metered in _billed_hours(records).values():
        if metered is not None and record.hours is not None and record.hours > metered:
            message = _(
                "Service #%(id)d bills %(billed)s hours; %(used)s were metered at the instrument.",
                id=record.id,
                billed=record.hours,
                used=metered,
            )
            failures.append((record.id, message))
        elif metered is None and scheme.metering_required:
            failures.append(
                (record.id, _("Service #%(id)d was not metered at the instrument.", id=record.id))
            )
    return failures


def _not_metered_warning(records: list[ServiceRecord]) -> Check | None:
    """hours_above_usage when it passes but some services were not metered (the scheme allows it)."""
    unmetered = [r.id for r, metered in _billed_hours(records).values() if metered is None]
    if not unmetered:
        return None
    services = ", ".join(f"#{record_id}" for record_id in unmetered)
    message = _("Not metered: service %(services)s (nobody checked in at the instrument).", services=services)
    return Check("hours_above_usage", True, message, warning=True)


def run_checks(
    enterprise: Enterprise, scheme: Scheme, records: list[ServiceRecord], claim_id: int | None = None
) -> list[Check]:
    """The automatic checks a reviewer sees, each with its reason (all must pass before approval)."""
    checks = []
    for code, ok, failures in _check_records(enterprise, scheme, records, claim_id):
        # Several services of one provider fail the related-party check for the same reason: say it once.
        reasons = list(dict.fromkeys(message for _record, message in failures))
        warning = _not_metered_warning(records) if code == "hours_above_usage" and not reasons else None
        checks.append(warning or Check(code, not reasons, "; ".join(reasons) if reasons else ok))
    return checks


def checks_per_service(
    enterprise: Enterprise, scheme: Scheme, records: list[ServiceRecord]
) -> dict[int, list[Check]]:
    """The same checks service by service: what stops each one from passing (nothing: it can pass)."""
    failed: dict[int, list[Check]] = {r.id: [] for r in records}
    for code, _ok, failures in _check_records(enterprise, scheme, records):
        for record_id, message in failures:
            failed[record_id].append(Check(code, False, message))
    # The justification is written on the claim; a scheme without an out-of-province rate blocks it.
    if scheme.out_of_province_rate is None:
        for record in records:
            if not record.booking.instrument.institution.in_province:
                failed[record.id].append(out_of_province_check(scheme, [record], None))
    return failed


def all_checks(
    enterprise: Enterprise,
    voucher: Voucher,
    records: list[ServiceRecord],
    claim_id: int | None = None,
    justification: str | None = None,
) -> list[Check]:
    """The voucher's check and every service check (`claim_id`: the claim these services are in;
    `justification`: the enterprise's for an out-of-province provider, else the claim's stored one)."""
    if justification is None and claim_id is not None:
        claim = db.session.get(Claim, claim_id)  # already in the session wherever a claim is checked
        justification = claim.justification if claim else None
    return [
        *voucher_checks(voucher),
        *run_checks(enterprise, voucher.scheme, records, claim_id),
        out_of_province_check(voucher.scheme, records, justification),
    ]


# A written justification shorter than this says nothing a reviewer could judge.
MIN_JUSTIFICATION = 20


def out_of_province_check(scheme: Scheme, records: list[ServiceRecord], justification: str | None) -> Check:
    """`out_of_province_justified`: a provider outside Shandong only where the scheme subsidises such
    services, and with the enterprise's written justification that no networked instrument in the
    province can do them (the reviewers judge it); passes for a provider in the province."""
    code = "out_of_province_justified"
    if all(r.booking.instrument.institution.in_province for r in records):
        return Check(code, True, _("The provider is in Shandong."))
    if scheme.out_of_province_rate is None:
        return Check(
            code, False, _("This year's scheme does not subsidise services of providers outside Shandong.")
        )
    if len((justification or "").strip()) < MIN_JUSTIFICATION:
        message = _(
            "The provider is outside Shandong: write why no networked instrument in the province can do "
            "this service (at least %(count)d characters).",
            count=MIN_JUSTIFICATION,
        )
        return Check(code, False, message)
    message = _(
        "The provider is outside Shandong; the enterprise's justification is for the reviewer to judge."
    )
    return Check(code, True, message, warning=True)


def at_payment_checks(claim: Claim, records: list[ServiceRecord]) -> list[Check]:
    """What a provider's redemption needs besides a claim's checks: the service's result, and proof
    that the enterprise paid exactly its share (DESIGN section 13)."""
    lacking = [
        r.id for r in records if FileKind.RESULT not in {f.kind for f in r.files if f.replaced_at is None}
    ]
    services = ", ".join(f"#{record_id}" for record_id in lacking)
    share, paid = claim.enterprise_share_fen, claim.enterprise_paid_fen
    return [
        Check(
            "result_attached",
            not lacking,
            _("The service's result is attached.")
            if not lacking
            else _("The result is not attached to service %(services)s.", services=services),
        ),
        Check(
            "share_paid",
            paid == share,
            _("The enterprise paid its share of %(share)s.", share=format_yuan(share))
            if paid == share
            else _(
                "The enterprise's payment (%(paid)s) does not equal its share of %(share)s.",
                paid=format_yuan(paid) if paid is not None else _("not stated"),
                share=format_yuan(share),
            ),
        ),
    ]


def claim_checks(
    claim: Claim, enterprise: Enterprise, voucher: Voucher, records: list[ServiceRecord]
) -> list[Check]:
    """Every check of this claim: a redemption at payment has the two of `at_payment_checks` too."""
    checks = all_checks(enterprise, voucher, records, claim.id)
    return [*checks, *at_payment_checks(claim, records)] if claim.at_payment else checks


def stored_checks(checks: list[Check], again: Callable[[], list[Check]]) -> list[dict[str, Any]]:
    """The checks as a claim keeps them, with their messages in every interface language: a claim
    submitted in Chinese is reviewed in English too. `again` runs the same checks once more."""
    stored = [c.as_dict() | {"messages": {}} for c in checks]
    for language in current_app.config["LANGUAGES"]:
        with force_locale(language):
            for row, check in zip(stored, again(), strict=True):
                row["messages"][language] = check.message
    return stored


def check_message(check: Check | dict[str, Any]) -> str:
    """A check's message in the interface language (a stored one in the language it was stored in
    when it predates the translated copies)."""
    if isinstance(check, Check):
        return check.message
    return (check.get("messages") or {}).get(str(get_locale())) or check["message"]


def voucher_checks(voucher: Voucher) -> list[Check]:
    ok = voucher.state is VoucherState.ACTIVE and voucher.valid_until >= clock.local_today()
    return [
        Check(
            "voucher_valid",
            ok,
            _("The voucher is valid until %(day)s.", day=voucher.valid_until)
            if ok
            else _("The voucher expired on %(day)s.", day=voucher.valid_until),
        )
    ]


def refuse_failed_checks(checks: list[Check], refusal: str) -> None:
    """Refuse with every failing check's reason (`refusal` has a %(failed)s placeholder)."""
    failed = [c for c in checks if not c.passed]
    if failed:
        raise InvalidTransition(
            refusal % {"failed": "; ".join(c.message for c in failed)},
            {"checks": [c.as_dict() for c in failed]},
        )


def current_checks(claim: Claim) -> list[Check]:
    """The checks as they stand now: a draft's or a returned claim's stored ones may be stale (a file
    added since), and submitting runs exactly these."""
    voucher = db.session.get_one(Voucher, claim.voucher_id)
    enterprise = db.session.get_one(Enterprise, claim.enterprise_id)
    return claim_checks(claim, enterprise, voucher, records_of(claim_record_ids(claim)))


@dataclass
class ClaimableService:
    """A completed service not yet claimed, and what would stop a claim for it from passing review."""

    record: ServiceRecord
    problems: list[Check]

    @property
    def fixable(self) -> bool:
        """Whether the enterprise can still put it right (rate the service, add the documents)."""
        return all(p.code in FIXABLE_CHECKS for p in self.problems)

    @property
    def group(self) -> str:
        """Where the new-claim page lists it: `ready` to claim, `fixable` first, or `blocked`."""
        if not self.problems:
            return "ready"
        return "fixable" if self.fixable else "blocked"


def claimable_services(user: User, voucher: Voucher | None) -> list[ClaimableService]:
    """The enterprise's unclaimed completed services, each with the review's own checks against it."""
    records = claimable_records(user)
    if voucher is None or not records:
        return [ClaimableService(r, []) for r in records]
    enterprise = db.session.get_one(Enterprise, user.enterprise_id)
    problems = checks_per_service(enterprise, voucher.scheme, records)
    return [ClaimableService(r, problems[r.id]) for r in records]


def claimable_records(user: User) -> list[ServiceRecord]:
    """The enterprise's completed services not yet in a claim, newest first."""
    return list(
        db.session.scalars(
            select(ServiceRecord)
            .join(Booking, Booking.id == ServiceRecord.booking_id)
            .where(
                Booking.enterprise_id == user.enterprise_id,
                Booking.state == BookingState.COMPLETED,
                ServiceRecord.claim_id.is_(None),
            )
            .options(
                joinedload(ServiceRecord.booking)
                .joinedload(Booking.instrument)
                .joinedload(Instrument.institution),
                selectinload(ServiceRecord.files),
            )
            .order_by(ServiceRecord.recorded_at.desc())
        )
    )
