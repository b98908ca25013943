"""Evidence files of a service record: contracts, invoices, receipts and results, added by either side
of the service and read by those who may see the booking."""

from __future__ import annotations

from typing import IO

from flask_babel import gettext as _

from portal.accounts.models import User
from portal.booking.models import Booking, FileKind, ServiceFile, ServiceRecord
from portal.booking.services import can_view, is_booking_enterprise, manages
from portal.core import audit, held_uploads, uploads
from portal.core.database import serialized_write
from portal.core.errors import Forbidden, NotFound
from portal.extensions import db


def can_attach_file(user: User, booking: Booking) -> bool:
    """Whether `attach_file` would let this user add a file to the booking's service record."""
    return booking.service_record is not None and (
        manages(user, booking.instrument) or is_booking_enterprise(user, booking)
    )


def attach_file(
    user: User, record_id: int, kind: FileKind, stream: IO[bytes], filename: str | None
) -> ServiceFile:
    """Add a contract, invoice, receipt or result to a service record (either side of the service)."""
    record = db.session.get(ServiceRecord, record_id)
    if record is None or not can_view(user, record.booking):
        raise NotFound(_("No service record with this number."))
    booking = record.booking
    if not (manages(user, booking.instrument) or is_booking_enterprise(user, booking)):
        raise Forbidden(_("Only the provider and the enterprise of this service can add files."))
    stored = uploads.store_upload(stream, filename)
    try:
        with serialized_write():
            row = add_file(user, record_id, kind, stored)
            db.session.commit()
    except BaseException:
        uploads.discard(stored.stored_name)
        raise
    return row


def add_file(user: User, record_id: int, kind: FileKind, stored: uploads.StoredFile) -> ServiceFile:
    """The row and the audit entry of a checked, stored file (committed by the caller)."""
    held_uploads.settle(stored.stored_name)  # before the commit: at worst an unused file stays behind
    row = ServiceFile.from_upload(stored, record_id, kind, user.id)
    db.session.add(row)
    db.session.flush()
    audit.record(
        "service.file_added",
        "service_record",
        record_id,
        after={"file": row.id, "kind": kind.value, "sha256": stored.sha256, "size": stored.size},
        actor_id=user.id,
    )
    return row


def get_service_file(user: User, record_id: int, file_id: int) -> ServiceFile:
    row = db.session.get(ServiceFile, file_id)
    if row is None or row.record_id != record_id or not can_view(user, row.record.booking):
        raise NotFound(_("No such file."))
    return row
