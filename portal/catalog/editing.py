"""Keeping an instrument's catalogue entry current: who may, each field by the import's rules, photos.

The owning institution's providers and the administrators edit an instrument; to anyone else it does
not exist (the same answer as for a code nobody uses). Every value is judged by the catalogue
import's rule for its column (portal.catalog.importer), whether it was typed on a page (in the
file's units, yuan and 万元) or sent to the API (amounts in fen): what an import would refuse cannot
come in by another door. The transaction that saves a record is the booking area's
(portal.booking.upkeep), because a status change there concerns bookings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import IO, Any

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from portal.accounts.models import User
from portal.catalog.columns import YES_NO_ATTRS
from portal.catalog.importer import COLUMN_OF, Lookups, RowError, parse_cell
from portal.catalog.models import NATIONAL_FIELDS, Category, Instrument, InstrumentPhoto, SharingMode

# Re-exported: the record's editors have always asked editing.
from portal.catalog.ownership import editable_instrument as editable_instrument
from portal.catalog.ownership import may_edit as may_edit
from portal.core import audit, images, uploads
from portal.core.database import after_commit, locked, serialized_write
from portal.core.errors import NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.money import fen_to_wan, fen_to_yuan
from portal.extensions import db

# What an edit may change (the API's names). The code names the instrument and the host institution
# owns it: neither is edited here.
EDITABLE_FIELDS = (
    "name",
    "name_en",
    "category",
    "model",
    "manufacturer",
    "country_of_origin",
    "original_value_fen",
    "in_service_on",
    "county",
    "address",
    "status",
    "sharing_mode",
    "fee_per_hour_fen",
    "fee_per_sample_fen",
    "specs",
    "functions",
    "service_content",
    "operator_name",
    "operator_phone",
    *NATIONAL_FIELDS,  # the national platform's (issue 19)
)
# A file may leave these empty (the host's county, 正常); a record always has them.
REQUIRED_HERE = frozenset({"county", "status", "sharing_mode"})
# Amounts the API sends in fen, as the file writes them (so its money rule judges them).
FILE_UNITS: dict[str, Callable[[int], Decimal]] = {
    "original_value_fen": fen_to_wan,
    "fee_per_hour_fen": fen_to_yuan,
    "fee_per_sample_fen": fen_to_yuan,
}
CAPTION_LENGTH = 200
MAX_PHOTOS = 12


@dataclass(frozen=True)
class Change:
    before: Any
    after: Any


# --- the record's fields ----------------------------------------------------------------------------


def _cell(field: str, value: Any, *, typed: bool) -> str:
    """A value as a catalogue file's cell would hold it."""
    if value is None:
        return ""
    if typed and field in FILE_UNITS and isinstance(value, int):
        return str(FILE_UNITS[field](value))
    return str(value).strip()


def _sharing_mode(text: str) -> SharingMode:
    # Not a column of the catalogue file, so its one rule is here.
    if text not in SharingMode.__members__.values():
        allowed = " / ".join(m.value for m in SharingMode)
        raise RowError(
            _("“%(value)s” is not a sharing mode; use one of %(allowed)s.", value=text, allowed=allowed)
        )
    return SharingMode(text)


def _parse(field: str, text: str, lookups: Lookups) -> Any:
    value: Any
    if field == "sharing_mode":
        value = _sharing_mode(text) if text else None
    else:
        value = parse_cell(COLUMN_OF["category_code" if field == "category" else field], text)
    if value is None and field in REQUIRED_HERE:
        raise RowError(_("Required, but empty."))
    if value is None and field in YES_NO_ATTRS:
        value = False  # an empty answer is 否, as in the file
    if field == "category":
        lookups.category(value)
    elif field == "county":
        lookups.county(value)
    return value


def current_value(instrument: Instrument, field: str) -> Any:
    """A field of the record as an edit compares it (the category by its code)."""
    return instrument.category.code if field == "category" else getattr(instrument, field)


def parse_changes(instrument: Instrument, values: dict[str, Any], *, typed: bool) -> dict[str, Change]:
    """The fields `values` would change, each checked; ValidationFailed names every field that is wrong.

    `typed`: the values came as JSON (amounts in fen, a date as text), not as text typed on a page.
    """
    lookups = Lookups.load()
    problems: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for field, value in values.items():
        if field not in EDITABLE_FIELDS:
            problems[field] = _("This field cannot be changed.")
            continue
        try:
            parsed[field] = _parse(field, _cell(field, value, typed=typed), lookups)
        except RowError as error:
            problems[field] = str(error)
    if problems:
        raise ValidationFailed(_("Some fields are not valid."), problems)
    changes = {}
    for field, after in parsed.items():
        before = current_value(instrument, field)
        if before != after:
            changes[field] = Change(before, after)
    return changes


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return value.value if isinstance(value, Enum) else value


def apply_changes(instrument: Instrument, changes: dict[str, Change], actor: User) -> AuditEvent:
    """Set the changed fields and write the audit row naming only them, before and after (no commit)."""
    for field, change in changes.items():
        if field == "category":
            instrument.category = db.session.execute(
                select(Category).where(Category.code == change.after)
            ).scalar_one()
        else:
            setattr(instrument, field, change.after)
    return audit.record(
        "instrument.updated",
        "instrument",
        instrument.code,
        before={field: _plain(change.before) for field, change in changes.items()},
        after={field: _plain(change.after) for field, change in changes.items()},
        actor_id=actor.id,
    )


# What the record page lists as its recent changes.
HISTORY_ACTIONS = (
    "instrument.imported",
    "instrument.updated",
    "instrument.photo_added",
    "instrument.main_photo_chosen",
    "instrument.photo_removed",
)


def recent_changes(instrument: Instrument, limit: int = 20) -> list[AuditEvent]:
    """The latest changes to the catalogue entry and its photos, newest first."""
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(
                AuditEvent.object_type == "instrument",
                AuditEvent.object_id == instrument.code,
                AuditEvent.action.in_(HISTORY_ACTIONS),
            )
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        )
    )


# --- photos -----------------------------------------------------------------------------------------


def _write(image: images.EncodedImage, name: str) -> None:
    with (uploads.upload_root() / name).open("xb") as out:
        out.write(image.data)


def _discard_after_commit(*names: str) -> None:
    """Remove files once their row is gone for good (a rollback keeps them)."""

    def discard() -> None:
        for name in names:
            uploads.discard(name)

    after_commit(discard)


def add_photo(user: User, code: str, stream: IO[bytes], caption: str | None) -> InstrumentPhoto:
    """Check a photo by its content, re-encode it with a thumbnail and add it (the first one is the main)."""
    instrument = editable_instrument(user, code)
    caption = " ".join((caption or "").split()) or None
    if caption and len(caption) > CAPTION_LENGTH:
        message = _("At most %(n)d characters (this has %(m)d).", n=CAPTION_LENGTH, m=len(caption))
        raise ValidationFailed(message, {"caption": message})
    config = current_app.config
    photo = images.process_photo(
        stream, max_bytes=config["PHOTO_MAX_BYTES"], max_pixels=config["PHOTO_MAX_PIXELS"]
    )
    with serialized_write():
        instrument = locked(Instrument, instrument.id)
        count = db.session.execute(
            select(func.count())
            .select_from(InstrumentPhoto)
            .where(InstrumentPhoto.instrument_id == instrument.id)
        ).scalar_one()
        if count >= MAX_PHOTOS:
            message = _("An instrument has at most %(n)d photos; delete one first.", n=MAX_PHOTOS)
            raise ValidationFailed(message, {"file": message})
        token = uuid.uuid4().hex
        display = f"photo-{token}{photo.display.extension}"
        thumbnail = f"photo-{token}-thumb{photo.thumbnail.extension}"
        row = InstrumentPhoto(
            instrument_id=instrument.id,
            stored_name=display,
            thumbnail_name=thumbnail,
            content_type=photo.display.content_type,
            width=photo.display.width,
            height=photo.display.height,
            size=len(photo.display.data),
            caption=caption,
            is_main=count == 0,
            uploaded_by_id=user.id,
        )
        try:
            _write(photo.display, display)
            _write(photo.thumbnail, thumbnail)
            db.session.add(row)
            db.session.flush()
            audit.record(
                "instrument.photo_added",
                "instrument",
                instrument.code,
                after={"photo": row.id, "caption": caption, "main": row.is_main},
                actor_id=user.id,
            )
            db.session.commit()
        except BaseException:
            db.session.rollback()
            uploads.discard(display)
            uploads.discard(thumbnail)
            raise
    return row


@contextmanager
def _photo_change(user: User, code: str, photo_id: int) -> Iterator[tuple[Instrument, InstrumentPhoto]]:
    """The instrument, locked, and its photo, in a write transaction the caller commits."""
    instrument = editable_instrument(user, code)
    with serialized_write():
        instrument = locked(Instrument, instrument.id)
        photo = db.session.get(InstrumentPhoto, photo_id)
        if photo is None or photo.instrument_id != instrument.id:
            raise NotFound(_("No such photo."))
        yield instrument, photo


def choose_main_photo(user: User, code: str, photo_id: int) -> InstrumentPhoto:
    """Make this photo the one lists and the record show first."""
    with _photo_change(user, code, photo_id) as (instrument, photo):
        if not photo.is_main:
            for other in instrument.photos:
                other.is_main = False
            db.session.flush()  # the old main gives way before the new one takes the unique slot
            photo.is_main = True
            audit.record(
                "instrument.main_photo_chosen",
                "instrument",
                instrument.code,
                after={"photo": photo.id},
                actor_id=user.id,
            )
        db.session.commit()
    return photo


def delete_photo(user: User, code: str, photo_id: int) -> None:
    """Remove a photo and its files; if it was the main one, the oldest remaining photo takes its place."""
    with _photo_change(user, code, photo_id) as (instrument, photo):
        names = (photo.stored_name, photo.thumbnail_name)
        audit.record(
            "instrument.photo_removed",
            "instrument",
            instrument.code,
            before={"photo": photo.id, "caption": photo.caption, "main": photo.is_main},
            actor_id=user.id,
        )
        was_main = photo.is_main
        instrument.photos.remove(photo)
        db.session.flush()
        if was_main and instrument.photos:
            min(instrument.photos, key=lambda p: p.id).is_main = True
        _discard_after_commit(*names)
        db.session.commit()


def photo_file(code: str, name: str) -> tuple[str, str]:
    """(path, content type) of a photo or thumbnail file of this instrument; NotFound otherwise."""
    content_type = db.session.scalar(
        select(InstrumentPhoto.content_type)
        .join(Instrument, Instrument.id == InstrumentPhoto.instrument_id)
        .where(
            Instrument.code == code,
            or_(InstrumentPhoto.stored_name == name, InstrumentPhoto.thumbnail_name == name),
        )
    )
    path = uploads.stored_path(name) if content_type else None
    if content_type is None or path is None or not path.is_file():
        raise NotFound(_("No such photo."))
    return str(path), content_type
