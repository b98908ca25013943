"""Hostile input in every form and in the catalogue import: arbitrary text (Chinese, emoji, control
characters, 10,000 characters) and malformed files.

Each page is fetched as the user who would fill it in, every form on it is found in the HTML (so a
new field is fuzzed without touching this file), and Hypothesis posts it with the page's own values
and CSRF token except for the fields it replaces with arbitrary text. Whatever is sent: never a 5xx;
a form shown again says what is wrong; and an answer that refuses leaves the database exactly as it
was (no half-written rows, no stray audit entries). Search forms (GET) must never change anything.
A catalogue file is imported whole or not at all, every problem named by its row and column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from portal.accounts.models import BankAccountState, VerificationState
from portal.admission import services as admission_services
from portal.booking import files
from portal.booking import series as booking_series
from portal.booking import transitions as booking_transitions
from portal.booking.models import Blackout, BlackoutKind, BookingState, FileKind
from portal.booking.recurrence import Repeat
from portal.booking.signals import booking_violation
from portal.catalog import editing
from portal.catalog.importer import HEADERS, import_catalog
from portal.catalog.models import Instrument
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.notifications.models import EmailState, Notification
from portal.qualifications import services as qualification_services
from portal.usage import devices as usage_devices
from portal.usage import services as usage_services
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, redemptions
from portal.vouchers import review as desk
from portal.vouchers import verification as verification_services
from portal.vouchers.checks import EVIDENCE
from portal.waitlist import services as waitlist
from tests.access_world import photo_bytes
from tests.conftest import app_in_context
from tests.factories import login
from tests.test_booking_files import PDF
from tests.test_catalog_import import csv_bytes, xlsx_bytes
from tests.test_catalog_import import row as catalogue_row

settings.register_profile(
    "fuzz-forms",
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    # A failure is reported as found: shrinking a sequence of page loads and posts takes minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
PROFILE = settings.get_profile("fuzz-forms")

# Arbitrary text, and text that has broken web applications before.
HOSTILE = st.one_of(
    st.text(max_size=30),
    st.text(
        alphabet=st.sampled_from("聊城仪器质谱😀🧪\x00\x01\x0b\x1b\x7f\u202e\u200b\ufeff<>&\"' \t\n"),
        max_size=30,
    ),
    st.sampled_from(
        [
            "\x00",
            "测试\x00仪器",
            "\x0b\x0c\x1b[31m",
            "\u202e右到左😀",
            "测试" * 5000,
            "9" * 400,
            "1e400",
            "-0",
            "NaN",
            "2026-02-30",
            "9999-12-31T23:59",
            "0001-01-01",
            "=1+1",
            "<script>alert(1)</script>",
            "",
        ]
    ),
)


# --- reading forms out of a page ------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    multipart: bool
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # (name, kind, value)
    choices: dict[str, list[str]] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class FormParser(HTMLParser):
    """Every <form> of a page with its fields, their values as the page fills them, and its buttons."""

    def __init__(self, url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.url, self.forms, self.form, self.select, self.textarea = url, [], None, None, None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            action = urljoin(self.url, a.get("action") or self.url)
            self.form = Form(action, a.get("method", "get").lower(), "multipart" in a.get("enctype", ""))
            self.forms.append(self.form)
        if self.form is None or ("name" not in a and tag != "option"):
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("submit", "button", "image"):
                self.form.buttons.append((a["name"], a.get("value", "")))
            elif kind in ("checkbox", "radio"):
                self.form.choices.setdefault(a["name"], []).append(a.get("value", "y"))
                if "checked" in a:
                    self.form.fields.append((a["name"], kind, a.get("value", "y")))
            else:
                self.form.fields.append((a["name"], kind, a.get("value", "")))
        elif tag == "button" and a.get("type", "submit") == "submit":
            self.form.buttons.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self.select = a["name"]
            self.form.choices[self.select] = []
            if "multiple" not in a:
                self.form.fields.append((self.select, "select", ""))
        elif tag == "option" and self.select:
            value = a.get("value", "")
            self.form.choices[self.select].append(value)
            if "selected" in a:
                self.form.fields.append((self.select, "option", value))
        elif tag == "textarea":
            self.textarea = [a["name"], ""]

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.textarea[1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None
        elif tag == "select":
            self.select = None
        elif tag == "textarea" and self.textarea is not None and self.form is not None:
            # HTML drops the one line break that follows <textarea>.
            text = self.textarea[1].removeprefix("\r\n").removeprefix("\n")
            self.form.fields.append((self.textarea[0], "textarea", text))
            self.textarea = None


def forms_on(html: str, url: str) -> list[Form]:
    parser = FormParser(url)
    parser.feed(html)
    # The navigation bar's sign-out form ends the session the fuzzing runs in; it has no fields.
    return [f for f in parser.forms if not urlsplit(f.action).path.endswith("/logout")]


def page_values(form: Form) -> dict[str, str]:
    """The values the page itself would submit (a select without a selected option sends its first)."""
    values: dict[str, str] = {}
    for name, kind, value in form.fields:
        if kind == "select":
            values.setdefault(name, (form.choices.get(name) or [""])[0])
        elif kind == "option":
            values[name] = value
        else:
            values.setdefault(name, value)
    return values


# --- a small world with something for every form ---------------------------------------------------


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The usual test app without the login rate limit, which would soon answer every sign-in."""
    yield from app_in_context(database_url, UPLOAD_FOLDER=str(tmp_path / "uploads"), RATELIMIT_ENABLED=False)


def _waitlist_entries(instrument, enterprise, make_user, make_booking, provider, start: datetime) -> None:
    """Issue 18: an entry of the enterprise that waits, and one offered the hour another one freed."""
    waitlist.join_waitlist(enterprise, instrument.code, start, start + timedelta(hours=1))
    later = start + timedelta(hours=1)
    held = make_booking(
        instrument,
        make_user(Role.ENTERPRISE),
        later,
        later + timedelta(hours=1),
        state=BookingState.CONFIRMED,
    )
    waitlist.join_waitlist(enterprise, instrument.code, later, later + timedelta(hours=1))
    booking_transitions.cancel_booking(provider, held.id, "企业来电改期")


@pytest.fixture
def world(
    app,
    fake_clock,
    make_user,
    make_instrument,
    make_institution,
    make_scheme,
    make_voucher,
    make_service,
    make_booking,
    make_bank_account,
) -> dict[str, Any]:
    """Users of every role, and an object in every state some form acts on."""
    host = make_institution(is_local=True)
    provider = make_user(Role.PROVIDER, institution=host)
    instrument = make_instrument(institution=host, fee_per_sample_fen=80_00)
    enterprise = make_user(Role.ENTERPRISE)
    reviewer, reviewer2 = make_user(Role.REVIEWER), make_user(Role.REVIEWER)
    finance, admin = make_user(Role.FINANCE), make_user(Role.ADMIN)
    scheme = make_scheme()
    voucher = make_voucher(enterprise, scheme)
    day = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)  # Wednesday 09:00 in Liaocheng
    past = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)

    def booking(state: BookingState, start: datetime):
        return make_booking(instrument, enterprise, start, start + timedelta(hours=1), state=state)

    # One object per transition, so that one form's success does not take another's object away.
    requested = [booking(BookingState.REQUESTED, day + timedelta(hours=n)) for n in range(3)]
    confirmed = booking(BookingState.CONFIRMED, day + timedelta(days=1))
    started = [booking(BookingState.CONFIRMED, past + timedelta(hours=n)) for n in range(3)]
    for n in range(2):  # issue 18: violations for the reviewer to waive
        missed = booking(BookingState.NO_SHOW, past + timedelta(hours=5 + n))
        booking_violation.send(missed, kind="no_show", at=missed.starts_at)
        db.session.commit()
    _waitlist_entries(instrument, enterprise, make_user, make_booking, provider, day + timedelta(days=2))
    # Issue 18: a booking whose check-in is open, and one checked in (their pages hold the forms).
    to_check_in = booking(BookingState.CONFIRMED, fake_clock.current + timedelta(minutes=5))
    elsewhere = make_instrument(institution=host)
    now = fake_clock.current
    to_check_out = make_booking(
        elsewhere,
        enterprise,
        now - timedelta(minutes=10),
        now + timedelta(minutes=50),
        state=BookingState.CONFIRMED,
    )
    usage_services.check_in(enterprise, to_check_out.id)
    unrated = make_service(enterprise, instrument=instrument, rated=False, evidence=())
    for kind in (FileKind.CONTRACT, FileKind.INVOICE):
        files.attach_file(enterprise, unrated.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
    records = [make_service(enterprise, instrument=instrument) for _ in range(5)]
    draft = claim_services.create_claim(enterprise, voucher.id, [records[0].id])
    submitted = []
    for record in records[1:3]:
        claim = claim_services.create_claim(enterprise, voucher.id, [record.id])
        submitted.append(claim_services.submit_claim(enterprise, claim.id))
    approved = claim_services.create_claim(enterprise, voucher.id, [records[3].id])
    claim_services.submit_claim(enterprise, approved.id)
    desk.approve_claim(reviewer, approved.id)
    notice.end_public_notice(date(2027, 1, 31))
    make_bank_account(enterprise)  # finance pays only a verified account
    batch = batches.build_batch(finance, "2026-12")
    # A returned claim to correct, and a bank account change to decide (issue 13).
    to_correct = claim_services.create_claim(
        enterprise, voucher.id, [make_service(enterprise, instrument=instrument).id]
    )
    claim_services.submit_claim(enterprise, to_correct.id)
    desk.return_claim(reviewer, to_correct.id, "请补充付款凭证")
    bank_change = make_bank_account(enterprise, state=BankAccountState.PENDING, bank_name="中国银行聊城分行")
    applicants = [make_user(Role.ENTERPRISE) for _ in range(2)]
    applications = [application_services.apply_for_voucher(a, 50_000_00, "扩产检测") for a in applicants]
    returned = make_user(Role.ENTERPRISE)
    to_resubmit = application_services.apply_for_voucher(returned, 20_000_00, "检测计划")
    application_services.return_application(reviewer, to_resubmit.id, comment="请补充计划")
    pending = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    waiting = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    verification = verification_services.submit_verification(
        waiting, verification_services.VerificationData(kind="maker_team", actual_controller="李四")
    )
    blackout = Blackout(
        instrument_id=instrument.id,
        kind=BlackoutKind.MAINTENANCE,
        starts_at=day + timedelta(days=7),
        ends_at=day + timedelta(days=7, hours=4),
        reason="保养",
    )
    failed = Notification(
        recipient_id=enterprise.id,
        kind="booking.confirmed",
        dedup_key="fuzz-failed",
        email_state=EmailState.FAILED,
    )
    db.session.add_all([blackout, failed])
    db.session.commit()
    code = instrument.code
    for caption in ("正面", "侧面"):  # photos to make main and to delete
        editing.add_photo(provider, code, io.BytesIO(photo_bytes()), caption)
    # Use rules (issue 17): a qualification to revoke and a training session to enrol in.
    qualification_services.grant_qualification(
        provider, code, enterprise.username, day.date() + timedelta(days=60)
    )
    qualification_services.publish_training(
        provider,
        code,
        qualification_services.TrainingInput(day + timedelta(days=5), day + timedelta(days=5, hours=2), 8),
    )
    usage_devices.create_device_key(provider, code, "PC")  # so the use page shows a key to revoke
    # Issue 18: recurring bookings, one for the enterprise's forms and one for the provider's.
    recurring = [
        booking_series.request_series(
            enterprise,
            code,
            booking_series.SeriesRequest(
                start, start + timedelta(hours=1), Repeat("day", count=3), purpose="例行"
            ),
        )
        for start in (day + timedelta(days=5, hours=5), day + timedelta(days=12, hours=5))
    ]
    slot = "2026-12-10T01:00:00Z"  # Thursday 09:00 in Liaocheng
    # Issue 19: a record of internal use (its delete form), the provider's report (its submit form).
    from portal.usage import internal

    yesterday = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    internal.record_internal_use(
        provider, code, internal.InternalUseData(yesterday, yesterday + timedelta(hours=2), "课题组")
    )
    # Issue 21: redemptions at payment (one to reserve, one to submit, one to withdraw), the provider's
    # bank account, an admission to apply for and one to decide, an admitted provider's standing.
    scheme.redemption_modes = ["reimbursement", "at_payment"]
    db.session.commit()
    to_redeem = make_service(enterprise, instrument=instrument, evidence=(*EVIDENCE, FileKind.RESULT))
    reserved = [
        redemptions.create_redemption(
            provider,
            make_service(enterprise, instrument=instrument, evidence=(*EVIDENCE, FileKind.RESULT)).id,
            voucher.code,
        )
        for _ in range(2)
    ]
    applicant_host = make_institution(admission="none")
    applicant = make_user(Role.PROVIDER, institution=applicant_host)
    make_instrument(institution=applicant_host)
    deciding_host = make_institution(admission="none")
    deciding = admission_services.apply_for_admission(
        make_user(Role.PROVIDER, institution=deciding_host),
        deciding_host.id,
        admission_services.AdmissionData(
            [make_instrument(institution=deciding_host).id], "按小时收费", "守信承诺"
        ),
    )
    redemption_pages = [
        (provider, f"/vouchers/redemptions/records/{to_redeem.id}", None),
        (provider, f"/vouchers/redemptions/{reserved[0].id}/submit", None),
        (provider, f"/vouchers/claims/{reserved[1].id}", "/withdraw"),
        (provider, "/vouchers/provider/bank-account", None),
        (applicant, f"/admission/institutions/{applicant_host.id}", None),
        (reviewer2, f"/admission/{deciding.id}", None),
        (reviewer2, f"/admission/institutions/{host.id}", "/standing"),
    ]
    # (who, page, which form: the end of its action, or None for every form on the page)
    pages = [
        *redemption_pages,
        (None, "/register", None),
        (None, "/login", None),
        (None, "/instruments/?q=质谱", None),
        (enterprise, f"/instruments/{code}/book?start={slot}", None),
        (enterprise, f"/instruments/{code}/book-sample", None),
        (enterprise, f"/instruments/{code}/book-series?start={slot}", None),
        (enterprise, f"/bookings/series/{recurring[0].id}", None),
        (provider, f"/bookings/series/{recurring[1].id}", None),
        (enterprise, f"/bookings/{confirmed.id}", None),
        (enterprise, f"/bookings/{unrated.booking_id}", None),
        (enterprise, "/bookings/", None),
        (enterprise, "/vouchers/claims/new", None),
        (enterprise, f"/vouchers/claims/{draft.id}", None),
        (enterprise, "/account/calendar", None),
        (enterprise, "/notifications/", None),
        (enterprise, "/vouchers/bank-account", None),
        (enterprise, f"/vouchers/claims/{to_correct.id}/revise", None),
        (returned, f"/vouchers/applications/{to_resubmit.id}/resubmit", None),
        (make_user(Role.ENTERPRISE), "/vouchers/apply", None),
        (pending, "/vouchers/verification", None),
        (provider, f"/bookings/{requested[0].id}", "/confirm"),
        (provider, f"/bookings/{requested[1].id}", "/reject"),
        (provider, f"/bookings/{requested[2].id}", "/cancel"),
        (provider, f"/bookings/{records[4].booking_id}", "/files"),
        (provider, f"/bookings/{started[0].id}", "/complete"),
        (provider, f"/bookings/{started[1].id}", "/no-show"),
        (provider, f"/manage/instruments/{code}", None),
        (provider, f"/manage/instruments/{code}/record", None),
        (provider, f"/manage/instruments/{code}/qualifications", None),
        (provider, f"/manage/instruments/{code}/prices", None),
        (provider, f"/manage/instruments/{code}/usage", None),
        (enterprise, f"/bookings/{to_check_in.id}", "/check-in"),
        (enterprise, f"/bookings/{to_check_out.id}", "/check-out"),
        (enterprise, f"/instruments/{code}", "/enrol"),
        (reviewer2, f"/vouchers/claims/{submitted[0].id}", None),
        (reviewer2, f"/vouchers/claims/{submitted[1].id}", None),
        (reviewer2, f"/review/applications/{applications[0].id}", None),
        (reviewer2, f"/review/applications/{applications[1].id}", None),
        (reviewer2, f"/review/verifications/{verification.id}", None),
        (reviewer2, "/review/", None),
        (reviewer2, f"/review/bank-accounts/{bank_change.id}", None),
        (reviewer2, "/review/audit", None),
        (admin, "/review/scheme", None),
        (admin, "/credit/rules", None),
        (reviewer2, "/credit/", None),
        (enterprise, "/waitlist/", None),
        (enterprise, f"/waitlist/join?instrument={code}&starts_at={slot}&ends_at=2026-12-10T02:00:00Z", None),
        (admin, "/notifications/failed", None),
        (finance, "/finance/", None),
        (finance, "/finance/batches", None),
        (finance, f"/finance/batches/{batch.id}", None),
        (finance, "/dashboard/", None),
        (finance, "/dashboard/ranking", None),
        (provider, "/reports/", None),
        (reviewer2, "/reports/purchase-checks", None),
        (
            reviewer2,
            f"/reports/evaluation/score-sheet?year=2026&institution_id={provider.institution_id}",
            None,
        ),
        *account_pages(make_user, admin),
    ]
    pages += console_pages(admin, make_institution(), host)  # admin console (issue 13)
    return {"pages": pages}


# --- admin console (issue 13) ----------------------------------------------------------------------


def console_pages(admin, institution, host) -> list[tuple]:
    """The console's forms: an institution to edit, the schemes, an upload and a checked file to apply."""
    from portal.catalog import imports
    from portal.catalog.importer import HEADERS

    values = {
        "仪器编码": "FUZZ-1",
        "仪器名称": "模糊测试仪",
        "仪器分类代码": "0102",
        "原值(万元)": "1",
        "依托单位": host.name,
    }
    data = (",".join(HEADERS) + "\n" + ",".join(values.get(h, "") for h in HEADERS) + "\n").encode()
    checked = imports.start_import(admin, io.BytesIO(data), "fuzz.csv")
    return [
        (admin, "/admin/institutions", None),
        (admin, "/admin/institutions/new", None),
        (admin, f"/admin/institutions/{institution.id}", None),
        (admin, "/admin/enterprises", None),
        (admin, "/admin/schemes", None),
        (admin, "/admin/imports", None),
        (admin, "/admin/synonyms", None),
        (admin, f"/admin/imports/{checked.id}", "/apply"),
    ]


def account_pages(make_user, admin) -> list[tuple[Any, str, str | None]]:
    """The accounts pages (issue 13): passwords, profile, colleagues, mailed links, the console's users."""
    from portal.accounts import colleagues, passwords, services, tokens, users
    from portal.accounts.models import TokenPurpose

    holder = make_user(Role.ENTERPRISE, email="fuzz-holder@example.cn")
    make_user(Role.ENTERPRISE, enterprise=holder.enterprise, email="fuzz-staff@example.cn")
    inactive = make_user(Role.ENTERPRISE, enterprise=holder.enterprise)
    users.set_active(holder, inactive.id, "deactivate")
    invitation = colleagues.invite(holder, "fuzz-invitee@example.cn")
    forgetful = make_user(Role.PROVIDER, email="fuzz-forgetful@example.cn")
    reset = passwords.send_reset_link(forgetful)
    mover = make_user(Role.REVIEWER, email="fuzz-mover@example.cn")
    moving = tokens.issue_account_token(mover, TokenPurpose.EMAIL_CHANGE, 3600, email="fuzz-moved@example.cn")
    signing_up = make_user(Role.ENTERPRISE, email="fuzz-signup@example.cn", awaiting_confirmation=True)
    activation = services.send_registration_link(signing_up)
    db.session.commit()
    staff, gone = make_user(Role.FINANCE, email="fuzz-staff2@example.cn"), make_user(Role.REVIEWER)
    users.set_active(admin, gone.id, "deactivate")
    # Hand-overs in enterprises of their own: the first one that works ends the holder's rights.
    handing, taking = make_user(Role.ENTERPRISE), make_user(Role.ENTERPRISE)
    make_user(Role.ENTERPRISE, enterprise=handing.enterprise)
    other_staff = make_user(Role.ENTERPRISE, enterprise=taking.enterprise)

    def secret(row) -> str:
        return tokens.derive_secret(tokens.kind_of(row), row.salt)

    return [
        (None, "/password/forgot", None),
        (None, f"/password/reset/{secret(reset)}", None),
        (None, f"/invitations/{secret(invitation)}", None),
        (None, f"/register/confirm/{secret(activation)}", None),
        (mover, f"/account/email/{secret(moving)}", None),
        (mover, "/account/password", None),
        (mover, "/account/profile", None),
        (holder, "/account/colleagues", "/account/colleagues"),
        (holder, "/account/colleagues", "/revoke"),
        (holder, "/account/colleagues", "/reactivate"),
        (holder, "/account/colleagues", "/deactivate"),
        (handing, "/account/colleagues", "/handover"),
        (admin, "/admin/users", None),
        (admin, "/admin/users/new", None),
        (admin, f"/admin/users/{staff.id}", None),
        (admin, f"/admin/users/{gone.id}", "/reactivate"),
        (admin, f"/admin/users/{other_staff.id}", "/holder"),
    ]


# --- the fuzzing -----------------------------------------------------------------------------------

ERROR_MARKS = ("is-invalid", "invalid-feedback", "alert-danger", "text-danger")
# Buttons that answer with a page of results rather than a redirect when all is well.
RESULT_PAGES = {("/vouchers/claims/new", "preview"), ("/password/forgot", "submit")}
KEEP = object()  # the field keeps the value the page gave it


def _table_contents(table: sa.Table, dialect: str) -> str:
    """SQL for one table's rows as one text, in an order that does not depend on the physical one."""
    if dialect == "postgresql":
        # The row's own text form; hashed on the server, so only 32 characters a table come back.
        rows = "coalesce(string_agg(snapshot_row::text, chr(10) ORDER BY snapshot_row::text), '')"
        return f'(SELECT md5({rows}) FROM "{table.name}" snapshot_row)'
    row = " || '|' || ".join(f'quote("{column.name}")' for column in table.columns)
    return f'(SELECT group_concat(r, char(10)) FROM (SELECT {row} AS r FROM "{table.name}" ORDER BY r))'


_SNAPSHOT_SQL: dict[str, sa.TextClause] = {}


def snapshot() -> dict[str, str]:
    """Every row of every table, as the next request would see them: one statement for all the
    tables (a query per table, twice per example, was two fifths of the fuzzing's time)."""
    db.session.rollback()
    dialect = db.engine.dialect.name
    if dialect not in _SNAPSHOT_SQL:
        tables = db.metadata.sorted_tables
        columns = ", ".join(f"{_table_contents(t, dialect)} AS c{n}" for n, t in enumerate(tables))
        _SNAPSHOT_SQL[dialect] = sa.text(f"SELECT {columns}")
    with db.engine.connect() as conn:
        values = conn.execute(_SNAPSHOT_SQL[dialect]).one()
    return {table.name: value for table, value in zip(db.metadata.sorted_tables, values, strict=True)}


def signature(form: Form) -> tuple:
    return (form.action, form.method, tuple(sorted(page_values(form))), tuple(form.buttons))


def plan_for(form: Form) -> st.SearchStrategy[dict[str, Any]]:
    """What to send instead of the page's values: drawn from the form as first seen, so that the
    drawing does not depend on what earlier examples did to the database."""
    plan: dict[str, st.SearchStrategy] = {}
    for name in {name for name, _kind, _value in form.fields} | set(form.choices):
        kind = next((k for n, k, _v in form.fields if n == name), "choice")
        if kind == "file":
            upload = st.tuples(st.sampled_from([PDF, b"", b"MZ\x90\x00", "测试\x00".encode()]), HOSTILE)
            plan[name] = st.none() | upload
        elif name.endswith("csrf_token"):
            # Mostly the page's own token, or the fuzzing would never get past it.
            plan[name] = st.one_of(*[st.just(KEEP)] * 9, HOSTILE)
        else:
            plan[name] = st.one_of(
                HOSTILE,
                st.just(KEEP),
                *([st.sampled_from(form.choices[name])] if name in form.choices else []),
            )
    if form.buttons:
        plan["__button__"] = st.integers(0, len(form.buttons) - 1)
    if form.method == "get":
        plan.setdefault("page", st.one_of(HOSTILE, st.just(KEEP)))  # lists page through results
    return st.fixed_dictionaries(plan)


def apply_plan(form: Form, plan: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = page_values(form)
    for name, choice in plan.items():
        if name == "__button__":
            button, value = form.buttons[min(choice, len(form.buttons) - 1)]
            values[button] = value
        elif isinstance(choice, tuple):
            content, filename = choice
            values[name] = (io.BytesIO(content), filename or "x.pdf")
        elif choice is None:
            values.pop(name, None)  # no file attached
        elif choice is not KEEP:
            values[name] = choice
    return values


def find_form(client: FlaskClient, url: str, wanted: tuple) -> Form | None:
    """The form as the page shows it now (fresh CSRF token and values), if the page still has it."""
    page = client.get(url)
    if page.status_code != 200:
        return None
    here = forms_on(page.get_data(as_text=True), "http://localhost" + url)
    return next((f for f in here if signature(f) == wanted), None)


def send(client: FlaskClient, form: Form, values: dict[str, Any]):
    parts = urlsplit(form.action)
    if form.method == "get":
        return client.get(parts.path, query_string={k: v for k, v in values.items() if isinstance(v, str)})
    return client.post(
        parts.path + (f"?{parts.query}" if parts.query else ""),
        data=values,
        content_type="multipart/form-data" if form.multipart else None,
    )


def fuzz_form(client: FlaskClient, url: str, form: Form) -> None:
    """Post the form again and again with drawn text; check each answer and the database."""
    wanted = signature(form)
    # The form as the page showed it, while nothing has changed since: the page would show it again
    # the same (its CSRF token lasts the session), so it is fetched again only after a change.
    unchanged: dict[str, Form] = {}

    @settings(PROFILE)
    @given(plan=plan_for(form))
    def post(plan: dict[str, Any]) -> None:
        current = unchanged.pop("form", None) or find_form(client, url, wanted)
        if current is None:
            return  # an earlier example moved the object on (confirmed, decided, paid)
        values = apply_plan(current, plan)
        before = snapshot()
        response = send(client, current, values)
        after = snapshot()
        shown = f"{response.status_code} for {values!r:.500}"
        assert response.status_code < 500, shown
        changed = [name for name in before if before[name] != after[name]]
        if not changed:
            unchanged["form"] = current
        if current.method == "get":
            assert not changed, f"a search changed {changed}; {shown}"
            return
        body = response.get_data(as_text=True) if response.mimetype == "text/html" else ""
        if response.status_code in (301, 302, 303):
            body = client.get(response.headers["Location"]).get_data(as_text=True)
        refused = response.status_code >= 400 or any(mark in body for mark in ERROR_MARKS)
        if refused:
            assert not changed, f"refused, yet {changed} changed (half-written); {shown}"
        elif response.status_code == 200 and response.mimetype == "text/html" and not changed:
            pressed = {name for name, _value in current.buttons if name in values}
            result = any((urlsplit(current.action).path, b) in RESULT_PAGES for b in pressed)
            assert result, f"the form came back without a word of what is wrong; {shown}"

    # Besides the drawn examples, each text field in turn gets NUL, a control character, emoji and
    # Chinese (PostgreSQL refuses NUL), and then every text field at once 10,000 characters.
    text_fields = [
        n for n, kind, _v in form.fields if kind not in ("file", "select", "option", "checkbox", "radio")
    ]
    text_fields = [n for n in text_fields if not n.endswith("csrf_token")]
    button = {"__button__": 0} if form.buttons else {}
    for name in text_fields:
        post = example(plan={name: "测试\x00仪器😀\x0b\u202e", **button})(post)
    if text_fields:
        post = example(plan=dict.fromkeys(text_fields, "长" * 10_000) | button)(post)
    post()


def test_every_form_survives_arbitrary_text(app, world) -> None:
    clients: dict[Any, FlaskClient] = {}
    failures: list[str] = []
    fuzzed: set[tuple[str, str]] = set()
    for user, url, only in world["pages"]:
        if user not in clients:
            clients[user] = app.test_client()
            if user is not None:
                login(clients[user], user.username)
        client = clients[user]
        page = client.get(url)
        assert page.status_code == 200, url
        forms = [
            f
            for f in forms_on(page.get_data(as_text=True), "http://localhost" + url)
            if only is None or urlsplit(f.action).path.endswith(only)
        ]
        assert forms, f"no form on {url}"
        for form in forms:
            fuzzed.add((urlsplit(form.action).path, form.method.upper()))
            try:
                fuzz_form(client, url, form)
            except Exception as error:  # collected, so that one run reports every form
                failures.append(
                    f"{url} -> {form.method.upper()} {form.action}: {type(error).__name__}: {error}"
                )
    assert not failures, "\n\n".join(failures)
    # Every POST route of the interface had a form fuzzed (but sign-out, which has nothing to fuzz).
    routes = app.url_map.bind("localhost")
    reached = {routes.match(path, method=method)[0] for path, method in fuzzed if method == "POST"}
    posted = {
        r.endpoint for r in app.url_map.iter_rules() if "POST" in r.methods and not r.rule.startswith("/api/")
    }
    assert posted - reached == {"accounts.logout"}


# --- the catalogue import -------------------------------------------------------------------------

IMPORT_PROFILE = settings(PROFILE, max_examples=25)
# XML (so XLSX) cannot hold C0 control characters: a workbook can only carry the rest.
NOT_IN_XML = "".join(map(chr, [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF]))
XML_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=NOT_IN_XML), max_size=30
)


@pytest.fixture
def host(make_institution):
    return make_institution(name="聊城测试大学", county="东昌府区")


@st.composite
def catalogue_files(draw: st.DrawFn) -> tuple[bytes, str, int]:
    """A catalogue file of good rows with arbitrary text in some cells: (content, name, data rows)."""
    as_xlsx = draw(st.booleans(), label="xlsx")
    cell = (
        (XML_TEXT | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False))
        if as_xlsx
        else HOSTILE
    )
    rows = []
    for n in range(draw(st.integers(1, 4), label="rows")):
        values = catalogue_row(**{"仪器编码": f"FZ-{n:03d}"})
        for header in draw(st.lists(st.sampled_from(HEADERS), max_size=3, unique=True), label="replaced"):
            values[header] = draw(cell, label=header)
        rows.append(values)
    return catalogue_file(rows, as_xlsx)


def catalogue_file(rows: list[dict[str, Any]], as_xlsx: bool = False) -> tuple[bytes, str, int]:
    table = [HEADERS, *([values.get(h, "") for h in HEADERS] for values in rows)]
    if as_xlsx:
        workbook = Workbook()
        for cells in table:
            workbook.active.append(cells)
        buffer = io.BytesIO()
        workbook.save(buffer)
        return buffer.getvalue(), "catalogue.xlsx", len(rows)
    text = io.StringIO()
    csv.writer(text).writerows(table)
    return text.getvalue().encode(), "catalogue.csv", len(rows)


def test_catalogue_import_of_arbitrary_cells_is_all_or_nothing(app, host) -> None:
    @IMPORT_PROFILE
    @given(file=catalogue_files())
    # Whatever the draws: NUL in free text (PostgreSQL refuses it), a number beyond Decimal's digits,
    # a huge float in a workbook cell, and a good file of two rows.
    @example(file=catalogue_file([catalogue_row(**{"仪器名称": "质谱\x00仪", "主要功能": "\x0b"})]))
    @example(file=catalogue_file([catalogue_row(**{"原值(万元)": "1e400", "收费标准(元/样)": "9" * 400})]))
    @example(file=catalogue_file([catalogue_row(**{"原值(万元)": 1e308, "启用日期": -1e300})], as_xlsx=True))
    @example(file=catalogue_file([catalogue_row(), catalogue_row(**{"仪器编码": "FZ-2"})], as_xlsx=True))
    def check(file: tuple[bytes, str, int]) -> None:
        content, name, rows = file
        before = snapshot()
        report = import_catalog(io.BytesIO(content), name)
        after = snapshot()
        if report.problems:
            assert before == after, "a refused file changed the database"
            for problem in report.problems:
                assert 0 <= problem.row <= rows + 1 and problem.column in ("", *HEADERS), problem
                assert str(problem.message)
            return
        stored = db.session.scalar(sa.select(sa.func.count()).select_from(Instrument))
        assert report.created == stored == rows, (report, stored, rows)
        again = import_catalog(io.BytesIO(content), name)
        assert again.ok and again.unchanged == rows, f"importing the same file again changed it: {again}"
        # Undo, so that the next example starts from the same catalogue.
        db.session.execute(sa.delete(Instrument))
        db.session.commit()

    check()


def test_malformed_catalogue_files_are_reported_and_change_nothing(app, host) -> None:
    good_csv = csv_bytes([catalogue_row()])
    good_xlsx = xlsx_bytes([HEADERS, [catalogue_row().get(h, "") for h in HEADERS]])
    broken = st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b),  # looks like a zip, is not
        st.integers(1, len(good_xlsx) - 1).map(lambda n: good_xlsx[:n]),  # a truncated workbook
        st.integers(1, len(good_csv) - 1).map(lambda n: good_csv[:n] + b"\xff\xfe"),  # cut, then not UTF-8
        st.just(b'"unterminated,' + b"x" * 200_000),  # a field beyond the csv module's limit
    )

    @IMPORT_PROFILE
    @given(content=broken, name=st.sampled_from(["catalogue.csv", "catalogue.xlsx", "catalogue.CSV", "目录"]))
    def check(content: bytes, name: str) -> None:
        before = snapshot()
        report = import_catalog(io.BytesIO(content), name)
        assert snapshot() == before
        assert report.problems and all(str(p) for p in report.problems)

    check()


def test_the_import_command_reports_a_hostile_file_without_a_traceback(app, host, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    hostile = {"仪器名称": "质谱\x00仪", "原值(万元)": "1e400", "启用日期": "0001-13-01"}
    path.write_bytes(csv_bytes([catalogue_row(**hostile)]))
    before = snapshot()
    result = app.test_cli_runner().invoke(args=["catalog", "import", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    for column in hostile:  # each problem named by its row (2: the first after the headers) and column
        assert any(column in line and "2" in line for line in result.output.splitlines()), result.output
    assert snapshot() == before
