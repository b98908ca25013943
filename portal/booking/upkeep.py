"""Providers keep their instruments current: saving a catalogue entry, and what a status change strands.

The fields and their rules are the catalogue's (portal.catalog.editing). What only the booking area
knows is added here: a status in which an instrument cannot be booked strands its confirmed bookings
that are still to come. The page lists them before anything is saved; saving tells their enterprises
(with the operator's phone) in the same transaction. The bookings themselves stay confirmed: the
provider decides, booking by booking, whether a repair will be done in time or to cancel with a
reason (docs/instruments.md).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from portal.accounts.members import users_of_enterprise
from portal.accounts.models import User
from portal.booking.models import Booking, BookingMode, BookingState
from portal.booking.services import BOOKABLE_STATUSES, booking_when
from portal.catalog import editing
from portal.catalog.models import STATUS_FILE_NAMES, Instrument
from portal.core import clock
from portal.core.database import locked, serialized_write
from portal.core.errors import ServiceError
from portal.extensions import db
from portal.notifications.services import notify


class ConfirmationNeeded(ServiceError):
    """The edit strands bookings the person saving it has not seen yet; nothing was written."""

    code = "confirmation_needed"
    status = 409

    def __init__(self, bookings: list[Booking]) -> None:
        super().__init__(
            _("This status stops the instrument's confirmed bookings; please confirm."),
            {"bookings": [b.id for b in bookings]},
        )
        self.bookings = bookings


@dataclass
class RecordUpdate:
    instrument: Instrument
    changes: dict[str, editing.Change]
    told: list[Booking] = field(default_factory=list)


def stranded_bookings(instrument: Instrument) -> list[Booking]:
    """Confirmed bookings still to come: machine time not yet over, samples not yet measured."""
    return list(
        db.session.scalars(
            select(Booking)
            .where(
                Booking.instrument_id == instrument.id,
                Booking.state == BookingState.CONFIRMED,
                or_(Booking.mode == BookingMode.SAMPLE, Booking.ends_at > clock.utcnow()),
            )
            .options(joinedload(Booking.enterprise))
            .order_by(Booking.starts_at.is_(None), Booking.starts_at, Booking.id)
        )
    )


def _stops_bookings(change: editing.Change | None) -> bool:
    bookable = BOOKABLE_STATUSES
    return change is not None and change.before in bookable and change.after not in bookable


def _tell(instrument: Instrument, bookings: list[Booking], event_id: int) -> None:
    for booking in bookings:
        notify(
            users_of_enterprise(booking.enterprise_id),
            "instrument.unavailable",
            # One notice per status change: a later change of the same booking's instrument is news again.
            f"booking:{booking.id}:instrument-unavailable:{event_id}",
            payload={
                "instrument": instrument.name,
                "institution": instrument.institution.name,
                "status": STATUS_FILE_NAMES[instrument.status],
                "when": booking_when(booking),
                "operator": instrument.operator_name or "",
                "phone": instrument.operator_phone or "",
                "booking": booking.id,
            },
            link=f"/bookings/{booking.id}",
        )


def update_instrument(
    user: User,
    code: str,
    values: dict[str, Any],
    *,
    typed: bool,
    acknowledged: Collection[int] | None = None,
) -> RecordUpdate:
    """Change fields of an instrument's catalogue entry, each checked by the import's rules.

    `typed`: JSON values (the API), else text as typed on the page. `acknowledged`: the bookings the
    person saving has been shown; if a status change would strand others, ConfirmationNeeded lists
    them and nothing is written. None (the API) saves without asking. Either way the stranded
    bookings' enterprises are told.
    """
    instrument = editing.editable_instrument(user, code)
    with serialized_write():
        instrument = locked(Instrument, instrument.id)
        changes = editing.parse_changes(instrument, values, typed=typed)
        stranded = stranded_bookings(instrument) if _stops_bookings(changes.get("status")) else []
        if acknowledged is not None and {b.id for b in stranded} - set(acknowledged):
            raise ConfirmationNeeded(stranded)
        if not changes:
            db.session.rollback()
            return RecordUpdate(instrument, changes)
        event = editing.apply_changes(instrument, changes, user)
        db.session.flush()
        _tell(instrument, stranded, event.id)
        db.session.commit()
    return RecordUpdate(instrument, changes, stranded)
