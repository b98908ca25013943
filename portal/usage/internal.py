"""The owning institution's own use of its instruments (issue 19): what no booking records.

Its providers record each stretch (their research, teaching, calibration), so that the national report
knows the hours an instrument ran (runMachine) as well as the hours it served others. A record is
deleted, never edited: the audit log keeps both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import User
from portal.booking.models import PurposeCategory
from portal.booking.records import queue_usage_tally
from portal.catalog.models import Instrument
from portal.catalog.ownership import owns
from portal.catalog.services import get_instrument
from portal.core import audit, clock
from portal.core.errors import NotFound, ValidationFailed
from portal.extensions import db
from portal.usage.models import InternalUse

LONGEST = timedelta(hours=24)
MAX_NOTE = 500
MAX_NAME = 40


@dataclass(frozen=True)
class InternalUseData:
    started_at: datetime
    ended_at: datetime
    user_name: str = ""
    purpose_category: str = PurposeCategory.RESEARCH.value
    note: str = ""


def own_instrument(user: User, code: str) -> Instrument:
    """The instrument, if the user is one of its institution's providers; else NotFound, as for a
    code nobody uses."""
    instrument = get_instrument(code)
    if not owns(user, instrument):
        raise NotFound(_("No instrument has the code %(code)s.", code=code))
    return instrument


def _check(data: InternalUseData) -> dict[str, str]:
    problems: dict[str, str] = {}
    if data.ended_at <= data.started_at:
        problems["ended_at"] = _("The end must be after the start.")
    elif data.ended_at - data.started_at > LONGEST:
        problems["ended_at"] = _("Record one day at most at a time.")
    if data.ended_at > clock.utcnow():
        problems["ended_at"] = _("Record use that has ended, not use to come.")
    if data.purpose_category not in {c.value for c in PurposeCategory}:
        problems["purpose_category"] = _("Choose what the use was for.")
    if len(data.user_name) > MAX_NAME:
        problems["user_name"] = _("At most %(n)d characters.", n=MAX_NAME)
    if len(data.note) > MAX_NOTE:
        problems["note"] = _("At most %(n)d characters.", n=MAX_NOTE)
    return problems


def record_internal_use(user: User, code: str, data: InternalUseData) -> InternalUse:
    """Record a stretch of the institution's own use, with its audit row."""
    instrument = own_instrument(user, code)
    problems = _check(data)
    if problems:
        raise ValidationFailed(_("Please correct the marked fields."), problems)
    row = InternalUse(
        instrument_id=instrument.id,
        started_at=data.started_at,
        ended_at=data.ended_at,
        user_name=data.user_name.strip(),
        purpose_category=data.purpose_category,
        note=data.note.strip(),
        recorded_by_id=user.id,
    )
    db.session.add(row)
    db.session.flush()
    audit.record(
        "internal_use.recorded",
        "internal_use",
        row.id,
        after={
            "instrument": instrument.code,
            "started_at": clock.iso_utc(row.started_at),
            "ended_at": clock.iso_utc(row.ended_at),
            "user_name": row.user_name,
            "purpose_category": row.purpose_category,
        },
        actor_id=user.id,
    )
    queue_usage_tally(instrument.id, row.started_at)
    db.session.commit()
    return row


def delete_internal_use(user: User, code: str, use_id: int) -> None:
    """Take back a wrong record (its audit row keeps what it said)."""
    instrument = own_instrument(user, code)
    row = db.session.get(InternalUse, use_id)
    if row is None or row.instrument_id != instrument.id:
        raise NotFound(_("No such record of internal use."))
    audit.record(
        "internal_use.deleted",
        "internal_use",
        row.id,
        before={
            "instrument": instrument.code,
            "started_at": clock.iso_utc(row.started_at),
            "ended_at": clock.iso_utc(row.ended_at),
            "user_name": row.user_name,
        },
        actor_id=user.id,
    )
    queue_usage_tally(instrument.id, row.started_at)
    db.session.delete(row)
    db.session.commit()


def recent_internal_use(instrument: Instrument, limit: int = 50) -> list[InternalUse]:
    """The latest records of the instrument's internal use, newest first."""
    return list(
        db.session.scalars(
            select(InternalUse)
            .where(InternalUse.instrument_id == instrument.id)
            .order_by(InternalUse.started_at.desc(), InternalUse.id.desc())
            .limit(limit)
        )
    )
