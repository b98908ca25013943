"""The audit log as people read it: found by people's and objects' names, each row named, money in yuan.

Rows store internal references (`object_type`, `object_id`: a booking's number, an instrument's code,
a user's id). Here a search for "质谱" or an enterprise's name finds the rows of the matching
instruments or enterprises and of what belongs to them (their bookings, service records,
applications, vouchers, claims), and each row on the page is named as a person would name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, cast, func, or_, select

from portal.accounts.models import Enterprise, User
from portal.booking.models import Booking, ServiceRecord
from portal.catalog.models import Instrument
from portal.core.models import AuditEvent
from portal.core.money import format_yuan
from portal.core.text import like_escape
from portal.extensions import db
from portal.vouchers.models import Claim, Scheme, Voucher, VoucherApplication

PAGE_SIZE = 25


@dataclass(frozen=True)
class AuditQuery:
    """What to look for: every given condition must hold."""

    action: str | None = None
    object_type: str | None = None
    who: str | None = None  # a username or a person's name (or part of it)
    what: str | None = None  # an object's name, code or number (or part of it)
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    actor: str | None  # "王五 (reviewer)", None for the system
    object_name: str  # "测试仪器 (T-00001)", "#12 · 测试仪器 · 聊城测试科技有限公司"


@dataclass
class AuditPage:
    items: list[AuditRow]
    total: int
    page: int
    per_page: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _contains(column, term: str) -> ColumnElement[bool]:
    return func.lower(column).like(f"%{like_escape(term.lower())}%", escape="\\")


def _ids(stmt: Select) -> Select:
    """The ids a subquery selects, as the text `audit_events.object_id` holds."""
    return stmt.with_only_columns(cast(stmt.selected_columns[0], String))


def _object_condition(term: str) -> ColumnElement[bool]:
    """Rows about an object the term names, or about what belongs to it."""
    instruments = select(Instrument.id).where(
        or_(
            _contains(Instrument.code, term),
            _contains(Instrument.name, term),
            _contains(Instrument.name_en, term),
        )
    )
    enterprises = select(Enterprise.id).where(
        or_(_contains(Enterprise.name, term), Enterprise.uscc == term.upper())
    )
    vouchers = select(Voucher.id).where(
        or_(_contains(Voucher.code, term), Voucher.enterprise_id.in_(enterprises))
    )
    bookings = select(Booking.id).where(
        or_(Booking.instrument_id.in_(instruments), Booking.enterprise_id.in_(enterprises))
    )
    number = term.removeprefix("#").strip()
    about = {
        "instrument": select(Instrument.code).where(Instrument.id.in_(instruments)),
        "enterprise": enterprises,
        "booking": bookings,
        "service_record": select(ServiceRecord.id).where(ServiceRecord.booking_id.in_(bookings)),
        "voucher_application": select(VoucherApplication.id).where(
            VoucherApplication.enterprise_id.in_(enterprises)
        ),
        "voucher": vouchers,
        "claim": select(Claim.id).where(
            or_(Claim.enterprise_id.in_(enterprises), Claim.voucher_id.in_(vouchers))
        ),
        "user": select(User.id).where(or_(_contains(User.username, term), _contains(User.full_name, term))),
        "scheme": select(Scheme.year).where(_contains(Scheme.name, term)),
    }
    return or_(
        # A number, a code, a year or a month as stored ("#12", "T-00001", "2026", "2026-11").
        AuditEvent.object_id == (number if number.isdecimal() else term),
        *(
            (AuditEvent.object_type == kind) & AuditEvent.object_id.in_(_ids(ids))
            for kind, ids in about.items()
        ),
    )


def search(query: AuditQuery) -> AuditPage:
    """Audit rows matching every given condition, newest first, each with its actor's and object's names."""
    stmt = select(AuditEvent, User).outerjoin(User, User.id == AuditEvent.actor_id)
    if query.action:
        stmt = stmt.where(AuditEvent.action == query.action)
    if query.object_type:
        stmt = stmt.where(AuditEvent.object_type == query.object_type)
    if query.who and query.who.strip():
        who = query.who.strip()
        stmt = stmt.where(or_(_contains(User.username, who), _contains(User.full_name, who)))
    if query.what and query.what.strip():
        stmt = stmt.where(_object_condition(query.what.strip()))
    if query.since:
        stmt = stmt.where(AuditEvent.created_at >= query.since)
    if query.until:
        stmt = stmt.where(AuditEvent.created_at < query.until)
    total = db.session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = db.session.execute(
        stmt.order_by(AuditEvent.id.desc()).limit(PAGE_SIZE).offset((query.page - 1) * PAGE_SIZE)
    ).all()
    names = object_names([event for event, _user in rows])
    return AuditPage(
        [
            AuditRow(
                event,
                person_name(user) if user else None,
                names.get((event.object_type, event.object_id), ""),
            )
            for event, user in rows
        ],
        total,
        query.page,
    )


def person_name(user: User) -> str:
    """'王五 (reviewer)', or the username alone when no name is known."""
    return f"{user.full_name} ({user.username})" if user.full_name else user.username


# --- naming the objects of a page of rows ---------------------------------------------------------


def _numbers(ids: Iterable[str]) -> list[int]:
    return [int(i) for i in ids if i.isdecimal() and len(i) < 19]


def _instruments(ids: set[str]) -> dict[str, str]:
    rows = db.session.execute(select(Instrument.code, Instrument.name).where(Instrument.code.in_(ids)))
    return {code: f"{name} ({code})" for code, name in rows}


def _bookings(ids: set[str]) -> dict[str, str]:
    rows = db.session.execute(
        select(Booking.id, Instrument.name, Enterprise.name)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .join(Enterprise, Enterprise.id == Booking.enterprise_id)
        .where(Booking.id.in_(_numbers(ids)))
    )
    return {str(i): f"#{i} · {instrument} · {enterprise}" for i, instrument, enterprise in rows}


def _service_records(ids: set[str]) -> dict[str, str]:
    rows = db.session.execute(
        select(ServiceRecord.id, Booking.id, Instrument.name, Enterprise.name)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .join(Enterprise, Enterprise.id == Booking.enterprise_id)
        .where(ServiceRecord.id.in_(_numbers(ids)))
    )
    return {str(i): f"#{i} · {instrument} · {enterprise}" for i, _b, instrument, enterprise in rows}


def _by_enterprise(model) -> Callable[[set[str]], dict[str, str]]:
    def name(ids: set[str]) -> dict[str, str]:
        rows = db.session.execute(
            select(model.id, Enterprise.name)
            .join(Enterprise, Enterprise.id == model.enterprise_id)
            .where(model.id.in_(_numbers(ids)))
        )
        return {str(i): f"#{i} · {enterprise}" for i, enterprise in rows}

    return name


def _vouchers(ids: set[str]) -> dict[str, str]:
    rows = db.session.execute(
        select(Voucher.id, Voucher.code, Enterprise.name)
        .join(Enterprise, Enterprise.id == Voucher.enterprise_id)
        .where(Voucher.id.in_(_numbers(ids)))
    )
    return {str(i): f"{code} · {enterprise}" for i, code, enterprise in rows}


def _enterprises(ids: set[str]) -> dict[str, str]:
    rows = db.session.execute(select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(_numbers(ids))))
    return {str(i): name for i, name in rows}


def _users(ids: set[str]) -> dict[str, str]:
    users = db.session.scalars(select(User).where(User.id.in_(_numbers(ids))))
    return {str(user.id): person_name(user) for user in users}


def _schemes(ids: set[str]) -> dict[str, str]:
    rows = db.session.execute(select(Scheme.year, Scheme.name).where(Scheme.year.in_(_numbers(ids))))
    return {str(year): name for year, name in rows}


NAMERS: dict[str, Callable[[set[str]], dict[str, str]]] = {
    "instrument": _instruments,
    "booking": _bookings,
    "service_record": _service_records,
    "enterprise": _enterprises,
    "voucher_application": _by_enterprise(VoucherApplication),
    "voucher": _vouchers,
    "claim": _by_enterprise(Claim),
    "user": _users,
    "scheme": _schemes,
}


def object_names(events: list[AuditEvent]) -> dict[tuple[str, str | None], str]:
    """(object_type, object_id) -> how a person names it; '#id' (or the stored text) when unknown."""
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.object_id is not None:
            wanted.setdefault(event.object_type, set()).add(event.object_id)
    names: dict[tuple[str, str | None], str] = {}
    for kind, ids in wanted.items():
        known = NAMERS[kind](ids) if kind in NAMERS else {}
        for object_id in ids:
            fallback = f"#{object_id}" if object_id.isdecimal() else object_id
            names[(kind, object_id)] = known.get(object_id, fallback)
    return names


# --- before and after, as a person reads them ------------------------------------------------------


def readable_changes(values: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A before/after dict as (name, value) lines: nested dicts flattened, amounts in fen shown in yuan."""
    lines: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif prefix.endswith("_fen") and isinstance(value, int) and not isinstance(value, bool):
            lines.append((prefix.removesuffix("_fen"), format_yuan(value)))
        elif isinstance(value, list):
            lines.append((prefix, ", ".join(str(item) for item in value)))
        else:
            lines.append((prefix, "" if value is None else str(value)))

    walk("", values or {})
    return lines
