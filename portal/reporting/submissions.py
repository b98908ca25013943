"""An institution's national report of a year: the annual report, drafted live from the records, then
submitted final as a frozen snapshot.

A draft is whatever the portal holds now (`auditStatus` -1). Submitting it final freezes the annual
report, the instrument records and the service records as canonical JSON (sorted keys, no spaces:
the same content always gives the same bytes) with its SHA-256 and who submitted it (`auditStatus`
0). Snapshots are never changed (the database refuses it). When the records change afterwards, the
page shows what differs from the latest snapshot; a new version is made only when a provider asks
for one on purpose.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import distinct, func, select

from portal.accounts.models import User
from portal.booking.models import Booking, BookingState, FileKind, ServiceFile, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.money import fen_to_yuan
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting import hours as hours_
from portal.reporting import nrii, services, versions
from portal.reporting.hours import Scope
from portal.reporting.models import ReportSnapshot
from portal.usage import periods

MAX_DIFFERENCES = 200


def annual_report(
    institution_id: int, year: int, *, final: bool = False, year_hours: hours_.YearHours | None = None
) -> dict[str, Any]:
    """The institution's annual report in the national names: invoices issued, total and external
    income (yuan), the instruments of 500,000 yuan or more. The year's hours are counted here unless
    the caller has them."""
    start, end = hours_.year_bounds(year)
    scope = Scope(institution_id)
    services_of_year = scope.of_instruments(
        select(ServiceRecord.id)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .where(Booking.state == BookingState.COMPLETED, periods.service_period_filter(start, end)),
        Booking.instrument_id,
    )
    invoices = db.session.scalar(
        select(func.count(distinct(ServiceFile.record_id))).where(
            ServiceFile.kind == FileKind.INVOICE, ServiceFile.record_id.in_(services_of_year)
        )
    )
    year_hours = year_hours or hours_.year_hours(year, scope)
    total = sum(h.income_fen for h in year_hours.by_instrument.values())
    external = sum(h.external_income_fen for h in year_hours.by_instrument.values())
    large = db.session.scalars(
        select(Instrument.code)
        .where(
            Instrument.institution_id == institution_id,
            Instrument.original_value_fen >= current_app.config["REPORTING_MIN_VALUE_FEN"],
        )
        .order_by(Instrument.code)
    )
    return {
        "year": year,
        "billNum": invoices or 0,
        "totalIncome": f"{fen_to_yuan(total):.2f}",
        "outIncome": f"{fen_to_yuan(external):.2f}",
        "instruments": list(large),
        "remarks": "",
        "auditStatus": nrii.AUDIT_FINAL if final else nrii.AUDIT_DRAFT,
        "institution_id": institution_id,
    }


def report_content(institution_id: int, year: int, *, final: bool = False) -> dict[str, Any]:
    """The whole report: annual report, instrument records, service records."""
    scope = Scope(institution_id)
    status = nrii.AUDIT_FINAL if final else nrii.AUDIT_DRAFT
    year_hours = hours_.year_hours(year, scope)  # once, for the instruments and the annual report
    instruments = services.all_instruments(scope, year, year_hours)
    records = list(services.all_services(scope, year))
    for row in (*instruments, *records):
        row["auditStatus"] = status
    return {
        "annual": annual_report(institution_id, year, final=final, year_hours=year_hours),
        "instruments": instruments,
        "service_records": records,
    }


def canonical(content: dict[str, Any]) -> bytes:
    """The one byte form of a report: sorted keys, no spaces, UTF-8."""
    return json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def snapshots(institution_id: int, year: int) -> list[ReportSnapshot]:
    """Every final version of the institution's report of the year, the latest first."""
    return versions.versions_of(ReportSnapshot, institution_id, year)


def may_submit(user: User, institution_id: int | None) -> bool:
    """The institution's own providers submit its report."""
    return user.role is Role.PROVIDER and institution_id is not None and user.institution_id == institution_id


def submit_final(user: User, year: int, *, new_version: bool = False) -> ReportSnapshot:
    """Freeze the user's institution's report of the year as its next final version (audited)."""
    institution_id = user.institution_id
    if not may_submit(user, institution_id):
        raise Forbidden(_("Only the institution's providers submit its national report."))
    assert institution_id is not None  # (may_submit)
    if not 2000 <= year <= clock.local_today().year:
        raise ValidationFailed(_("Choose a year between 2000 and %(year)d.", year=clock.local_today().year))
    latest = next(iter(snapshots(institution_id, year)), None)
    content = canonical(report_content(institution_id, year, final=True))
    if latest is not None:
        if not new_version:
            message = _(
                "The report of %(year)d is already final; submit a new version on purpose.", year=year
            )
            raise ValidationFailed(message, {"new_version": message})
        if latest.content.encode() == content:
            message = _("Nothing changed since version %(n)d.", n=latest.version)
            raise ValidationFailed(message, {"new_version": message})
    snapshot = ReportSnapshot(
        institution_id=institution_id,
        year=year,
        version=(latest.version if latest else 0) + 1,
        content=content.decode(),
        sha256=hashlib.sha256(content).hexdigest(),
        submitted_by_id=user.id,
    )
    return versions.add_version(
        snapshot,
        _("Another provider submitted the report a moment ago; look again."),
        "report.submitted",
        "report",
        {"version": snapshot.version, "sha256": snapshot.sha256},
        user.id,
    )


def get_snapshot(user: User, snapshot_id: int) -> ReportSnapshot:
    """A snapshot the user may read (a provider: their own institution's); else NotFound."""
    snapshot = db.session.get(ReportSnapshot, snapshot_id)
    if snapshot is None:
        raise NotFound(_("There is no such report."))
    try:
        services.report_scope(user, snapshot.institution_id)
    except Forbidden:
        raise NotFound(_("There is no such report.")) from None
    return snapshot


@dataclass(frozen=True)
class Difference:
    section: str  # annual, instruments, service_records
    key: str  # the instrument's innerId, the service's id, or the annual report's field
    field: str  # a field, or "added" / "removed" for a whole record
    before: Any
    after: Any


def differences(snapshot: ReportSnapshot) -> list[Difference]:
    """What the records say now that the snapshot does not (at most MAX_DIFFERENCES)."""
    before = json.loads(snapshot.content)
    after = json.loads(canonical(report_content(snapshot.institution_id, snapshot.year, final=True)))
    found = [
        Difference("annual", name, name, before["annual"].get(name), value)
        for name, value in after["annual"].items()
        if before["annual"].get(name) != value
    ]
    for section, key in (("instruments", "innerId"), ("service_records", "serviceId")):
        old = {str(row[key]): row for row in before[section]}
        new = {str(row[key]): row for row in after[section]}
        for name in sorted(old.keys() | new.keys()):
            if name not in new:
                found.append(Difference(section, name, "removed", None, None))
            elif name not in old:
                found.append(Difference(section, name, "added", None, None))
            else:
                found += [
                    Difference(section, name, field, old[name].get(field), value)
                    for field, value in sorted(new[name].items())
                    if old[name].get(field) != value
                ]
    return found[:MAX_DIFFERENCES]
