"""Categories, instruments, their weekly opening hours and photos, plus the catalogue's cache version."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

from flask import has_request_context, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    JSON,
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
    UniqueConstraint,
    bindparam,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from portal.accounts.models import Institution, User
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.clock import current_time
from portal.core.database import table_of
from portal.core.text import grams, normalize, pinyin_forms
from portal.core.types import StringList, UTCDateTime, str_enum
from portal.extensions import Model


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

# How the instrument came to its owner (the national record's instrSource), as files and pages write it.
ACQUISITIONS = ("购置", "研制", "捐赠", "其他")
# The instrument's fields for the national platform (issue 19): edited, imported and shown together.
NATIONAL_FIELDS = (
    "acquisition",
    "funding_source",
    "subject_area",
    "department",
    "user_requirements",
    "specialised",
    "customs_supervised",
    "customs_declaration_number",
    "customs_import_date",
    "customs_item_number",
)

STATUS_LABELS = {
    InstrumentStatus.NORMAL: _l("In service"),
    InstrumentStatus.STANDBY: _l("Standby"),
    InstrumentStatus.OCCASIONAL_FAULT: _l("Occasional faults"),
    InstrumentStatus.FREQUENT_FAULT: _l("Frequent faults"),
    InstrumentStatus.AWAITING_REPAIR: _l("Awaiting repair"),
    InstrumentStatus.AWAITING_SCRAP: _l("Awaiting disposal"),
}


class SharingMode(StrEnum):
    OPEN = "open"
    CONDITIONAL = "conditional"


SHARING_LABELS = {
    SharingMode.OPEN: _l("Open to all"),
    SharingMode.CONDITIONAL: _l("Open on conditions"),
}


class Category(Model):
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


class Instrument(Model):
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
    # The enterprise price per hour and per sample (issue 17: a price table's enterprise rows set them);
    # the catalogue filters and sorts on each apart.
    fee_per_hour_fen: Mapped[int | None] = mapped_column(BigInteger, index=True)
    fee_per_sample_fen: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # The fee a list shows and filters on: per hour where there is one, else per sample.
    headline_fee_fen: Mapped[int | None] = mapped_column(BigInteger, index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    county: Mapped[str] = mapped_column(String(20), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    operator_name: Mapped[str | None] = mapped_column(String(40))
    operator_phone: Mapped[str | None] = mapped_column(String(40))
    # The national platform's fields (issue 19; portal.reporting.nrii maps them to its names). Each is
    # kept by the owning provider and travels through the catalogue file.
    acquisition: Mapped[str | None] = mapped_column(String(4))  # 购置 / 研制 / 捐赠 / 其他 (instrSource)
    funding_source: Mapped[str | None] = mapped_column(String(60))  # main funding source (funds)
    subject_area: Mapped[str | None] = mapped_column(String(60))  # subject
    department: Mapped[str | None] = mapped_column(String(80))  # the owner's department (insideDepart)
    user_requirements: Mapped[str | None] = mapped_column(Text)  # 用户须知 (requirement)
    # A specialised instrument (专用) is held to the lower yearly norm of effective hours.
    specialised: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Imported duty-free under customs supervision (instrSupervise), with the declaration's details.
    customs_supervised: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    customs_declaration_number: Mapped[str | None] = mapped_column(String(40))
    customs_import_date: Mapped[date | None] = mapped_column(Date)
    customs_item_number: Mapped[str | None] = mapped_column(String(20))
    # Derived from the searchable fields on every write (see _refresh_derived below).
    search_text: Mapped[str] = mapped_column(Text, default="")
    search_grams: Mapped[list[str]] = mapped_column(StringList, default=list)
    # Full pinyin and initials of the name and the host's name, one line each ("zhipuyi zpy"); their
    # grams are in search_grams too, so a pinyin keyword uses the same index (0017).
    search_pinyin: Mapped[str] = mapped_column(Text, default="")
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
    # The fields whose Chinese is also indexed as pinyin (the host's name is the other one).
    PINYIN_FIELDS = ("name",)

    @classmethod
    def derived_values(cls, values: dict, institution_name: str | None = None) -> dict:
        """The search columns and headline fee for these field values and the host's name.

        Also used by bulk inserts, and by a host's renaming (`reindex_institution`).
        """
        searchable = [*(values.get(f) for f in cls.SEARCH_FIELDS), institution_name]
        spoken = [values.get(f) for f in cls.PINYIN_FIELDS] + [institution_name]
        pinyin = [" ".join(pinyin_forms(v)) for v in spoken]
        hour, sample = values.get("fee_per_hour_fen"), values.get("fee_per_sample_fen")
        return {
            "search_text": "\n".join(normalize(v) for v in searchable),
            "search_grams": grams([*searchable, *pinyin]),
            "search_pinyin": "\n".join(p for p in pinyin if p),
            "headline_fee_fen": hour if hour is not None else sample,
        }

    def refresh_derived(self, institution_name: str | None = None) -> None:
        """Recompute the derived columns from the fields they come from."""
        fields = (*self.SEARCH_FIELDS, "fee_per_hour_fen", "fee_per_sample_fen")
        values = {f: getattr(self, f) for f in fields}
        for name, value in self.derived_values(values, institution_name).items():
            setattr(self, name, value)

    @property
    def main_photo(self) -> InstrumentPhoto | None:
        return self.photos[0] if self.photos else None

    def __repr__(self) -> str:
        return f"<Instrument {self.code} {self.name}>"


@event.listens_for(Instrument, "before_insert")
@event.listens_for(Instrument, "before_update")
def _refresh_derived(mapper, connection, target: Instrument) -> None:
    target.refresh_derived(_institution_name(connection, target))


def _institution_name(connection, target: Instrument) -> str | None:
    """The host's name as it will be after this flush (the relationship when loaded, else the row)."""
    loaded = target.__dict__.get("institution")
    if loaded is not None and loaded.id == target.institution_id:
        return loaded.name
    if target.institution_id is None:
        return None
    return connection.scalar(select(Institution.name).where(Institution.id == target.institution_id))


def reindex_institution(connection, institution_id: int, name: str | None) -> int:
    """Recompute the search columns of every instrument of a host under its (new) name; how many."""
    fields = (*Instrument.SEARCH_FIELDS, "fee_per_hour_fen", "fee_per_sample_fen")
    table = table_of(Instrument)
    rows = connection.execute(
        select(table.c.id, *(table.c[f] for f in fields)).where(table.c.institution_id == institution_id)
    ).all()
    updates = []
    for row in rows:
        derived = Instrument.derived_values(dict(zip(fields, row[1:], strict=True)), name)
        updates.append({"b_id": row.id, **{k: derived[k] for k in SEARCH_COLUMNS}})
    if updates:
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values({k: bindparam(k) for k in SEARCH_COLUMNS}),
            updates,
        )
    return len(updates)


SEARCH_COLUMNS = ("search_text", "search_grams", "search_pinyin")


@event.listens_for(Session, "after_flush")
def _reindex_renamed_institutions(session: Session, flush_context) -> None:
    # The host's name is searched: a renamed host's instruments are reindexed in the same transaction.
    for obj in session.dirty:
        if isinstance(obj, Institution) and inspect(obj).attrs.name.history.has_changes():
            reindex_institution(session.connection(), obj.id, obj.name)


class OpeningHours(Model):
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


class OpeningWeek(Model):
    """An instrument's weekly opening hours summed per weekday, in seconds (portal.catalog.opening):
    what a period's open time is made of, one row per instrument instead of one per interval, so the
    dashboard's utilisation of a province reads 100,000 rows, not 700,000. Rewritten with the hours."""

    __tablename__ = "opening_weeks"

    instrument_id: Mapped[int] = mapped_column(
        ForeignKey("instruments.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # Monday … Sunday, as datetime.weekday().
    day0: Mapped[int] = mapped_column(Integer, default=0)
    day1: Mapped[int] = mapped_column(Integer, default=0)
    day2: Mapped[int] = mapped_column(Integer, default=0)
    day3: Mapped[int] = mapped_column(Integer, default=0)
    day4: Mapped[int] = mapped_column(Integer, default=0)
    day5: Mapped[int] = mapped_column(Integer, default=0)
    day6: Mapped[int] = mapped_column(Integer, default=0)


class InstrumentPhoto(Model):
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


class CatalogState(Model):
    """A single row whose version every catalogue change bumps, so caches keyed by it never go stale."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(32))

    def __repr__(self) -> str:
        return f"<CatalogState v{self.version}>"


class SearchSynonym(Model):
    """A short form the field uses and what it stands for: a search for `term` also finds `expansion`.

    Seeded by migration 0017 from portal/catalog/synonyms.tsv; administrators add more in the console.
    Both sides are stored normalised (portal.core.text.normalize). An expansion of several words
    (液质 → "液相色谱 质谱") finds the instruments holding every one of them, in any order.
    """

    __tablename__ = "search_synonyms"

    id: Mapped[int] = mapped_column(primary_key=True)
    term: Mapped[str] = mapped_column(String(40), index=True)
    expansion: Mapped[str] = mapped_column(String(80))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    __table_args__ = (
        UniqueConstraint("term", "expansion", name="uq_search_synonyms_term_expansion"),
        CheckConstraint("term <> '' AND expansion <> '' AND term <> expansion", name="synonym_not_empty"),
    )

    def __repr__(self) -> str:
        return f"<SearchSynonym {self.term} → {self.expansion}>"


# Anything that changes what the catalogue shows replaces the cache version in the same transaction
# (a synonym changes what a search finds).
_CATALOG_TYPES = (Instrument, OpeningHours, InstrumentPhoto, Institution, Category, SearchSynonym)


# What the audit log calls the actions and objects of this area.
OBJECT_LABELS.update(
    {
        "instrument": _l("Instrument record"),
        "catalog": _l("Catalogue"),
        "search_synonym": _l("Search synonym"),
    }
)
ACTION_LABELS.update(
    {
        "instrument.imported": _l("Added by a catalogue import"),
        "instrument.updated": _l("Catalogue entry changed"),
        "instrument.photo_added": _l("Photo added"),
        "instrument.photo_removed": _l("Photo removed"),
        "instrument.main_photo_chosen": _l("Main photo chosen"),
        "catalog.imported": _l("Catalogue file imported"),
        "search_synonym.added": _l("Search synonym added"),
        "search_synonym.deleted": _l("Search synonym deleted"),
        "demo.loaded": _l("Demo data loaded"),
    }
)

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


# --- catalogue files uploaded in the admin console or through the API ------------------------------


class ImportState(StrEnum):
    CHECKING = "checking"  # the dry run is queued or running
    CHECKED = "checked"  # the dry run found no problem: the file can be applied
    INVALID = "invalid"  # the file has problems: it cannot be applied (nothing was written)
    APPLYING = "applying"  # queued or running
    APPLIED = "applied"
    FAILED = "failed"  # the worker stopped on an unexpected error (nothing was written)


# The import's state machine in one place: where each state may go next. CHECKED comes back from
# APPLYING when the catalogue changed under the import (a concurrent edit): nothing was written, and
# the same file can be applied again.
IMPORT_TRANSITIONS: dict[ImportState, frozenset[ImportState]] = {
    ImportState.CHECKING: frozenset({ImportState.CHECKED, ImportState.INVALID, ImportState.FAILED}),
    ImportState.CHECKED: frozenset({ImportState.APPLYING}),
    ImportState.APPLYING: frozenset(
        {ImportState.APPLIED, ImportState.INVALID, ImportState.CHECKED, ImportState.FAILED}
    ),
    ImportState.INVALID: frozenset(),
    ImportState.APPLIED: frozenset(),
    ImportState.FAILED: frozenset(),
}

IMPORT_STATE_LABELS = {
    ImportState.CHECKING: _l("Being checked"),
    ImportState.CHECKED: _l("Checked (dry run): ready to apply"),
    ImportState.INVALID: _l("Has problems: not applied"),
    ImportState.APPLYING: _l("Being applied"),
    ImportState.APPLIED: _l("Applied"),
    ImportState.FAILED: _l("Failed"),
}


class CatalogImport(Model):
    """An uploaded catalogue file, kept under our own name: checked by a dry run, then applied as stored."""

    __tablename__ = "catalog_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The name the uploader's computer gave it (shown and used for downloads, never to open the file).
    original_name: Mapped[str] = mapped_column(String(200))
    stored_name: Mapped[str] = mapped_column(String(80), unique=True)
    fmt: Mapped[str] = mapped_column(String(4))  # "csv" or "xlsx", recognised by the content
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    # Data rows (the header not counted); None until known (a large workbook is counted by the worker).
    rows: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[ImportState] = mapped_column(
        str_enum(ImportState), default=ImportState.CHECKING, index=True
    )
    # What the last run found: would be (dry run) or was (applied) created, updated, left unchanged.
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    # [{"row", "column", "message"}], at most IMPORT_MAX_ERRORS of them; error_count says how many in all.
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    # Why a run stopped without a result (the worker failed, the catalogue changed meanwhile).
    note: Mapped[str | None] = mapped_column(Text)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    applied_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    uploaded_by: Mapped[User] = relationship(foreign_keys=[uploaded_by_id])
    applied_by: Mapped[User | None] = relationship(foreign_keys=[applied_by_id])

    __table_args__ = (
        CheckConstraint(
            "created >= 0 AND updated >= 0 AND unchanged >= 0 AND error_count >= 0", name="counts"
        ),
        CheckConstraint("fmt IN ('csv', 'xlsx')", name="fmt"),
    )

    @property
    def busy(self) -> bool:
        """Whether a run is queued or under way (the page follows its progress)."""
        return self.state in (ImportState.CHECKING, ImportState.APPLYING)

    def __repr__(self) -> str:
        return f"<CatalogImport {self.id} {self.state} {self.original_name}>"


OBJECT_LABELS.update({"catalog_import": _l("Catalogue file")})
ACTION_LABELS.update(
    {
        "catalog_import.uploaded": _l("Catalogue file uploaded"),
        "catalog_import.checked": _l("Catalogue file checked (dry run)"),
        "catalog_import.apply_requested": _l("Catalogue file to be applied"),
        "catalog_import.applied": _l("Catalogue file applied"),
        "catalog_import.refused": _l("Catalogue file not applied"),
        "catalog_import.failed": _l("Catalogue import failed"),
    }
)
