"""The world the access matrix runs in: two enterprises, two provider institutions, the bureau.

Enterprise A books the instruments of institution P1, enterprise B those of P2, so every object has a
side: A's booking is P1's business and B's is P2's. Everything is made by the portal's own services
(registration, verification, applications, bookings, services, evidence, claims, exports, batches),
except a few rows no service can make in the state a check needs (a machine-time booking that has
already begun, a second open application); those are written directly and say so.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts import services as accounts
from portal.accounts.models import Enterprise, EnterpriseKind, Institution, InstitutionKind, User
from portal.admission import services as admission_services
from portal.admission.models import AdmissionState, ProviderAdmission
from portal.booking import calendar as booking_calendar
from portal.booking import files, records, requests, series, settings, transitions
from portal.booking.models import BlackoutKind, Booking, BookingMode, BookingState, FileKind
from portal.booking.recurrence import Repeat
from portal.catalog import editing
from portal.catalog import imports as catalog_imports
from portal.catalog.models import Category, Instrument, InstrumentStatus, OpeningHours
from portal.core import clock
from portal.core.money import fen_to_yuan
from portal.core.permissions import Role
from portal.credit import services as credit
from portal.credit.models import Violation
from portal.extensions import db
from portal.finance import batches
from portal.finance.models import ExportJob, ExportState
from portal.notifications import services as notifications
from portal.notifications.models import Notification
from portal.reporting import purchases, submissions
from portal.usage import devices, internal
from portal.usage.models import UsageSession, UsageSource
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice as public_notice
from portal.vouchers import redemptions, review, schemes
from portal.vouchers import verification as verification_services
from portal.vouchers.models import ApplicationState, Scheme, Voucher, VoucherApplication
from tests.factories import PASSWORD, extract_csrf, valid_uscc
from tests.pdf_samples import minimal_pdf

PDF = minimal_pdf()


def photo_bytes() -> bytes:
    """A small PNG photo (instrument upkeep)."""
    buffer = io.BytesIO()
    Image.new("RGB", (200, 150), "steelblue").save(buffer, "PNG")
    return buffer.getvalue()


# Monday 7 December 2026, 09:00 in Liaocheng: inside the 2026 scheme, its month open.
NOW = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)
MONTH = "2026-12"

ROLES = ("anon", "ent_a", "ent_b", "prov_p1", "prov_p2", "reviewer", "finance", "admin")
SIDES = ("A", "B")
# Whose side is "own" for a role; the roles without a side see both sides alike, so A stands in.
OWN_SIDE = {"ent_a": "A", "ent_b": "B", "prov_p1": "A", "prov_p2": "B"}
# Objects that belong to one user (notifications, exports, calendar feeds): "foreign" is this user's.
PARTNER = {
    "anon": "ent_b",
    "ent_a": "ent_b",
    "ent_b": "ent_a",
    "prov_p1": "prov_p2",
    "prov_p2": "prov_p1",
    "reviewer": "admin",
    "finance": "admin",
    "admin": "finance",
}

_serial = itertools.count(1)
_checkin_minutes = itertools.count(0)
_series_slots = itertools.count()
_waitlist_slots = itertools.count()


def series_slot() -> tuple[datetime, datetime]:
    """The first hour of a fresh two-day recurring booking on a series instrument: Monday and Tuesday
    or Wednesday and Thursday, 08:30 to 16:30, in the weeks from 14 December (128 of them)."""
    n = next(_series_slots)
    day = date(2026, 12, 14) + timedelta(weeks=n // 16, days=2 * (n % 2))
    start = clock.local_datetime_to_utc(day, time(8, 30)) + timedelta(hours=(n // 2) % 8)
    return start, start + timedelta(hours=1)


_scheme_years = itertools.count(2030, 2)  # admin console (issue 13): years free for a new scheme


def own_side(role: str) -> str:
    return OWN_SIDE.get(role, "A")


def other(side: str) -> str:
    return "B" if side == "A" else "A"


@dataclass
class World:
    """Ids of everything in the fixture database, and the means to make fresh copies of it."""

    app: Flask
    users: dict[str, int] = field(default_factory=dict)
    institutions: dict[str, int] = field(default_factory=dict)
    instruments: dict[str, str] = field(default_factory=dict)
    enterprises: dict[str, int] = field(default_factory=dict)
    vouchers: dict[str, int] = field(default_factory=dict)
    # kind -> side -> URL parameters of the shared object of that kind
    shared: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # kind -> role -> URL parameters (objects that belong to one user)
    personal: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    clients: dict[str, FlaskClient] = field(default_factory=dict)
    writes: WriteLog | None = None
    # What the world attached to the engine, taken off again when the world goes: the engine outlives it
    # (tests/conftest.py SharedEngines).
    detach: list[Callable[[], None]] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)
    csrf: dict[str, str] = field(default_factory=dict)
    # Issue 18: an instrument of each side for recurring bookings alone, so their times never clash.
    series_instruments: dict[str, str] = field(default_factory=dict)

    # --- people ----------------------------------------------------------------------------------

    def user(self, role: str) -> User:
        return db.session.get(User, self.users[role])

    def username(self, role: str) -> str:
        return f"matrix_{role}"

    # --- objects as a role sees them -------------------------------------------------------------

    def params(self, kind: str, role: str, which: str) -> dict[str, Any]:
        """The URL parameters of the `kind` object that is `which` ("own"/"foreign") for `role`."""
        if kind in self.personal:
            holders = self.personal[kind]
            owner = role if which == "own" else PARTNER[role]
            if owner not in holders:  # a role holding none: two holders stand in for "own" and "foreign"
                first, second, *_rest = sorted(holders)
                owner = first if which == "own" else second
            return holders[owner]
        if kind in CONSTANT:
            return CONSTANT[kind]
        if kind == "calendar":
            owner = role if which == "own" and role != "anon" else PARTNER[role]
            return {"token": booking_calendar.calendar_token(self.user(owner))}
        side = own_side(role) if which == "own" else other(own_side(role))
        return self.shared[kind][side]

    def fresh(self, kind: str, role: str, side: str) -> dict[str, Any] | None:
        """A new `kind` object on `side` (or of `role`) for a request meant to change it; None: none made.

        `make_<kind>(role)` makes objects that belong to one user, `_make_<kind>(side)` the others.
        """
        personal = getattr(self, f"make_{kind}", None)
        if personal is not None:
            return personal(role)
        maker = getattr(self, f"_make_{kind}", None)
        return maker(side) if maker else None

    # --- building blocks --------------------------------------------------------------------------

    def _ent_user(self, side: str) -> User:
        return self.user("ent_a" if side == "A" else "ent_b")

    def _provider(self, side: str) -> User:
        return self.user("prov_p1" if side == "A" else "prov_p2")

    def _sample_request(self, side: str, delivery: date = date(2026, 12, 10)) -> Booking:
        return requests.request_booking(
            self._ent_user(side),
            self.instruments[side],
            requests.BookingRequest(
                mode=BookingMode.SAMPLE,
                purpose="成分分析",
                sample_count=2,
                sample_description="粉末样品",
                sample_delivery_on=delivery,
            ),
        )

    def _make_booking_requested(self, side: str) -> dict[str, Any]:
        b = self._sample_request(side)
        return {"booking_id": b.id, "id": b.id}

    def _make_booking_confirmed(self, side: str) -> dict[str, Any]:
        b = self._sample_request(side, delivery=NOW.date())  # arrived: its service can be recorded
        transitions.confirm_booking(self._provider(side), b.id)
        return {"booking_id": b.id, "id": b.id}

    def _make_booking_started(self, side: str) -> dict[str, Any]:
        # Written directly: no service makes a confirmed machine-time booking whose time has begun
        # (requests must lie in the future), and only such a booking can be a no-show.
        row = self._slot_row(side, NOW - timedelta(days=3, hours=next(_serial)), 30)  # an hour apart
        return {"booking_id": row.id, "id": row.id}

    def _slot_row(self, side: str, starts: datetime, minutes: int) -> Booking:
        """A confirmed machine-time booking written directly (the services book only the future)."""
        user = self._ent_user(side)
        row = Booking(
            instrument_id=db.session.scalar(
                select(Instrument.id).where(Instrument.code == self.instruments[side])
            ),
            enterprise_id=user.enterprise_id,
            requested_by_id=user.id,
            mode=BookingMode.SLOT,
            state=BookingState.CONFIRMED,
            starts_at=starts,
            ends_at=starts + timedelta(minutes=minutes),
            held_until=starts + timedelta(minutes=minutes),
            purpose="测试",
        )
        db.session.add(row)
        db.session.commit()
        return row

    def _make_booking_checkin(self, side: str) -> dict[str, Any]:
        # Issue 18: one-minute slots from half an hour before NOW on, so that NOW is inside each one's
        # check-in window (15 minutes before the start to 30 after it) and no two overlap.
        row = self._slot_row(side, NOW - timedelta(minutes=30) + timedelta(minutes=next(_checkin_minutes)), 1)
        return {"booking_id": row.id, "id": row.id}

    def _make_booking_in_use(self, side: str) -> dict[str, Any]:
        # A booking of days ago whose session nobody closed yet: it can be checked out.
        row = self._slot_row(side, NOW - timedelta(days=5, hours=next(_serial)), 30)
        db.session.add(
            UsageSession(
                booking_id=row.id,
                instrument_id=row.instrument_id,
                user_id=row.requested_by_id,
                started_at=row.starts_at,
                source=UsageSource.QR,
            )
        )
        db.session.commit()
        return {"booking_id": row.id, "id": row.id}

    def _make_device_key(self, side: str) -> dict[str, Any]:
        row, _key = devices.create_device_key(self._provider(side), self.instruments[side], "矩阵PC")
        return {"code": self.instruments[side], "key_id": row.id, "id": row.id}

    def _make_internal_use(self, side: str) -> dict[str, Any]:
        start = NOW - timedelta(days=1)
        row = internal.record_internal_use(
            self._provider(side),
            self.instruments[side],
            internal.InternalUseData(started_at=start, ended_at=start + timedelta(hours=2), user_name="矩阵"),
        )
        return {"code": self.instruments[side], "use_id": row.id}

    def _completed(self, side: str, *, rated: bool = True) -> Booking:
        # The samples arrive today: a sample service cannot be recorded before they have arrived.
        b = self._sample_request(side, delivery=NOW.date())
        provider = self._provider(side)
        transitions.confirm_booking(provider, b.id)
        record = records.complete_booking(
            provider, b.id, records.ServiceReport(samples=2, result_summary="合格")
        )
        for kind in (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT):
            files.attach_file(provider, record.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
        if rated:
            records.rate_service(self._ent_user(side), b.id, 5, "很好")
        return db.session.get(Booking, b.id)

    def _make_booking(self, side: str) -> dict[str, Any]:
        b = self._completed(side)
        return {"booking_id": b.id, "id": b.id}

    def _make_record(self, side: str) -> dict[str, Any]:
        record = self._completed(side).service_record
        return {"record_id": record.id, "id": record.id}

    def completed_objects(self, side: str) -> dict[str, dict[str, Any]]:
        """A rated service with its evidence, as the booking, the record and one file."""
        b = self._completed(side)
        record = b.service_record
        return {
            "booking": {"booking_id": b.id, "id": b.id},
            "record": {"record_id": record.id, "id": record.id},
            "file": {"record_id": record.id, "id": record.id, "file_id": record.files[0].id},
        }

    def _make_booking_unrated(self, side: str) -> dict[str, Any]:
        b = self._completed(side, rated=False)
        return {"booking_id": b.id, "id": b.id}

    def _make_claim_input(self, side: str) -> dict[str, Any]:
        record = self._completed(side).service_record
        return {"voucher_id": self.vouchers[side], "record_id": record.id}

    def _make_claim_draft(self, side: str) -> dict[str, Any]:
        record_id = self._make_claim_input(side)["record_id"]
        claim = claim_services.create_claim(self._ent_user(side), self.vouchers[side], [record_id])
        return {"claim_id": claim.id, "id": claim.id}

    def _make_claim_submitted(self, side: str) -> dict[str, Any]:
        claim_id = self._make_claim_draft(side)["claim_id"]
        claim_services.submit_claim(self._ent_user(side), claim_id)
        return {"claim_id": claim_id, "id": claim_id}

    def _make_application_submitted(self, side: str) -> dict[str, Any]:
        # Only the bureau decides applications, so a fresh one may belong to a new enterprise (on
        # the same side): a second open application of A itself would be approved into a second
        # voucher of the year, which the schema forbids. Written directly for the same reason.
        n = next(_serial)
        enterprise = Enterprise(
            uscc=valid_uscc(),
            name=f"矩阵新企业{side}{n}",
            kind=EnterpriseKind.TECH_SME,
            county="东昌府区",
            verification_state="verified",
            actual_controller=f"控制人{side}{n}",
            controller_group=f"group-{side}-{n}",
        )
        db.session.add(enterprise)
        db.session.flush()
        application = VoucherApplication(
            enterprise_id=enterprise.id,
            scheme_id=schemes.require_scheme().id,
            amount_fen=1_000_00,
            plan="检测计划",
            state=ApplicationState.SUBMITTED,
        )
        db.session.add(application)
        db.session.commit()
        return {"application_id": application.id, "id": application.id}

    def _make_verification_submitted(self, side: str) -> dict[str, Any]:
        # The enterprise itself is already waiting for a decision (the shared request), so a fresh
        # request comes from a newly registered enterprise.
        n = next(_serial)
        user = accounts.register_enterprise(
            accounts.Registration(
                username=f"matrix_new{n}",
                password=PASSWORD,
                email=None,
                full_name="新用户",
                phone=None,
                company_name=f"聊城新注册企业{side}{n}",
                uscc=valid_uscc(),
                kind=EnterpriseKind.TECH_SME,
                county="东昌府区",
            )
        )
        return self.verification_of(user, side)

    def verification_of(self, user: User, side: str) -> dict[str, Any]:
        request = verification_services.submit_verification(
            user,
            verification_services.VerificationData(
                kind=EnterpriseKind.TECH_SME,
                actual_controller=f"控制人{side}",
                tech_sme_number="2026371500001",
            ),
            io.BytesIO(PDF),
            "证书.pdf",
        )
        return {"request_id": request.id}

    def _make_blackout(self, side: str) -> dict[str, Any]:
        n = next(_serial)
        instrument = db.session.scalar(select(Instrument).where(Instrument.code == self.instruments[side]))
        starts = NOW + timedelta(days=40 + n)
        row = settings.add_blackout(
            self._provider(side),
            instrument,
            BlackoutKind.MAINTENANCE,
            starts,
            starts + timedelta(hours=2),
            "保养",
        )
        return {"blackout_id": row.id}

    # --- qualifications and training (issue 17) ------------------------------------------------

    def _make_qualification(self, side: str) -> dict[str, Any]:
        from portal.qualifications import services as qualifications

        row = qualifications.grant_qualification(
            self._provider(side),
            self.instruments[side],
            self.username(f"ent_{side.lower()}"),
            date(2027, 6, 30),
        )
        return {"code": self.instruments[side], "qualification_id": row.id, "id": row.id}

    def _make_training(self, side: str) -> dict[str, Any]:
        from portal.qualifications import services as qualifications

        starts = NOW + timedelta(days=30 + next(_serial))
        row = qualifications.publish_training(
            self._provider(side),
            self.instruments[side],
            qualifications.TrainingInput(starts, starts + timedelta(hours=2), 50, "实验楼"),
        )
        return {"session_id": row.id}

    # --- booking credit (issue 18) ----------------------------------------------------------------

    def _make_violation(self, side: str) -> dict[str, Any]:
        """A no-show of the side's enterprise on the side's instrument, counted against its credit."""
        from portal.booking.signals import booking_violation

        started = self._make_booking_started(side)
        booking = db.session.get_one(Booking, started["booking_id"])
        booking.state = BookingState.NO_SHOW
        booking_violation.send(booking, kind="no_show", at=NOW - timedelta(days=1))
        db.session.commit()
        row_id = db.session.scalar(select(Violation.id).where(Violation.booking_id == booking.id))
        return {"violation_id": row_id, "id": row_id}

    def _waitlist_slot(self) -> tuple[datetime, datetime]:
        """A free hour of its own for each waitlist object: Tuesday to Friday, 09:00 to 17:00."""
        # Its own counter, afresh for each world: Tuesday 8 to Friday 18 December for the first 64, so
        # never the hours of 21 to 24 December that the API's waitlist requests ask for (the first in
        # line would get the offer meant for this entry).
        n = next(_waitlist_slots)
        local = datetime(2026, 12, 8, 9, 0) + timedelta(days=7 * (n // 32) + (n % 32) // 8, hours=n % 8)
        start = clock.local_datetime_to_utc(local.date(), local.time())
        return start, start + timedelta(hours=1)

    def _make_waitlist_waiting(self, side: str) -> dict[str, Any]:
        from portal.waitlist import services as waitlist

        start, end = self._waitlist_slot()
        entry = waitlist.join_waitlist(self._ent_user(side), self.instruments[side], start, end)
        return {"id": entry.id, "entry_id": entry.id}

    def _make_waitlist_offered(self, side: str) -> dict[str, Any]:
        """The side's enterprise waits for an hour the other side's enterprise held, now cancelled."""
        from portal.waitlist import services as waitlist

        start, end = self._waitlist_slot()
        holder = self._ent_user(other(side))
        instrument_id = db.session.scalar(
            select(Instrument.id).where(Instrument.code == self.instruments[side])
        )
        held = Booking(
            instrument_id=instrument_id,
            enterprise_id=holder.enterprise_id,
            requested_by_id=holder.id,
            mode=BookingMode.SLOT,
            state=BookingState.CONFIRMED,
            starts_at=start,
            ends_at=end,
            held_until=end,
        )
        db.session.add(held)
        db.session.commit()
        entry = waitlist.join_waitlist(self._ent_user(side), self.instruments[side], start, end)
        transitions.cancel_booking(self._provider(side), held.id, "企业来电改期")
        return {"id": entry.id, "entry_id": entry.id}

    # --- recurring bookings (issue 18) ---------------------------------------------------------------

    def _make_series(self, side: str) -> dict[str, Any]:
        """Two requested dates of the side's enterprise on the side's series instrument."""
        start, end = series_slot()
        made = series.request_series(
            self._ent_user(side),
            self.series_instruments[side],
            series.SeriesRequest(start, end, Repeat("day", count=2), purpose="例行检测"),
        )
        return {"series_id": made.id, "id": made.id}

    # --- bank accounts and corrected claims (issue 13: money reaches the right account) ---------

    def verified_bank_account(self, side: str) -> dict[str, Any]:
        """The enterprise's account, entered by its holder and verified by the reviewer."""
        account = banking.record_bank_account(
            self._ent_user(side),
            banking.BankAccountData(
                f"聊城矩阵科技有限公司{side}", "中国工商银行聊城分行", "0160 9000 0000 0001"
            ),
        )
        banking.decide_bank_account(self.user("reviewer"), account.id, "verify")
        return {"account_id": account.id}

    def _make_bank_account_pending(self, side: str) -> dict[str, Any]:
        n = next(_serial)
        account = banking.record_bank_account(
            self._ent_user(side),
            banking.BankAccountData(
                f"聊城矩阵科技有限公司{side}", "中国建设银行聊城分行", f"6217 0000 {n:08d}"
            ),
        )
        return {"account_id": account.id}

    # Issue 21: a provider institution's account (it is paid for the services it redeems at payment).
    def provider_bank_account(self, side: str, verify: bool = True) -> dict[str, Any]:
        """The institution's account, entered by its provider user (and verified by the reviewer)."""
        account = banking.record_bank_account(
            self._provider(side),
            banking.BankAccountData(
                f"矩阵服务机构{side}", "中国银行聊城分行", f"4401 0000 {next(_serial):08d}"
            ),
        )
        if verify:
            banking.decide_bank_account(self.user("reviewer"), account.id, "verify", "机构账户已核对")
        return {"account_id": account.id}

    def _make_provider_bank_account_pending(self, side: str) -> dict[str, Any]:
        return self.provider_bank_account(side, verify=False)

    def _make_claim_returned(self, side: str) -> dict[str, Any]:
        claim_id = self._make_claim_submitted(side)["claim_id"]
        review.return_claim(self.user("reviewer"), claim_id, "请补充清晰的付款凭证")
        return {"claim_id": claim_id, "id": claim_id}

    # --- end of bank accounts and corrected claims ------------------------------------------------
    # --- instrument upkeep (issue 13): photos of each side's instrument ----------------------------

    def _make_photo(self, side: str) -> dict[str, Any]:
        code = self.instruments[side]
        photo = editing.add_photo(self._provider(side), code, io.BytesIO(photo_bytes()), "正面")
        return {"code": code, "photo_id": photo.id, "name": photo.thumbnail_name}

    # --- end of instrument upkeep ------------------------------------------------------------------

    def make_notification(self, role: str) -> dict[str, Any]:
        user = self.user(role)
        n = next(_serial)
        notifications.notify(
            [user], "verification.verified", f"matrix:{n}", payload={"enterprise": "矩阵"}, link="/vouchers/"
        )
        db.session.commit()
        row = db.session.scalar(select(Notification).where(Notification.dedup_key == f"matrix:{n}:{user.id}"))
        return {"notification_id": row.id}

    # --- provider admission (issue 21) -------------------------------------------------------------

    def _make_admission_submitted(self, side: str) -> dict[str, Any]:
        # Written directly, for an institution of its own: the side's institution is admitted, and an
        # admitted institution does not apply again.
        institution = _institution(f"矩阵申请单位{side}{next(_serial)}")
        institution.admission = AdmissionState.SUBMITTED.value
        row = ProviderAdmission(
            institution_id=institution.id,
            state=AdmissionState.SUBMITTED,
            fee_schedule="机时 300 元/小时",
            credit_statement="本单位承诺如实收费。",
            submitted_at=clock.utcnow(),
        )
        db.session.add(row)
        db.session.commit()
        return {"admission_id": row.id}

    # --- admin console (issue 13): fresh objects for its actions -------------------------------------

    def _make_institution(self, side: str) -> dict[str, Any]:
        row = _institution(f"矩阵新单位{side}{next(_serial)}")
        return {"institution_id": row.id, "uscc": row.uscc}

    def _make_scheme_year(self, side: str) -> dict[str, Any]:
        # Written directly: a year whose next year has no scheme yet, for each copy that is meant to work.
        year = next(_scheme_years)
        source = schemes.require_scheme()
        db.session.add(
            Scheme(
                year=year,
                name=f"{year}年度方案",
                enterprise_cap_fen=source.enterprise_cap_fen,
                group_cap_fen=source.group_cap_fen,
                voucher_validity_days=source.voucher_validity_days,
                service_window_start=date(year, 1, 1),
                service_window_end=date(year, 12, 31),
                public_notice_days=source.public_notice_days,
                four_eyes_threshold_fen=source.four_eyes_threshold_fen,
                excluded_service_types=[],
                allocated_fen=0,
            )
        )
        db.session.commit()
        return {"year": year}

    def _make_catalog_import(self, side: str) -> dict[str, Any]:
        """A file whose dry run was clean, waiting to be applied."""
        row = catalog_imports.start_import(self.user("admin"), io.BytesIO(console_csv()), "矩阵仪器.csv")
        return {"import_id": row.id}

    def _make_search_synonym(self, side: str) -> dict[str, Any]:
        """A synonym of the search table (a new short form each time)."""
        from portal.catalog import synonyms

        row = synonyms.add_synonym(self.user("admin"), f"矩阵{next(_serial)}", "矩阵仪器")
        return {"synonym_id": row.id}

    # --- clients ------------------------------------------------------------------------------------

    def login(self, role: str) -> None:
        """Sign the role's client in through the real form and keep its CSRF token."""
        client = self.clients[role]
        page = client.get("/login")
        response = client.post(
            "/login",
            data={
                "username": self.username(role),
                "password": PASSWORD,
                "csrf_token": extract_csrf(page.text),
            },
        )
        assert response.status_code == 302, f"{role} could not sign in"
        self.csrf[role] = extract_csrf(client.get("/account").text)
        take_flashes(client)


def take_flashes(client: FlaskClient) -> list[tuple[str, str]]:
    """The flashed messages waiting in the client's session, removed so the next check starts clean."""
    with client.session_transaction() as session:
        return list(session.pop("_flashes", []))


CONSTANT: dict[str, dict[str, Any]] = {
    "static": {"filename": "favicon.svg"},
    "bootstrap": {"filename": "css/bootstrap.min.css"},
    "csv": {"fmt": "csv"},
    "language": {"code": "zh"},
}


# --- building the world --------------------------------------------------------------------------


def _institution(name: str) -> Institution:
    row = Institution(
        name=name,
        uscc=valid_uscc(),
        kind=InstitutionKind.UNIVERSITY,
        county="东昌府区",
        is_local=True,
        admission="admitted",
    )
    db.session.add(row)
    db.session.commit()
    return row


def _instrument(code: str, institution: Institution) -> Instrument:
    row = Instrument(
        code=code,
        name=f"液相色谱质谱联用仪{code}",
        name_en="LC-MS",
        category=db.session.scalar(select(Category).where(Category.code == "0102")),
        model="6470",
        manufacturer="Agilent (安捷伦)",
        country_of_origin="美国",
        original_value_fen=1_000_000_00,
        status=InstrumentStatus.NORMAL,
        fee_per_hour_fen=300_00,
        fee_per_sample_fen=80_00,
        county="东昌府区",
        operator_name="张三",
        operator_phone="0635-8239999",
        institution=institution,
    )
    row.opening_hours = [
        OpeningHours(weekday=d, opens_at=time(8, 30), closes_at=time(17, 30)) for d in range(5)
    ]
    db.session.add(row)
    db.session.commit()
    return row


def build_admission_objects(world: World) -> None:
    """Issue 21: each side's institution applies for admission (with its fee schedule as a file), is
    approved and, its notice over, admitted again; and an application waiting for a decision."""
    for side in SIDES:
        institution = db.session.get_one(Institution, world.institutions[side])
        # Written directly: admitted before the scheme required admission, it applies here anew.
        institution.admission = "none"
        db.session.commit()
        instrument = db.session.scalar(select(Instrument).where(Instrument.code == world.instruments[side]))
        admission = admission_services.apply_for_admission(
            world._provider(side),
            institution.id,
            admission_services.AdmissionData([instrument.id], "机时 300 元/小时", "本单位承诺如实收费。"),
            io.BytesIO(PDF),
            "收费标准.pdf",
        )
        admission_services.approve_admission(world.user("reviewer"), admission.id)
        admission_services.end_notice(admission.id)
        world.shared.setdefault("admission", {})[side] = {"admission_id": admission.id}
        world.shared.setdefault("admission_submitted", {})[side] = world._make_admission_submitted(side)


def build_world(app: Flask) -> World:
    """Everything the matrix asks about, made through the services; the clients signed in."""
    # Each backend's world has a calendar of its own: the counters that hand out free times (the
    # waitlist's hours, the series' days) start afresh, or a process building both worlds would run
    # them into other objects' times or past the instruments' booking window.
    global _series_slots, _waitlist_slots
    _series_slots, _waitlist_slots = itertools.count(), itertools.count()
    writes = WriteLog(db.engine)
    world = World(app=app, writes=writes, detach=[fast_test_database(db.engine), writes.close])
    staff = {"reviewer": Role.REVIEWER, "finance": Role.FINANCE, "admin": Role.ADMIN}
    for role, value in staff.items():
        user = accounts.create_user(world.username(role), PASSWORD, value, email=None)
        world.users[role] = user.id
    admin, reviewer = world.user("admin"), world.user("reviewer")
    schemes.save_scheme(
        admin,
        {
            "year": 2026,
            "name": "2026年度聊城市科技创新券",
            "enterprise_cap_fen": 500_000_00,
            "group_cap_fen": 650_000_00,
            # High enough that one reviewer decides everything here (four eyes has its own tests).
            "four_eyes_threshold_fen": 400_000_00,
            "voucher_validity_days": 365,
            "service_window_start": date(2026, 1, 1),
            "service_window_end": date(2026, 12, 31),
            "public_notice_days": 7,
            "excluded_service_types": ["statutory_testing", "mandatory_certification"],
        },
        [
            schemes.FundSettings("province", Decimal("0.60"), "always", 4_000_000_00, True),
            schemes.FundSettings("city", Decimal("0.30"), "local_provider", 2_000_000_00),
        ],
    )
    # --- vouchers at payment (issue 21): the scheme offers both modes --------------------------------
    schemes.require_scheme().redemption_modes = ["reimbursement", "at_payment"]
    db.session.commit()
    # --- end of vouchers at payment -----------------------------------------------------------------
    for side, provider_role in (("A", "prov_p1"), ("B", "prov_p2")):
        institution = _institution(f"矩阵大学{side}")
        world.institutions[side] = institution.id
        world.instruments[side] = _instrument(f"MX-{side}-001", institution).code
        provider = accounts.create_user(
            world.username(provider_role),
            PASSWORD,
            Role.PROVIDER,
            email=None,
            institution=institution,
        )
        world.users[provider_role] = provider.id
    for side, role in (("A", "ent_a"), ("B", "ent_b")):
        user = accounts.register_enterprise(
            accounts.Registration(
                username=world.username(role),
                password=PASSWORD,
                email=None,
                full_name=f"企业用户{side}",
                phone=None,
                company_name=f"聊城矩阵科技有限公司{side}",
                uscc=valid_uscc(),
                kind=EnterpriseKind.TECH_SME,
                county="东昌府区",
            )
        )
        world.users[role] = user.id
        world.enterprises[side] = user.enterprise_id
        request = world.verification_of(user, side)
        verification_services.verify_enterprise(reviewer, request["request_id"])
        application = application_services.apply_for_voucher(user, 100_000_00, "检测计划")
        application_services.approve_application(reviewer, application.id)
        voucher_id = db.session.get(VoucherApplication, application.id).voucher.id
        world.vouchers[side] = voucher_id
        shared = {
            "verification": request,
            "voucher": {"voucher_id": voucher_id, "id": voucher_id},
            "application": {"application_id": application.id, "id": application.id},
            "instrument": {"code": world.instruments[side]},
            **world.completed_objects(side),
            "booking_requested": world._make_booking_requested(side),
            "booking_confirmed": world._make_booking_confirmed(side),
            "booking_started": world._make_booking_started(side),
            "booking_unrated": world._make_booking_unrated(side),
            "claim_input": world._make_claim_input(side),
            "claim_draft": world._make_claim_draft(side),
            "claim_submitted": world._make_claim_submitted(side),
            "blackout": world._make_blackout(side),
        }
        # The shared claim to look at is approved, in its public notice.
        approved = world._make_claim_submitted(side)
        review.approve_claim(reviewer, approved["claim_id"])
        shared["claim"] = approved
        # A second open application of the enterprise itself, for refused decisions (see above).
        row = VoucherApplication(
            enterprise_id=user.enterprise_id,
            scheme_id=schemes.require_scheme().id,
            amount_fen=1_000_00,
            plan="追加计划",
            state=ApplicationState.SUBMITTED,
        )
        db.session.add(row)
        db.session.commit()
        shared["application_submitted"] = {"application_id": row.id, "id": row.id}
        shared["verification_submitted"] = world.verification_of(user, side)
        for kind, value in shared.items():
            world.shared.setdefault(kind, {})[side] = value
    # --- bank accounts and corrected claims (issue 13): only a verified account is paid -----------
    for side in SIDES:
        world.shared.setdefault("bank_account", {})[side] = world.verified_bank_account(side)
        world.shared.setdefault("bank_account_pending", {})[side] = world._make_bank_account_pending(side)
        world.shared.setdefault("claim_returned", {})[side] = world._make_claim_returned(side)
        world.shared.setdefault("provider_bank_account", {})[side] = world.provider_bank_account(side)
        world.shared.setdefault("provider_bank_account_pending", {})[side] = (
            world._make_provider_bank_account_pending(side)
        )
    # --- end of bank accounts and corrected claims --------------------------------------------------
    # Both approved claims finish their notice and are paid out in one batch of the month.
    public_notice.end_public_notice(date(2026, 12, 31))
    batch = batches.build_batch(world.user("finance"), MONTH)
    world.shared["batch"] = {side: {"batch_id": batch.id} for side in SIDES}
    # --- instrument upkeep (issue 13): the shared photo of each side ----------------------------------
    world.shared["photo"] = {side: world._make_photo(side) for side in SIDES}
    # --- end of instrument upkeep --------------------------------------------------------------------
    world.personal["notification"] = {role: world.make_notification(role) for role in ROLES if role != "anon"}
    build_accounts_objects(world)
    for role in ROLES:
        client = app.test_client()
        world.clients[role] = client
        if role == "anon":
            world.csrf[role] = extract_csrf(client.get("/login").text)
        else:
            world.login(role)
            world.tokens[role], _row = accounts.issue_api_token(world.user(role))
    # Finance and the administrator each start an export job the way the page does, for a period
    # large enough to go to the worker (which runs in-process here).
    world.personal["export"] = {}
    threshold, app.config["EXPORT_ASYNC_ROWS"] = app.config["EXPORT_ASYNC_ROWS"], 0
    for role in ("finance", "admin"):
        response = world.clients[role].get("/finance/export.csv?month_from=2026-01&month_to=2026-12")
        job_id = int(response.headers["Location"].rstrip("/").split("/")[-1])
        assert db.session.get(ExportJob, job_id).state is ExportState.DONE
        world.personal["export"][role] = {"job_id": job_id}
    app.config["EXPORT_ASYNC_ROWS"] = threshold
    build_console_objects(world)
    for side in SIDES:  # issue 17
        world.shared.setdefault("qualification", {})[side] = world._make_qualification(side)
        world.shared.setdefault("training", {})[side] = world._make_training(side)
    # Issue 18: rules no run of the matrix can reach (its no-shows would suspend the enterprises).
    credit.save_rules(admin, {"max_violations": 100, "window_days": 90, "suspension_days": 30})
    for side in SIDES:
        world.shared.setdefault("violation", {})[side] = world._make_violation(side)
        world.shared.setdefault("waitlist_waiting", {})[side] = world._make_waitlist_waiting(side)
        world.shared.setdefault("waitlist_offered", {})[side] = world._make_waitlist_offered(side)
    for side in SIDES:  # issue 18: recurring bookings
        institution = db.session.get_one(Institution, world.institutions[side])
        world.series_instruments[side] = _instrument(f"MX-{side}-SER", institution).code
        world.shared.setdefault("series", {})[side] = world._make_series(side)
    for side in SIDES:  # issue 18
        world.shared.setdefault("booking_checkin", {})[side] = world._make_booking_checkin(side)
        world.shared.setdefault("booking_in_use", {})[side] = world._make_booking_in_use(side)
        world.shared.setdefault("device_key", {})[side] = world._make_device_key(side)
        world.shared.setdefault("internal_use", {})[side] = world._make_internal_use(side)  # issue 19
        snapshot = submissions.submit_final(world._provider(side), 2025)  # a final report (issue 19)
        world.shared.setdefault("report_snapshot", {})[side] = {"snapshot_id": snapshot.id}
    build_admission_objects(world)
    planned = purchases.PlannedPurchase("0102", "气质联用仪", "", 1_200_000_00, "可共享")
    check = purchases.record_check(world.user("reviewer"), planned)
    world.shared["purchase_check"] = {side: {"check_id": check.id} for side in SIDES}
    build_redemption_objects(world)  # issue 21: vouchers at payment
    return world


# --- "nothing changed" ---------------------------------------------------------------------------


class WriteLog:
    """Every INSERT, UPDATE and DELETE that changed rows and was committed (rolled back ones do not count).

    A refused request must leave the database as it was: no audit row, no state change, nothing
    half-written. Watching the statements that get committed says that exactly, for every table,
    at no cost, where comparing table contents before and after would read the whole database twice
    per request.
    """

    WRITES = ("insert", "update", "delete")

    def __init__(self, engine: sa.Engine) -> None:
        self.pending: dict[int, list[str]] = {}
        self.committed: list[str] = []
        self.engine = engine
        sa.event.listen(engine, "after_cursor_execute", self._execute)
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "rollback", self._rollback)

    def _execute(self, conn, cursor, statement: str, *_args: Any) -> None:
        # An UPDATE that matched nothing (e.g. "mark read" on another user's notification) changed nothing.
        if statement.lstrip()[:6].lower() in self.WRITES and cursor.rowcount != 0:
            self.pending.setdefault(id(conn), []).append(" ".join(statement.split()[:3]))

    def _commit(self, conn) -> None:
        self.committed.extend(self.pending.pop(id(conn), []))

    def _rollback(self, conn) -> None:
        self.pending.pop(id(conn), None)

    def close(self) -> None:
        sa.event.remove(self.engine, "after_cursor_execute", self._execute)
        sa.event.remove(self.engine, "commit", self._commit)
        sa.event.remove(self.engine, "rollback", self._rollback)

    def mark(self) -> int:
        return len(self.committed)

    def since(self, mark: int) -> list[str]:
        return self.committed[mark:]


def stored_files(app: Flask) -> set[str]:
    root = Path(app.config["UPLOAD_FOLDER"])
    return {p.name for p in root.iterdir()} if root.exists() else set()


def fast_test_database(engine: sa.Engine) -> Callable[[], None]:
    """Commits without waiting for the disk: this database lives as long as the test module. Returns
    what puts the engine back as it was."""

    def no_sync(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        if engine.dialect.name == "sqlite":
            cursor.execute("PRAGMA synchronous=OFF")
        else:
            cursor.execute("SET synchronous_commit = off")
        cursor.close()

    sa.event.listen(engine, "connect", no_sync)
    engine.dispose()
    return lambda: sa.event.remove(engine, "connect", no_sync)


URL_PARAM = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


def fill(rule: str, params: dict[str, Any]) -> str:
    return URL_PARAM.sub(lambda m: str(params[m.group(1)]), rule)


# --- admin console (issue 13) ----------------------------------------------------------------------


def console_csv() -> bytes:
    """A catalogue file of one instrument of institution A, in the network's format."""
    from portal.catalog.importer import HEADERS

    values = {
        "仪器编码": "MX-IMPORT-1",
        "仪器名称": "导入的光谱仪",
        "仪器分类代码": "0104",
        "原值(万元)": "12.5",
    }
    values["依托单位"] = "矩阵大学A"
    return (",".join(HEADERS) + "\n" + ",".join(values.get(h, "") for h in HEADERS) + "\n").encode()


def build_console_objects(world: World) -> None:
    """What the console's routes name: an institution, a year's scheme, an uploaded catalogue file."""
    for side in SIDES:
        institution = db.session.get(Institution, world.institutions[side])
        world.shared.setdefault("institution", {})[side] = {
            "institution_id": institution.id,
            "uscc": institution.uscc,
        }
        world.shared.setdefault("scheme_year", {})[side] = {"year": 2026}
        # The national reports (issue 19) of the side's institution, named by a query parameter.
        world.shared.setdefault("report", {})[side] = {"fmt": "csv", "institution_id": institution.id}
    checked = world._make_catalog_import("A")
    world.shared["catalog_import"] = {side: checked for side in SIDES}
    synonym = world._make_search_synonym("A")
    world.shared["search_synonym"] = {side: synonym for side in SIDES}


# --- accounts (issue 13): passwords, profile, colleagues, invitations, the console's users -------------
# The objects of the accounts rows. A colleague is a second, non-holder user of the side's enterprise.
# Links (reset, new address, invitation) are given by their secret, derived as the outbox derives it.

_accounts_serial = itertools.count(1)
_checkin_minutes = itertools.count(0)


def _secret(row) -> str:
    from portal.accounts import tokens

    return tokens.derive_secret(tokens.kind_of(row), row.salt)


def _holder(world: World, side: str) -> User:
    return world.user("ent_a" if side == "A" else "ent_b")


def _colleague_in(enterprise_id: int, *, is_holder: bool = False) -> dict[str, Any]:
    n = next(_accounts_serial)
    user = User(
        username=f"matrix_colleague{n}",
        password_hash=accounts.hash_password(PASSWORD),
        role=Role.ENTERPRISE,
        full_name=f"矩阵同事{n}",
        enterprise_id=enterprise_id,
        is_holder=is_holder,
    )
    db.session.add(user)
    db.session.commit()
    return {"user_id": user.id}


def _make_colleague(world: World, side: str) -> dict[str, Any]:
    return _colleague_in(world.enterprises[side])


def _make_colleague_inactive(world: World, side: str) -> dict[str, Any]:
    from portal.accounts import users

    made = _make_colleague(world, side)
    users.set_active(_holder(world, side), made["user_id"], "deactivate")
    return made


def _make_invitation(world: World, side: str) -> dict[str, Any]:
    from portal.accounts import colleagues

    row = colleagues.invite(_holder(world, side), f"matrix_invited{side}{next(_accounts_serial)}@example.cn")
    return {"invitation_id": row.id, "token": _secret(row)}


def _make_reset_link(world: World, side: str) -> dict[str, Any]:
    from portal.accounts import passwords

    n = next(_accounts_serial)
    user = accounts.create_user(
        f"matrix_forgetful{side}{n}", PASSWORD, Role.REVIEWER, email=f"forgetful{n}@x.cn"
    )
    return {"token": _secret(passwords.send_reset_link(user))}


def _make_registration_link(world: World, side: str) -> dict[str, Any]:
    """The link mailed to a newly self-registered enterprise's address."""
    from portal.accounts.models import AccountToken, TokenPurpose

    n = next(_accounts_serial)
    user = accounts.register_enterprise(
        accounts.Registration(
            username=f"matrix_signup{side}{n}",
            password=PASSWORD,
            email=f"signup{side}{n}@example.cn",
            full_name="新注册人",
            phone=None,
            company_name=f"聊城待激活企业{side}{n}",
            uscc=valid_uscc(),
            kind=EnterpriseKind.TECH_SME,
            county="东昌府区",
        ),
        awaiting_confirmation=True,
    )
    row = db.session.scalar(
        select(AccountToken).where(
            AccountToken.user_id == user.id, AccountToken.purpose == TokenPurpose.REGISTRATION
        )
    )
    return {"token": _secret(row)}


def _make_staff_user(world: World, side: str) -> dict[str, Any]:
    n = next(_accounts_serial)
    user = accounts.create_user(f"matrix_staff{side}{n}", PASSWORD, Role.REVIEWER, email=f"staff{n}@x.cn")
    return {"user_id": user.id}


def _make_inactive_user(world: World, side: str) -> dict[str, Any]:
    from portal.accounts import users

    made = _make_staff_user(world, side)
    users.set_active(world.user("admin"), made["user_id"], "deactivate")
    return made


def _make_spare_colleague(world: World, side: str) -> dict[str, Any]:
    """A colleague in an enterprise of its own, for the console's hand-over (A's and B's holders stay)."""
    n = next(_accounts_serial)
    enterprise = Enterprise(
        uscc=valid_uscc(), name=f"聊城备用企业{side}{n}", kind=EnterpriseKind.TECH_SME, county="东昌府区"
    )
    db.session.add(enterprise)
    db.session.flush()
    _colleague_in(enterprise.id, is_holder=True)
    return _colleague_in(enterprise.id)


def _make_email_link(world: World, role: str) -> dict[str, Any]:
    from portal.accounts import tokens
    from portal.accounts.models import TokenPurpose

    user = world.user(role)
    address = f"matrix_{role}_{next(_accounts_serial)}@example.cn"
    row = tokens.issue_account_token(user, TokenPurpose.EMAIL_CHANGE, 3600, email=address)
    db.session.commit()
    return {"token": _secret(row)}


for _kind, _maker in {
    "colleague": _make_colleague,
    "colleague_inactive": _make_colleague_inactive,
    "invitation": _make_invitation,
    "reset_link": _make_reset_link,
    "registration_link": _make_registration_link,
    "staff_user": _make_staff_user,
    "inactive_user": _make_inactive_user,
    "spare_colleague": _make_spare_colleague,
}.items():
    setattr(World, f"_make_{_kind}", lambda self, side, maker=_maker: maker(self, side))
World.make_email_link = lambda self, role: _make_email_link(self, role)


def build_accounts_objects(world: World) -> None:
    """The shared objects of the accounts rows, and each user's own link to a new address."""
    for side in SIDES:
        for kind in (
            "colleague",
            "colleague_inactive",
            "invitation",
            "reset_link",
            "registration_link",
            "staff_user",
            "inactive_user",
            "spare_colleague",
        ):
            world.shared.setdefault(kind, {})[side] = world.fresh(kind, "anon", side)
    world.personal["email_link"] = {role: _make_email_link(world, role) for role in ROLES if role != "anon"}


def restore_holders(world: World) -> None:
    """Put A's and B's registrants back as their enterprises' holders (after a hand-over row)."""
    from portal.accounts import colleagues

    for side in SIDES:
        holder = _holder(world, side)
        if not holder.is_holder:
            current = accounts.holder_of(holder.enterprise_id)
            colleagues.hand_over(current, holder.id)


def _form_of(role: str) -> dict[str, Any]:
    user = db.session.scalar(select(User).where(User.username == f"matrix_{role}"))
    return {
        "full_name": f"矩阵{role}",
        "email": user.email if user and user.email else "",
        "language": "zh",
        "email_notifications": "y",
    }


_NEW_PASSWORD = "lattice-new-pass-2026"  # not made from the "matrix_…" usernames (the policy)
ACCOUNT_REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("/account/password", "POST"): {
        "form": {"current_password": "not-the-password", "password": _NEW_PASSWORD, "confirm": _NEW_PASSWORD}
    },
    ("/account/profile", "POST"): {"form": lambda _o, role: _form_of(role)},
    ("/password/forgot", "POST"): {"form": {"email": "matrix_nobody@example.cn"}},
    ("/password/reset/<token>", "POST"): {"form": {"password": _NEW_PASSWORD, "confirm": _NEW_PASSWORD}},
    ("/invitations/<token>", "POST"): {
        "form": lambda _o, _role: {
            "full_name": "矩阵新同事",
            "username": f"matrix_joiner{next(_accounts_serial)}",
            "password": _NEW_PASSWORD,
            "confirm": _NEW_PASSWORD,
        }
    },
    ("/account/colleagues", "POST"): {
        "form": lambda _o, _role: {"email": f"matrix_invitee{next(_accounts_serial)}@example.cn"}
    },
    ("/admin/users/new", "POST"): {
        "form": lambda _o, _role: {
            "username": f"matrix_made{(n := next(_accounts_serial))}",
            "full_name": "矩阵职员",
            "email": f"matrix_made{n}@example.cn",
            "role": "reviewer",
            "institution_id": "",
        }
    },
    ("/admin/users/<int:user_id>", "POST"): {
        "form": {"full_name": "矩阵改名", "email": "", "phone": "", "role": "finance", "institution_id": ""}
    },
}
# Routes whose answer hands the holder role to someone else: A's and B's registrants get it back.
HOLDER_CHANGING = {"/account/colleagues/<int:user_id>/handover"}


# --- vouchers at payment (issue 21): services their provider redeems ----------------------------------
# A redemption belongs to the provider of the service's institution (the side of the instrument) and
# to the enterprise that received the service; the bureau decides it as a claim.


def _redeemable_service(world: World, enterprise_side: str, provider_side: str) -> int:
    """A rated sample service of the enterprise on the provider side's instrument, with every piece of
    evidence a redemption is submitted with (the result too); its record's id."""
    user, provider = world._ent_user(enterprise_side), world._provider(provider_side)
    booking = requests.request_booking(
        user,
        world.instruments[provider_side],
        requests.BookingRequest(
            mode=BookingMode.SAMPLE,
            purpose="成分分析",
            sample_count=2,
            sample_description="粉末样品",
            sample_delivery_on=NOW.date(),  # arrived: its service can be recorded
        ),
    )
    transitions.confirm_booking(provider, booking.id)
    record = records.complete_booking(
        provider, booking.id, records.ServiceReport(samples=2, result_summary="合格")
    )
    for kind in (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT, FileKind.RESULT):
        files.attach_file(provider, record.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
    records.rate_service(user, booking.id, 5, "很好")
    return record.id


def _voucher_code(world: World, side: str) -> str:
    return db.session.get_one(Voucher, world.vouchers[side]).code


def _make_redemption_record(world: World, side: str) -> dict[str, Any]:
    """A recorded service of the side, not redeemed yet, and the code of its enterprise's voucher."""
    record_id = _redeemable_service(world, side, side)
    return {"record_id": record_id, "id": record_id, "voucher_code": _voucher_code(world, side)}


def _redemption(world: World, enterprise_side: str, provider_side: str) -> dict[str, Any]:
    """A RESERVED redemption, and what the enterprise owes of its fee (yuan, as the form takes it)."""
    record_id = _redeemable_service(world, enterprise_side, provider_side)
    claim = redemptions.create_redemption(
        world._provider(provider_side), record_id, _voucher_code(world, enterprise_side)
    )
    return {"claim_id": claim.id, "id": claim.id, "share": str(fen_to_yuan(claim.enterprise_share_fen))}


World._make_redemption_record = lambda self, side: _make_redemption_record(self, side)
World._make_redemption = lambda self, side: _redemption(self, side, side)


def build_redemption_objects(world: World) -> None:
    """Each side's unredeemed service and reserved redemption; and B's redemption at P1, so that P1 has
    another customer whose redemption A must not see."""
    for side in SIDES:
        world.shared.setdefault("redemption_record", {})[side] = world._make_redemption_record(side)
        world.shared.setdefault("redemption", {})[side] = world._make_redemption(side)
    world.shared["redemption_other_customer"] = {"A": _redemption(world, "B", "A")}


# --- end of vouchers at payment -------------------------------------------------------------------------
