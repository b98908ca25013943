"""Stored markup is shown as text everywhere: pages, SVG charts, the API, exports, e-mails, notifications.

Every text a user controls and the portal displays holds a script tag and an attribute break-out.
Every page that shows it must show it escaped (the escaped form is there, the raw tag never is);
the API returns it as the JSON text it is; CSV and XLSX carry it as plain cell text; e-mails are
plain text; the server-drawn SVG is well-formed XML with the label inside as text.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import pytest
from flask import Flask
from markupsafe import escape
from openpyxl import load_workbook
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts.models import Enterprise, EnterpriseKind, VerificationState
from portal.booking import files, records, requests, settings, transitions
from portal.booking.models import BlackoutKind, BookingMode, BookingState, FileKind
from portal.catalog.importer import import_catalog
from portal.catalog.models import Instrument, OpeningHours
from portal.core.charts import Series, bar_chart, hbar_chart
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice
from portal.vouchers import review as desk
from portal.vouchers import verification as verification_services
from tests.accounts_helpers import run_deferred
from tests.conftest import app_in_context
from tests.factories import PASSWORD, extract_csrf, login, valid_uscc
from tests.test_booking_files import PDF
from tests.test_catalog_import import csv_bytes, row

XSS = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'
RAW = ("<script>alert(1)", "<img src=x")
OPERATOR = '仪器联系人"><img src=x onerror=alert(1)>'


def tagged(label: str) -> str:
    """A text that says where it came from, with both attacks in it."""
    return f"{label}{XSS}"


def escaped(text: str) -> str:
    """How a page must show a stored text: a label is the text `tagged(label)`, else it is the text."""
    return str(escape(text if "onerror" in text else tagged(text)))


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The usual test app, with its mail in a folder of this test's own."""
    yield from app_in_context(
        database_url,
        UPLOAD_FOLDER=str(tmp_path / "uploads"),
        MAIL_FILE_FOLDER=str(tmp_path / "mail"),
        RATELIMIT_ENABLED=False,
    )


def enterprise_user(make_user, label: str, **overrides):
    enterprise = Enterprise(
        uscc=valid_uscc(),
        name=tagged(label),
        kind=EnterpriseKind.TECH_SME,
        county="东昌府区",
        verification_state=VerificationState.VERIFIED,
        actual_controller=tagged(f"{label}控制人"),
        controller_group=tagged(f"{label}控制人"),
    )
    overrides.setdefault("is_holder", True)  # who brings the enterprise along holds its account
    return make_user(Role.ENTERPRISE, enterprise=enterprise, full_name=tagged(f"{label}人"), **overrides)


@pytest.fixture
def world(app, fake_clock, make_user, make_institution, make_scheme, make_voucher, make_booking, client):
    """Markup in every text a user controls, each stored the way the portal stores it."""
    host = make_institution(name=tagged("单位"), is_local=True)
    # The instrument comes from a catalogue file, as the network's do.
    cells = {
        "仪器编码": "XSS-001",
        "仪器名称": tagged("仪器"),
        "英文名称": tagged("Instrument"),
        "规格型号": tagged("型号"),
        "生产制造商": tagged("厂商"),
        "安放地址": tagged("地址"),
        "主要技术指标": tagged("指标"),
        "主要功能": tagged("功能"),
        "服务内容": tagged("服务"),
        "联系人": OPERATOR,  # at most 40 characters
        "依托单位": host.name,
        "收费标准(元/小时)": "300",
    }
    report = import_catalog(io.BytesIO(csv_bytes([row(**cells)])), "catalogue.csv")
    assert report.ok, report.problems
    instrument = db.session.scalar(select(Instrument).where(Instrument.code == "XSS-001"))
    instrument.opening_hours = [
        OpeningHours(
            weekday=d, opens_at=datetime.min.time(), closes_at=datetime.max.time().replace(microsecond=0)
        )
        for d in range(7)
    ]
    db.session.commit()
    provider = make_user(Role.PROVIDER, institution=host, full_name=tagged("操作员"))
    reviewer, finance = make_user(Role.REVIEWER, full_name=tagged("审核员")), make_user(Role.FINANCE)
    admin = make_user(Role.ADMIN)
    enterprise = enterprise_user(make_user, "企业名")
    scheme = make_scheme()
    voucher = make_voucher(enterprise, scheme)

    # Booking texts, each through its service (which also writes the notifications and mails).
    sample = requests.request_booking(
        enterprise,
        instrument.code,
        requests.BookingRequest(
            mode=BookingMode.SAMPLE,
            purpose=tagged("目的"),
            sample_count=2,
            sample_description=tagged("样品"),
            sample_delivery_on=date(2026, 12, 10),
        ),
    )
    transitions.reject_booking(provider, sample.id, tagged("拒绝"))
    start = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    done = []
    for n in range(3):
        booking = make_booking(
            instrument,
            enterprise,
            start + timedelta(hours=2 * n),
            start + timedelta(hours=2 * n + 1),
            state=BookingState.CONFIRMED,
            purpose=tagged("目的"),
        )
        record = records.complete_booking(
            provider,
            booking.id,
            records.ServiceReport(
                hours=Decimal(1), fee_fen=250_00, fee_reason=tagged("费用"), result_summary=tagged("结果")
            ),
        )
        for kind in (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT):
            files.attach_file(provider, record.id, kind, io.BytesIO(PDF), f"{kind.value}.pdf")
        records.rate_service(enterprise, booking.id, 4, tagged("评价"))
        done.append(record)
    settings.add_blackout(
        provider,
        instrument,
        BlackoutKind.MAINTENANCE,
        datetime(2026, 12, 8, 1, 0, tzinfo=UTC),
        datetime(2026, 12, 8, 3, 0, tzinfo=UTC),
        tagged("保养"),
    )

    # The bank account (issue 13): the one in effect, verified with a reason, and a change waiting.
    account = banking.record_bank_account(
        enterprise, banking.BankAccountData(tagged("户名"), tagged("开户行"), "0160 9000 1111 2222")
    )
    banking.decide_bank_account(reviewer, account.id, "verify", tagged("核验理由"))
    change = banking.record_bank_account(
        enterprise, banking.BankAccountData(tagged("户名"), tagged("新开户行"), "6217 0000 1111 2222")
    )

    # Vouchers: a claim returned with a comment, one approved (so it is in the totals and exports).
    returned = claim_services.create_claim(enterprise, voucher.id, [done[0].id])
    claim_services.submit_claim(enterprise, returned.id)
    desk.return_claim(reviewer, returned.id, tagged("退回申领"))
    claim_services.revise_claim(enterprise, returned.id, tagged("答复"))
    approved = claim_services.create_claim(enterprise, voucher.id, [done[1].id])
    claim_services.submit_claim(enterprise, approved.id)
    desk.approve_claim(reviewer, approved.id)
    notice.end_public_notice(date(2027, 1, 31))
    batch = batches.build_batch(finance, "2026-12")
    in_notice = claim_services.create_claim(enterprise, voucher.id, [done[2].id])
    claim_services.submit_claim(enterprise, in_notice.id)
    desk.approve_claim(reviewer, in_notice.id)
    applicant = enterprise_user(make_user, "申请方")
    application = application_services.apply_for_voucher(applicant, 10_000_00, tagged("计划"))
    application_services.return_application(reviewer, application.id, comment=tagged("退回申请"))

    # An enterprise that registered through the form, asking to be verified.
    form = {
        "csrf_token": extract_csrf(client.get("/register").get_data(as_text=True)),
        "company_name": tagged("注册方"),
        "uscc": valid_uscc(4242),
        "kind": "maker_team",
        "county": "东昌府区",
        "full_name": tagged("注册人"),
        "email": "reg@example.cn",
        "username": "registered",
        "password": "a-long-password",
        "confirm": "a-long-password",
    }
    response = client.post("/register", data=form)
    assert response.status_code == 200
    run_deferred(response)  # the account is made after the answer (portal.accounts.registration)
    registered = db.session.scalar(select(Enterprise).where(Enterprise.uscc == valid_uscc(4242))).users[0]
    verification = verification_services.submit_verification(
        registered,
        verification_services.VerificationData(kind="maker_team", actual_controller=tagged("实控人")),
    )
    return {
        "instrument": instrument,
        "users": {
            "enterprise": enterprise,
            "applicant": applicant,
            "provider": provider,
            "reviewer": reviewer,
            "finance": finance,
            "admin": admin,
        },
        "ids": {
            "sample": sample.id,
            "booking": done[1].booking_id,
            "record": done[1].id,
            "returned": returned.id,
            "approved": approved.id,
            "application": application.id,
            "verification": verification.id,
            "voucher": voucher.id,
            "batch": batch.id,
            "bank_change": change.id,
        },
    }


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


# (who, page, the texts it shows): each must be there escaped, and no raw tag anywhere on the page.
PAGES = [
    (None, "/instruments/", ["单位", "仪器", "型号", "厂商"]),
    (
        None,
        "/instruments/XSS-001",
        ["单位", "仪器", "Instrument", "型号", "厂商", "地址", "指标", "功能", "服务"],
    ),
    (None, "/instruments/XSS-001/availability?week=2026-12-07", ["仪器"]),
    (None, f"/instruments/?q={XSS}", [XSS]),  # the search box shows what was searched for
    (None, "/network/", ["单位", "仪器"]),
    ("enterprise", "/instruments/XSS-001", ["仪器", OPERATOR]),
    ("enterprise", "/bookings/", ["单位", "仪器", "企业名人"]),
    ("enterprise", "/bookings/{sample}", ["单位", "仪器", "地址", "企业名", "目的", "样品", "拒绝"]),
    ("enterprise", "/bookings/{booking}", ["单位", "仪器", "企业名", "目的", "费用", "结果", "评价"]),
    ("enterprise", "/vouchers/", ["企业名控制人"]),
    ("enterprise", "/vouchers/claims/{returned}", ["单位", "仪器", "企业名", "退回申领"]),
    ("enterprise", "/vouchers/voucher/{voucher}", ["企业名"]),
    ("enterprise", "/vouchers/notices", ["企业名"]),
    ("enterprise", "/account", ["企业名", "企业名人"]),
    ("enterprise", "/notifications/", ["单位", "仪器", "拒绝", "退回申领"]),
    ("applicant", "/vouchers/applications/{application}/resubmit", ["退回申请", "计划"]),
    ("applicant", "/notifications/", ["退回申请"]),
    ("provider", "/bookings/{sample}", ["仪器", "操作员", "企业名", "目的", "样品", "拒绝"]),
    ("provider", "/bookings/{booking}", ["仪器", "企业名", "费用", "结果", "评价"]),
    ("provider", "/manage/instruments", ["仪器", "型号"]),
    ("provider", "/manage/instruments/XSS-001", ["仪器", "保养"]),
    ("provider", "/notifications/", ["仪器", "企业名"]),
    ("reviewer", "/review/?kind=verification", ["审核员", "注册方"]),
    ("reviewer", "/review/verifications/{verification}", ["注册方", "实控人"]),
    ("reviewer", "/review/applications/{application}", ["申请方", "退回申请", "计划"]),
    ("reviewer", "/vouchers/claims/{returned}", ["单位", "仪器", "企业名", "退回申领"]),
    ("reviewer", "/review/audit", ["保养", "退回申领", "退回申请"]),
    ("reviewer", "/review/audit?action=service.recorded", ["费用"]),
    ("reviewer", "/bookings/{booking}", ["企业名", "目的", "费用", "结果", "评价"]),
    ("reviewer", "/dashboard/", ["单位", "仪器"]),
    ("reviewer", "/dashboard/ranking", ["单位"]),
    ("reviewer", "/dashboard/ranking?level=instrument", ["单位", "仪器"]),
    ("reviewer", "/finance/?group_by=enterprise&month_from=2026-01&month_to=2026-12", ["企业名"]),
    ("reviewer", "/finance/?group_by=provider&month_from=2026-01&month_to=2026-12", ["单位"]),
    ("finance", "/finance/batches/{batch}", ["企业名"]),
    # issue 13: bank accounts and corrected claims
    ("enterprise", "/vouchers/bank-account", ["户名", "开户行", "核验理由", "新开户行"]),
    ("enterprise", "/vouchers/claims/{returned}/revise", ["退回申领", "答复"]),
    ("reviewer", "/vouchers/claims/{returned}", ["答复"]),
    ("reviewer", "/review/?kind=bank_account", ["企业名"]),
    ("reviewer", "/review/bank-accounts/{bank_change}", ["企业名", "户名", "开户行", "新开户行"]),
    ("finance", "/finance/batches/{batch}", ["户名", "开户行"]),
]


def test_every_page_shows_stored_markup_as_text(app, world) -> None:
    failures = []
    clients = {}
    for role, url, shows in PAGES:
        if role not in clients:
            clients[role] = app.test_client()
            if role:
                login(clients[role], world["users"][role].username)
        url = url.format(**world["ids"])
        body = page(clients[role], url)
        raw = [marker for marker in RAW if marker in body]
        missing = [text for text in shows if escaped(text) not in body]
        if raw or missing:
            failures.append(f"{role} {url}: raw {raw}, not shown escaped {missing}")
    assert not failures, "\n".join(failures)


def test_error_pages_escape_what_was_asked_for(client, world) -> None:
    for url in (f"/instruments/{XSS}", f"/instruments/{XSS}/availability", f"/bookings/?state={XSS}"):
        response = client.get(url)
        assert response.status_code < 500
        body = response.get_data(as_text=True)
        assert not any(marker in body for marker in RAW), url


def test_svg_charts_hold_labels_as_text() -> None:
    bars = bar_chart(
        [tagged("月份"), "2026-02"],
        [Series(tagged("系列"), [1.0, 2.0])],
        title=tagged("标题"),
        lines=[Series(tagged("预算线"), [1.5, 1.5])],
        unit=tagged("单位"),
    )
    hbars = hbar_chart([(tagged("区县"), 3.0), ("高新区", 1.0)], title=tagged("标题"), unit="h")
    for svg, labels in ((bars, ["标题", "月份", "系列", "预算线", "单位"]), (hbars, ["标题", "区县"])):
        text = str(svg)
        assert not any(marker in text for marker in RAW)
        # Well-formed, so nothing broke out of an attribute or a tag; our own markup, not untrusted.
        # (the SVG and its table of figures beside it, docs/accessibility.md)
        tree = ElementTree.fromstring(f"<chart>{text}</chart>")  # noqa: S314
        svg = tree.find(".//{http://www.w3.org/2000/svg}svg")
        assert svg is not None and svg.get("aria-label") == tagged("标题")
        words = "".join(tree.itertext())
        for label in labels:
            assert tagged(label) in words, label


def test_the_api_returns_markup_as_json_text(app, world) -> None:
    client = app.test_client()
    token = client.post(
        "/api/v1/tokens", json={"username": world["users"]["enterprise"].username, "password": PASSWORD}
    ).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    ids = world["ids"]
    checks = [
        ("/api/v1/instruments/XSS-001", lambda b: (b["name"], b["specs"], b["institution"]["name"])),
        ("/api/v1/instruments?q=XSS", lambda b: (b["items"][0]["name"], b["items"][0]["model"])),
        (f"/api/v1/bookings/{ids['sample']}", lambda b: (b["purpose"], b["sample_description"], b["reason"])),
        (f"/api/v1/service-records/{ids['record']}", lambda b: (b["result_summary"], b["rating_comment"])),
        (f"/api/v1/claims/{ids['returned']}", lambda b: (b["comment"],)),
    ]
    for url, values in checks:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, url
        assert response.mimetype == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        for value in values(json.loads(response.get_data(as_text=True))):
            assert value.endswith(XSS), (url, value)  # the text as stored, not escaped twice


def test_exports_carry_markup_as_plain_cells(app, world, tmp_path: Path) -> None:
    from portal.catalog.importer import export_catalog

    client = app.test_client()
    login(client, world["users"]["finance"].username)
    period = "month_from=2026-01&month_to=2026-12"
    texts = {tagged("企业名"), tagged("单位"), tagged("仪器")}
    for url in (f"/finance/export.csv?{period}", "/dashboard/ranking.csv?year=2026&level=instrument"):
        response = client.get(url)
        assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
        cells = {
            c for r in csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))) for c in r
        }
        assert cells & texts, url
    for url in (f"/finance/export.xlsx?{period}", "/dashboard/ranking.xlsx?year=2026&level=instrument"):
        response = client.get(url)
        assert "attachment" in response.headers["Content-Disposition"]
        workbook = load_workbook(io.BytesIO(response.data), read_only=True)
        cells = {c for r in workbook.worksheets[0].iter_rows(values_only=True) for c in r}
        assert cells & texts, url
    batch = f"/finance/batches/{world['ids']['batch']}"
    token = extract_csrf(page(client, batch))
    response = client.post(batch, data={"export-csrf_token": token, "export-submit": "1"})
    assert response.mimetype == "text/csv"
    rows = csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff")))
    bank_cells = {c for r in rows for c in r}
    assert tagged("企业名") in bank_cells and tagged("户名") in bank_cells
    export_catalog(tmp_path / "catalogue.xlsx")
    sheet = load_workbook(tmp_path / "catalogue.xlsx", read_only=True).worksheets[0]
    assert tagged("仪器") in {c for r in sheet.iter_rows(values_only=True) for c in r}


def test_mails_are_plain_text_with_one_line_subjects(app, world, tmp_path: Path) -> None:
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in (tmp_path / "mail").glob("*.eml")
    ]
    assert len(mails) >= 5
    bodies = []
    for mail in mails:
        assert [part.get_content_type() for part in mail.walk()] == ["text/plain"]  # no HTML part to escape
        assert "\n" not in mail["Subject"]
        bodies.append(mail.get_content())
    subjects = " ".join(str(m["Subject"]) for m in mails)
    assert tagged("仪器") in subjects
    for text in ("企业名", "拒绝", "退回申领", "退回申请", "户名"):
        assert any(tagged(text) in body for body in bodies), text
