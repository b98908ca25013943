"""Categories, instruments, their weekly opening hours and photos, plus the catalogue's cache version."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from enum import StrEnum

from flask import has_request_context, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    Time,
    event,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal.accounts.models import Institution
from portal.core.audit import ACTION_LABELS
from portal.core.clock import current_time
from portal.core.text import grams, normalize
from portal.core.types import StringList, UTCDateTime, str_enum
from portal.extensions import db


class InstrumentStatus(StrEnum):
    NORMAL = "normal"
    STANDBY = "standby"
    OCCASIONAL_FAULT = "occasional_fault"
    FREQUENT_FAULT = "frequent_fault"
    AWAITING_REPAIR = "awaiting_repair"
    AWAITING_SCRAP = "awaiting_scrap"


# The network's own words, as used in catalogue files (运行状态 column).
STATUS_FILE_NAMES = {
    InstrumentStatus.NORMAL: "正常",
    InstrumentStatus.STANDBY: "待机",
    InstrumentStatus.OCCASIONAL_FAULT: "偶有故障",
    InstrumentStatus.FREQUENT_FAULT: "故障频繁",
    InstrumentStatus.AWAITING_REPAIR: "待修",
    InstrumentStatus.AWAITING_SCRAP: "待报废",
}

STATUS_LABELS = {
    InstrumentStatus.NORMAL: _l("In service"),
    InstrumentStatus.STANDBY: _l("Standby"),
    InstrumentStatus.OCCASIONAL_FAULT: _l("Occasional faults"),
    InstrumentStatus.FREQUENT_FAULT: _l("Frequent faults"),
    InstrumentStatus.AWAITING_REPAIR: _l("Awaiting repair"),
    InstrumentStatus.AWAITING_SCRAP: _l("Awaiting disposal"),
}


# What histories call the catalogue's own audit actions.
ACTION_LABELS.update(
    {
        "instrument.imported": _l("Added by a catalogue import"),
        "instrument.updated": _l("Catalogue entry changed"),
        "instrument.photo_added": _l("Photo added"),
        "instrument.photo_removed": _l("Photo removed"),
        "instrument.main_photo_chosen": _l("Main photo chosen"),
    }
)


class SharingMode(StrEnum):
    OPEN = "open"
    CONDITIONAL = "conditional"


SHARING_LABELS = {
    SharingMode.OPEN: _l("Open to all"),
    SharingMode.CONDITIONAL: _l("Open on conditions"),
}


class Category(db.Model):
    """Two-level instrument classification: '01' 分析仪器, '0102' 质谱仪器 under it."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(4), unique=True)
    name: Mapped[str] = mapped_column(String(40))
    name_en: Mapped[str] = mapped_column(String(80))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    position: Mapped[int] = mapped_column(SmallInteger, default=0)

    parent: Mapped[Category | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Category]] = relationship(back_populates="parent", order_by="Category.code")

    @property
    def label(self) -> str:
        """The name in the interface language."""
        return self.name_en if str(get_locale()) == "en" else self.name

    @property
    def parent_code(self) -> str | None:
        return self.code[:2] if len(self.code) == 4 else None

    def __repr__(self) -> str:
        return f"<Category {self.code} {self.name}>"


class Instrument(db.Model):
    """A networked large instrument, with the fields of the national reporting interface."""

    __tablename__ = "instruments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str | None] = mapped_column(String(200))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    model: Mapped[str | None] = mapped_column(String(120))
    manufacturer: Mapped[str | None] = mapped_column(String(120))
    country_of_origin: Mapped[str | None] = mapped_column(String(40))
    original_value_fen: Mapped[int] = mapped_column(BigInteger, index=True)
    in_service_on: Mapped[date | None] = mapped_column(Date)
    specs: Mapped[str | None] = mapped_column(Text)
    functions: Mapped[str | None] = mapped_column(Text)
    service_content: Mapped[str | None] = mapped_column(Text)
    status: Mapped[InstrumentStatus] = mapped_column(
        str_enum(InstrumentStatus), default=InstrumentStatus.NORMAL, index=True
    )
    sharing_mode: Mapped[SharingMode] = mapped_column(str_enum(SharingMode), default=SharingMode.OPEN)
    fee_per_hour_fen: Mapped[int | None] = mapped_column(BigInteger)
    fee_per_sample_fen: Mapped[int | None] = mapped_column(BigInteger)
    # The fee a list shows and filters on: per hour where there is one, else per sample.
    headline_fee_fen: Mapped[int | None] = mapped_column(BigInteger, index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    county: Mapped[str] = mapped_column(String(20), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    operator_name: Mapped[str | None] = mapped_column(String(40))
    operator_phone: Mapped[str | None] = mapped_column(String(40))
    # Derived from the searchable fields on every write (see _refresh_derived below).
    search_text: Mapped[str] = mapped_column(Text, default="")
    search_grams: Mapped[list[str]] = mapped_column(StringList, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time, onupdate=current_time)

    category: Mapped[Category] = relationship()
    institution: Mapped[Institution] = relationship()
    opening_hours: Mapped[list[OpeningHours]] = relationship(
        back_populates="instrument",
        cascade="all, delete-orphan",
        order_by="(OpeningHours.weekday, OpeningHours.opens_at)",
    )
    # The main photo first, then in the order they were added.
    photos: Mapped[list[InstrumentPhoto]] = relationship(
        back_populates="instrument",
        cascade="all, delete-orphan",
        order_by="(InstrumentPhoto.is_main.desc(), InstrumentPhoto.id)",
    )

    __table_args__ = (
        CheckConstraint("original_value_fen >= 0", name="original_value_not_negative"),
        CheckConstraint("fee_per_hour_fen IS NULL OR fee_per_hour_fen >= 0", name="hour_fee_not_negative"),
        CheckConstraint(
            "fee_per_sample_fen IS NULL OR fee_per_sample_fen >= 0", name="sample_fee_not_negative"
        ),
        # Only PostgreSQL can index an array; the embedded SQLite demo scans its 1202 rows. No
        # fastupdate: a pending list of new entries slows every search until a vacuum (0007).
        Index(
            "ix_instruments_search_grams",
            "search_grams",
            postgresql_using="gin",
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
    )

    SEARCH_FIELDS = ("code", "name", "name_en", "model", "manufacturer")

    @classmethod
    def derived_values(cls, values: dict) -> dict:
        """The search columns and headline fee for these field values (also used by bulk inserts)."""
        searchable = [values.get(f) for f in cls.SEARCH_FIELDS]
        hour, sample = values.get("fee_per_hour_fen"), values.get("fee_per_sample_fen")
        return {
            "search_text": "\n".join(normalize(v) for v in searchable),
            "search_grams": grams(searchable),
            "headline_fee_fen": hour if hour is not None else sample,
        }

    def refresh_derived(self) -> None:
        """Recompute the derived columns from the fields they come from."""
        fields = (*self.SEARCH_FIELDS, "fee_per_hour_fen", "fee_per_sample_fen")
        for name, value in self.derived_values({f: getattr(self, f) for f in fields}).items():
            setattr(self, name, value)

    @property
    def main_photo(self) -> InstrumentPhoto | None:
        return self.photos[0] if self.photos else None

    def __repr__(self) -> str:
        return f"<Instrument {self.code} {self.name}>"


@event.listens_for(Instrument, "before_insert")
@event.listens_for(Instrument, "before_update")
def _refresh_derived(mapper, connection, target: Instrument) -> None:
    target.refresh_derived()


class OpeningHours(db.Model):
    """One opening interval of an instrument's week, in Asia/Shanghai wall-clock time."""

    __tablename__ = "opening_hours"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(SmallInteger)  # 0 = Monday, as datetime.weekday()
    opens_at: Mapped[time] = mapped_column(Time)
    closes_at: Mapped[time] = mapped_column(Time)

    instrument: Mapped[Instrument] = relationship(back_populates="opening_hours")

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday_range"),
        CheckConstraint("opens_at < closes_at", name="opens_before_closes"),
    )

    def __repr__(self) -> str:
        return f"<OpeningHours {self.instrument_id} d{self.weekday} {self.opens_at}-{self.closes_at}>"


class InstrumentPhoto(db.Model):
    """A photo of an instrument as the portal re-encoded it, with its thumbnail; files under UPLOAD_FOLDER."""

    __tablename__ = "instrument_photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id", ondelete="CASCADE"), index=True)
    # Our own random names (never the uploader's), so a URL always means the same picture.
    stored_name: Mapped[str] = mapped_column(String(80), unique=True)
    thumbnail_name: Mapped[str] = mapped_column(String(80), unique=True)
    content_type: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    caption: Mapped[str | None] = mapped_column(String(200))
    is_main: Mapped[bool] = mapped_column(Boolean, default=False)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    instrument: Mapped[Instrument] = relationship(back_populates="photos")

    __table_args__ = (
        # At most one main photo per instrument.
        Index(
            "uq_instrument_photos_main",
            "instrument_id",
            unique=True,
            sqlite_where=text("is_main"),
            postgresql_where=text("is_main"),
        ),
    )

    def __repr__(self) -> str:
        return f"<InstrumentPhoto {self.id} of {self.instrument_id}{' main' if self.is_main else ''}>"


class CatalogState(db.Model):
    """A single row whose version every catalogue change bumps, so caches keyed by it never go stale."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(32))

    def __repr__(self) -> str:
        return f"<CatalogState v{self.version}>"


# Anything that changes what the catalogue shows replaces the cache version in the same transaction.
_CATALOG_TYPES = (Instrument, OpeningHours, InstrumentPhoto, Institution, Category)


# Where the request remembers the version it read (portal.catalog.services.catalog_version).
VERSION_ATTRIBUTE = "_portal_catalog_version"


def forget_catalog_version() -> None:
    """The version just changed: this request must read it again."""
    if has_request_context() and hasattr(request, VERSION_ATTRIBUTE):
        delattr(request, VERSION_ATTRIBUTE)


@event.listens_for(Session, "after_flush")
def _bump_version_on_catalog_change(session: Session, flush_context) -> None:
    changed = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(obj, _CATALOG_TYPES) for obj in changed):
        session.connection().execute(
            update(CatalogState).where(CatalogState.id == 1).values(version=uuid.uuid4().hex)
        )
        forget_catalog_version()
