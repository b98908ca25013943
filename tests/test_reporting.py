"""National reporting (issue 19), on both backends: the national codes each record maps to, effective
hours from metered use, service records and internal use (a metered service never counted twice), the
reports' totals against the service records, formula-safe exports LibreOffice opens, and who reads what.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from portal.booking.models import BookingMode
from portal.core.errors import Forbidden, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting import nrii
from portal.reporting.hours import Scope, year_hours
from portal.usage import tallies
from portal.usage.models import InternalUse, UsageSession, UsageSource
from tests.factories import completed_service, extract_csrf, login
from tests.test_bank_accounts import through_libreoffice
from tests.test_booking_rules import bearer

pytestmark = pytest.mark.both_backends

# 2025 in Beijing time starts at 2024-12-31 16:00 UTC.
JAN_1_2025_LOCAL = datetime(2024, 12, 31, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ours", "national"),
    [("0102", "010200"), ("01", "010000"), ("0299", "029900"), ("15", "990000"), ("1502", "990200")],
)
def test_the_national_category_code(ours, national):
    assert nrii.category_code(ours) == national


@pytest.mark.parametrize("bad", ["", "1", "012", "01a2", "0102030"])
def test_a_malformed_category_code_is_refused(bad):
    with pytest.raises(ValueError):
        nrii.category_code(bad)


@pytest.mark.parametrize(
    ("stored", "mode", "operation", "way"),
    [
        (None, "slot", "self", "占用"),
        (None, "slot", None, "占用"),
        (None, "slot", "staff", "技术"),
        (None, "sample", None, "委托"),
        ("远程", "slot", "self", "远程"),
        ("其他", "sample", None, "其他"),
        ("bogus", "sample", None, "委托"),
    ],
)
def test_the_service_way(stored, mode, operation, way):
    assert nrii.service_way(stored, mode, operation) == way


@pytest.mark.parametrize(
    ("tier", "code"),
    [("internal", "120"), ("academic", "130"), ("enterprise", "130"), ("sme", "130"), (None, "130")],
)
def test_the_service_type_is_internal_only_for_the_owning_institutions_own(tier, code):
    assert nrii.service_type(tier) == code


@pytest.mark.parametrize(
    ("purpose", "code"),
    [
        ("research", "135"),
        ("development", "136"),
        ("teaching", "137"),
        ("other", "138"),
        (None, "138"),
        ("x", "138"),
    ],
)
def test_the_service_direction(purpose, code):
    assert nrii.service_direction(purpose) == code


# --- effective hours ------------------------------------------------------------------------------


@pytest.fixture
def year(app, fake_clock, make_instrument, make_institution, make_user):
    """One instrument of a host in 2025: a metered service, an unmetered one, internal use, unbooked
    use, and services just outside the year on each side. The clock stands in December 2026, so 2025
    is the last full year."""
    host = make_institution()
    instrument = make_instrument(institution=host)
    customer = make_user()
    provider = make_user(Role.PROVIDER, institution=host)
    start = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)
    # Booked 2 h, record says 2 h, metered 1.5 h: the metered hours count, once.
    metered = completed_service(instrument, customer, start, fee_fen=600_00, hours=Decimal(2), rating=4)
    for begin, minutes in ((start, 60), (start + timedelta(hours=1), 30)):
        db.session.add(
            UsageSession(
                booking_id=metered.booking_id,
                instrument_id=instrument.id,
                started_at=begin,
                ended_at=begin + timedelta(minutes=minutes),
                source=UsageSource.QR,
            )
        )
    # Unmetered: the record's 3 h count.
    completed_service(
        instrument,
        customer,
        start + timedelta(days=1),
        fee_fen=900_00,
        hours=Decimal(3),
        rating=5,
        booked_hours=3,
    )
    # The first hour of 2025 in Beijing is in 2025; the last of 2024 is not; nor the first of 2026.
    completed_service(
        instrument, customer, JAN_1_2025_LOCAL, fee_fen=100_00, hours=Decimal(1), booked_hours=1
    )
    completed_service(
        instrument,
        customer,
        JAN_1_2025_LOCAL - timedelta(hours=1),
        fee_fen=999_00,
        hours=Decimal(7),
        booked_hours=1,
    )
    completed_service(
        instrument,
        customer,
        datetime(2025, 12, 31, 16, 0, tzinfo=UTC),
        fee_fen=999_00,
        hours=Decimal(7),
        booked_hours=1,
    )
    # The owning institution's own use: 4 h; an instrument PC's use nobody booked: 0.5 h.
    db.session.add(
        InternalUse(
            instrument_id=instrument.id,
            started_at=start + timedelta(days=2),
            ended_at=start + timedelta(days=2, hours=4),
            recorded_by_id=provider.id,
        )
    )
    db.session.add(
        UsageSession(
            instrument_id=instrument.id,
            started_at=start + timedelta(days=3),
            ended_at=start + timedelta(days=3, minutes=30),
            source=UsageSource.DEVICE,
        )
    )
    db.session.commit()
    # Rows added past the services: count their months (and years) as the workers would.
    tallies.tally_months(["2024-12", "2025-01", "2025-03", "2025-12", "2026-01"])
    return {"instrument": instrument, "host": host, "customer": customer, "provider": provider}


def test_effective_hours_from_metered_use_records_and_internal_use_without_double_counting(year):
    hours = year_hours(2025).of(year["instrument"].id)
    assert hours.metered_hours == Decimal("1.50")  # not the record's 2 h as well
    assert hours.recorded_hours == Decimal("4.00")  # 3 h and the 1 h of New Year's first hour
    assert hours.service_hours == Decimal("5.50")
    assert hours.internal_hours == Decimal("4.00")
    assert hours.effective_hours == Decimal("9.50")
    assert hours.unbooked_hours == Decimal("0.50")
    assert hours.run_hours == Decimal("10.00")  # unbooked running is not effective
    assert hours.measured_by == {
        "metered": Decimal("1.50"),
        "service_records": Decimal("4.00"),
        "internal_use": Decimal("4.00"),
    }
    assert (hours.services, hours.users_served, hours.income_fen) == (3, 1, 1_600_00)
    assert hours.rating_avg == Decimal("4.50")


def test_external_and_sme_hours_follow_the_price_tier_and_the_verified_sme(year):
    from portal.booking.models import Booking

    for booking in db.session.query(Booking).filter(Booking.instrument_id == year["instrument"].id):
        booking.tier = "internal" if booking.starts_at == JAN_1_2025_LOCAL else "sme"
    db.session.commit()
    hours = year_hours(2025).of(year["instrument"].id)
    assert hours.external_service_hours == Decimal("4.50")  # everything but the internal hour
    assert hours.sme_service_hours == Decimal("5.50")  # the customer is a verified tech SME
    assert hours.external_income_fen == 1_500_00


def test_another_institutions_instruments_are_outside_its_scope(year, make_instrument):
    other = make_instrument()
    completed_service(
        other, year["customer"], datetime(2025, 5, 5, 1, tzinfo=UTC), fee_fen=1, hours=Decimal(1)
    )
    db.session.commit()
    scoped = year_hours(2025, Scope(institution_id=year["host"].id))
    assert set(scoped.by_instrument) == {year["instrument"].id}
    assert other.id in year_hours(2025).by_instrument


# --- the reports ---------------------------------------------------------------------------------


def _all_pages(client, path: str, headers: dict) -> list[dict]:
    items, page = [], 1
    while True:
        body = client.get(f"{path}&page={page}&per_page=2", headers=headers).get_json()
        items += body["items"]
        if page * 2 >= body["total"]:
            return items
        page += 1


def test_the_service_record_report_adds_up_to_the_service_records(client, year):
    headers = bearer(client, year["provider"])
    items = _all_pages(client, "/api/v1/reports/nrii/service-records?year=2025", headers)
    assert len(items) == 3
    assert sum(Decimal(i["amount"]) for i in items) == Decimal("1600.00")
    first = items[0]  # New Year's first hour, Beijing time
    assert (first["startTime"], first["endTime"]) == ("2025-01-01 00", "2025-01-01 01")
    metered = next(i for i in items if i["amount"] == "600.00")
    assert metered["serviceTime"] == "1.50" and metered["rating"] == 4
    assert {i["serviceWay"] for i in items} == {"占用"}
    assert {i["serviceType"] for i in items} == {"130"}
    assert {i["serviceDirection"] for i in items} == {"138"}
    assert {i["institution_id"] for i in items} == {year["host"].id}


def test_the_instrument_report_carries_the_national_fields_and_the_years_hours(client, year):
    instrument = year["instrument"]
    instrument.acquisition, instrument.subject_area = "购置", "化学"
    instrument.customs_supervised, instrument.customs_declaration_number = True, "422020250123456789"
    db.session.commit()
    headers = bearer(client, year["provider"])
    body = client.get("/api/v1/reports/nrii/instruments?year=2025", headers=headers).get_json()
    assert body["total"] == 1
    item = body["items"][0]
    assert item["innerId"] == instrument.code and item["instrCategory"] == "010200"
    assert item["worth"] == "100.00"  # 1,000,000 yuan in 万元
    assert (item["instrSource"], item["subject"]) == ("购置", "化学")
    assert (item["instrSupervise"], item["declarationNumber"]) == (1, "422020250123456789")
    assert (item["runMachine"], item["serviceMachine"]) == ("9.50", "5.50")
    assert item["serviceUrl"].endswith(f"/instruments/{instrument.code}")
    assert item["auditStatus"] == -1


def test_instruments_under_the_threshold_are_not_reported(client, year, make_instrument):
    make_instrument(institution=year["host"], original_value_fen=499_999_99)
    headers = bearer(client, year["provider"])
    body = client.get("/api/v1/reports/nrii/instruments?year=2025", headers=headers).get_json()
    assert [i["innerId"] for i in body["items"]] == [year["instrument"].code]


def test_a_provider_reads_only_their_own_institution(client, year, make_institution):
    headers = bearer(client, year["provider"])
    other = make_institution()
    for path in ("nrii/instruments", "nrii/service-records", "evaluation"):
        response = client.get(f"/api/v1/reports/{path}?year=2025&institution_id={other.id}", headers=headers)
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"


def test_the_evaluation_api_names_how_the_hours_were_measured(client, year, make_user):
    reviewer = make_user(Role.REVIEWER)
    headers = bearer(client, reviewer)
    body = client.get(
        f"/api/v1/reports/evaluation?year=2025&institution_id={year['host'].id}", headers=headers
    )
    item = body.get_json()["items"][0]
    assert item["effective_hours"] == 9.5 and item["run_hours"] == 10.0
    assert item["measured_by"] == {"metered": 1.5, "service_records": 4.0, "internal_use": 4.0}
    assert (item["norm_hours"], item["below_norm"]) == (1400, True)
    year["instrument"].specialised = True
    db.session.commit()
    body = client.get(
        f"/api/v1/reports/evaluation?year=2025&institution_id={year['host'].id}", headers=headers
    )
    assert body.get_json()["items"][0]["norm_hours"] == 800


def test_exports_are_formula_safe_and_libreoffice_opens_them(client, year, tmp_path):
    year["instrument"].name = '=HYPERLINK("http://evil")'
    year["customer"].full_name = "+1234"
    db.session.commit()
    login(client, year["provider"].username)
    text = client.get("/reports/service-records.csv?year=2025").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == list(nrii.SERVICE_HEADERS.values())
    assert {r[10] for r in rows[1:]} == {"'+1234"}
    response = client.get("/reports/instruments.xlsx?year=2025")
    path = tmp_path / "instruments.xlsx"
    path.write_bytes(response.data)
    sheet = load_workbook(path).active
    assert sheet.cell(2, 2).value == '\'=HYPERLINK("http://evil")'
    cells = through_libreoffice(path, tmp_path)
    assert cells[1][1] == ('\'=HYPERLINK("http://evil")', "s")


def test_the_report_pages_show_for_their_readers(client, year, make_user):
    login(client, year["provider"].username)
    page = client.get("/reports/?year=2025")
    assert page.status_code == 200 and "instruments.csv" in page.get_data(as_text=True)
    reviewer = make_user(Role.REVIEWER)
    client.post("/logout", data={})
    with client.session_transaction() as session:
        session.clear()
    login(client, reviewer.username)
    page = client.get("/reports/evaluation?year=2025").get_data(as_text=True)
    assert year["instrument"].code in page and "9.50" in page


def test_a_sample_service_reports_its_samples(client, year, make_booking):
    from portal.booking.models import BookingState, ServiceRecord

    booking = make_booking(
        year["instrument"], year["customer"], state=BookingState.COMPLETED, purpose_category="development"
    )
    assert booking.mode is BookingMode.SAMPLE
    db.session.add(
        ServiceRecord(
            booking_id=booking.id,
            samples=3,
            computed_fee_fen=240_00,
            fee_fen=240_00,
            recorded_by_id=year["provider"].id,
            recorded_at=datetime(2025, 6, 2, 2, 0, tzinfo=UTC),
        )
    )
    db.session.commit()
    headers = bearer(client, year["provider"])
    items = _all_pages(client, "/api/v1/reports/nrii/service-records?year=2025", headers)
    sample = next(i for i in items if i["sampleNum"] is not None)
    assert (sample["serviceWay"], sample["serviceDirection"], sample["sampleNum"]) == ("委托", "136", 3)
    assert sample["serviceTime"] is None and sample["startTime"] == "2025-06-02 10"


# --- final submission --------------------------------------------------------------------------


def test_a_final_report_is_frozen_with_its_hash_and_reads_back_byte_for_byte(client, year):
    import hashlib
    import json

    import sqlalchemy as sa

    from portal.core.models import AuditEvent
    from portal.reporting import submissions
    from portal.reporting.models import ReportSnapshot

    snapshot = submissions.submit_final(year["provider"], 2025)
    assert (snapshot.version, snapshot.submitted_by_id) == (1, year["provider"].id)
    assert snapshot.sha256 == hashlib.sha256(snapshot.content.encode()).hexdigest()
    content = json.loads(snapshot.content)
    assert content["annual"]["totalIncome"] == "1600.00" and content["annual"]["auditStatus"] == 0
    assert {r["auditStatus"] for r in content["service_records"]} == {0}
    assert len(content["service_records"]) == 3
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "report.submitted"))
    assert event.after == {"version": 1, "sha256": snapshot.sha256}
    login(client, year["provider"].username)
    first = client.get(f"/reports/snapshots/{snapshot.id}.json").data
    second = client.get(f"/reports/snapshots/{snapshot.id}.json").data
    assert first == second == snapshot.content.encode()
    assert hashlib.sha256(first).hexdigest() == snapshot.sha256
    # Immutable, whatever code runs against the database.
    for statement in ("UPDATE report_snapshots SET content = '{}'", "DELETE FROM report_snapshots"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            db.session.execute(sa.text(statement))
        db.session.rollback()
    assert db.session.scalar(sa.select(ReportSnapshot.sha256)) == snapshot.sha256


def test_the_same_records_give_the_same_bytes_and_a_change_is_shown_as_a_difference(client, year):
    from portal.reporting import submissions

    login(client, year["provider"].username)
    csv_files = [client.get("/reports/service-records.csv?year=2025").data for _n in range(2)]
    assert csv_files[0] == csv_files[1]
    snapshot = submissions.submit_final(year["provider"], 2025)
    assert submissions.differences(snapshot) == []
    with pytest.raises(ValidationFailed):  # final already: a new version only on purpose
        submissions.submit_final(year["provider"], 2025)
    with pytest.raises(ValidationFailed):  # and only when something changed
        submissions.submit_final(year["provider"], 2025, new_version=True)
    added = completed_service(
        year["instrument"],
        year["customer"],
        datetime(2025, 7, 1, 1, tzinfo=UTC),
        fee_fen=50_00,
        hours=Decimal(1),
    )
    db.session.commit()
    changes = submissions.differences(snapshot)
    assert ("service_records", str(added.id), "added") in {(c.section, c.key, c.field) for c in changes}
    assert ("annual", "totalIncome", "1600.00", "1650.00") in {
        (c.section, c.key, c.before, c.after) for c in changes
    }
    page = client.get("/reports/?year=2025").get_data(as_text=True)
    assert "compare-link" in page and "report-changes" not in page  # compared only on request
    page = client.get("/reports/?year=2025&compare=1").get_data(as_text=True)
    assert "report-changes" in page and "1650.00" in page
    second = submissions.submit_final(year["provider"], 2025, new_version=True)
    assert second.version == 2 and second.sha256 != snapshot.sha256
    assert submissions.differences(second) == []


def test_only_the_institutions_providers_submit_and_others_do_not_see_its_versions(client, year, make_user):
    from portal.reporting import submissions

    snapshot = submissions.submit_final(year["provider"], 2025)
    stranger = make_user(Role.PROVIDER)
    with pytest.raises(Forbidden):
        submissions.submit_final(make_user(Role.REVIEWER), 2025)
    login(client, stranger.username)
    assert client.get(f"/reports/snapshots/{snapshot.id}.json").status_code == 404


# --- purchase checks (查重评议) ----------------------------------------------------------------------


def test_a_purchase_check_flags_an_under_used_instrument_of_the_category_and_is_kept(client, year, make_user):
    import sqlalchemy as sa

    from portal.core.models import AuditEvent
    from portal.reporting import purchases
    from portal.reporting.models import PurchaseCheck

    reviewer = make_user(Role.REVIEWER)
    planned = purchases.PlannedPurchase("01", "气相色谱-质谱联用仪", "质量范围 1.2–1050 u", 1_500_000_00, "")
    with pytest.raises(ValidationFailed) as refused:  # a check is saved only with its conclusion
        purchases.record_check(reviewer, planned)
    assert set(refused.value.fields) == {"conclusion"}
    with pytest.raises(Forbidden):
        purchases.preview(year["provider"], planned)
    # Last full year is 2025 (the clock stands in 2026): the 0102 instrument ran 9.50 h, under 1,200 h.
    found = purchases.preview(reviewer, planned)
    assert [(f["code"], f["effective_hours"], f["under_used"]) for f in found] == [
        (year["instrument"].code, "9.50", True)
    ]
    assert found[0]["utilisation"] == "0.7"  # 9.5 of the 1,400 h norm
    check = purchases.record_check(
        reviewer,
        purchases.PlannedPurchase(**{**planned.__dict__, "conclusion": "建议共享现有仪器，暂不购置"}),
    )
    assert (check.flagged, check.year, check.threshold_hours, check.findings) == (True, 2025, 1200, found)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "purchase_check.recorded"))
    assert event.after["flagged"] is True and event.actor_id == reviewer.id
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        db.session.execute(sa.text("UPDATE purchase_checks SET conclusion = 'x'"))
    db.session.rollback()
    assert db.session.scalar(sa.select(PurchaseCheck.conclusion)) == "建议共享现有仪器，暂不购置"


def test_an_instrument_over_the_threshold_is_not_flagged(year, make_user):
    from portal.reporting import purchases

    year["instrument"].name = "原有仪器"
    db.session.add(
        InternalUse(
            instrument_id=year["instrument"].id,
            started_at=datetime(2025, 2, 1, tzinfo=UTC),
            ended_at=datetime(2025, 2, 1, tzinfo=UTC) + timedelta(hours=1200),
            recorded_by_id=year["provider"].id,
        )
    )
    db.session.commit()
    found = purchases.findings("0102", 2025)
    assert [(f["effective_hours"], f["under_used"]) for f in found] == [("1209.50", False)]
    assert purchases.findings("0201", 2025) == []  # another category: nothing to share


def test_the_purchase_check_page_looks_up_then_saves_with_the_conclusion(client, year, make_user):
    from portal.reporting.models import PurchaseCheck

    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer.username)
    page = client.get("/reports/purchase-checks").get_data(as_text=True)
    fields = {"category": "0102", "name": "气质联用仪", "price": "1500000", "key_specs": "分辨率高"}
    looked = client.post(
        "/reports/purchase-checks", data={**fields, "look_up": "y", "csrf_token": extract_csrf(page)}
    )
    html = looked.get_data(as_text=True)
    assert looked.status_code == 200 and year["instrument"].code in html and 'value="气质联用仪"' in html
    assert db.session.scalar(select(PurchaseCheck)) is None
    missing = client.post(
        "/reports/purchase-checks", data={**fields, "submit": "y", "csrf_token": extract_csrf(html)}
    )
    assert missing.status_code == 200 and db.session.scalar(select(PurchaseCheck)) is None
    saved = client.post(
        "/reports/purchase-checks",
        data={**fields, "conclusion": "可共享", "submit": "y", "csrf_token": extract_csrf(html)},
    )
    assert saved.status_code == 302
    detail = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "可共享" in detail and year["instrument"].code in detail


@pytest.mark.parametrize("when", [1999, 2027])
def test_a_report_of_a_year_to_come_or_before_2000_is_refused(year, when):
    from portal.reporting import submissions
    from portal.reporting.models import ReportSnapshot

    with pytest.raises(ValidationFailed):
        submissions.submit_final(year["provider"], when)
    assert db.session.scalar(select(ReportSnapshot)) is None


# --- the score sheet --------------------------------------------------------------------------------


def test_the_score_sheet_computes_what_the_records_show_and_the_reviewer_signs_the_rest(
    client, year, make_user
):
    import sqlalchemy as sa

    from portal.core.models import AuditEvent
    from portal.reporting import scores

    reviewer = make_user(Role.REVIEWER)
    host = year["host"].id
    # 9.50 of 1,400 h × 40; 5.50 external h of 273 × 10; all of it for an SME × 5; a fee × 10; no
    # national fields × 0.
    assert scores.computed_scores(host, 2025) == {
        "utilisation": Decimal("0.27"),
        "external_hours": Decimal("0.20"),
        "sme_support": Decimal("5.00"),
        "fees_published": Decimal("10.00"),
        "records_complete": Decimal("0.00"),
    }
    for bad in (
        {"results": "5.01"},
        {"rules": "abc"},
        {"openness": "1.234"},
        {"results": "-1"},
        {"rules": "NaN"},
    ):
        entered = {"results": "4", "rules": "8.5", "openness": "9", **bad}
        with pytest.raises(ValidationFailed) as refused:
            scores.sign(reviewer, host, 2025, entered)
        assert set(refused.value.fields) == set(bad)
    with pytest.raises(Forbidden):
        scores.sign(year["provider"], host, 2025, {"results": "4", "rules": "8.5", "openness": "9"})
    sheet = scores.sign(reviewer, host, 2025, {"results": "4", "rules": "8.5", "openness": "9"})
    assert (sheet.version, sheet.total, sheet.weights) == (1, "36.97", "40,20,40")
    assert sheet.items["rules"] == {"score": "8.5", "computed": False}
    assert sheet.items["sme_support"] == {"score": "5.00", "computed": True}
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "score_sheet.signed"))
    assert event.after == {"version": 1, "total": "36.97"} and event.actor_id == reviewer.id
    assert scores.sign(reviewer, host, 2025, {"results": "5", "rules": "10", "openness": "10"}).version == 2
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        db.session.execute(sa.text("UPDATE score_sheets SET total = '100.00'"))
    db.session.rollback()
    login(client, reviewer.username)
    text = client.get(f"/reports/evaluation/score-sheet.csv?year=2025&institution_id={host}").get_data(
        as_text=True
    )
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[-1][0] == "合计" and rows[-1][2:4] == ["100.00", "40.47"]  # version 2
    page = client.get(f"/reports/evaluation/score-sheet?year=2025&institution_id={host}").get_data(
        as_text=True
    )
    assert "40.47" in page and "0.27" in page


def test_a_bad_entry_on_the_score_sheet_page_is_shown_again_as_typed(client, year, make_user):
    from portal.reporting.models import ScoreSheet

    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer.username)
    url = f"/reports/evaluation/score-sheet?year=2025&institution_id={year['host'].id}"
    page = client.get(url).get_data(as_text=True)
    data = {
        "csrf_token": extract_csrf(page),
        "institution_id": str(year["host"].id),
        "year": "2025",
        "results": "4",
        "rules": "十分",
        "openness": "9",
    }
    response = client.post("/reports/evaluation/score-sheet", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'value="十分"' in html and "rules-error" in html
    assert db.session.scalar(select(ScoreSheet)) is None


def test_the_evaluation_reads_the_monthly_tallies_which_a_recount_brings_up_to_date(app, year):
    from portal.reporting import services

    scope = Scope(institution_id=year["host"].id)
    assert services.evaluate(scope, 2025).instruments[0].hours.effective_hours == Decimal("9.50")
    completed_service(
        year["instrument"], year["customer"], datetime(2025, 8, 1, 1, tzinfo=UTC), fee_fen=1, hours=Decimal(2)
    )  # written past the services: nothing queued a recount
    db.session.commit()
    assert services.evaluate(scope, 2025).instruments[0].hours.effective_hours == Decimal("9.50")
    assert year_hours(2025, scope).of(year["instrument"].id).effective_hours == Decimal("11.50")  # reports
    assert tallies.tally_month("2025-08", [year["instrument"].id]) == 1
    assert tallies.tally_month("2025-08", [year["instrument"].id]) == 1  # idempotent
    assert services.evaluate(scope, 2025).instruments[0].hours.effective_hours == Decimal("11.50")
    overview = services.evaluation_overview(scope, 2025)
    (totals,) = overview.institutions
    assert (totals.instruments, totals.effective_average, totals.below_norm) == (1, Decimal("11.50"), 1)
    assert [s.hours.effective_hours for s in overview.under_used] == [Decimal("11.50")]


@pytest.mark.parametrize(
    "query",
    [
        "year=²",
        "year=" + "9" * 5000,
        "year=٢٠٢٥",
        "institution_id=²",
        "institution_id=" + "1" * 50,
        "page=²",
        "county=x",
    ],
)
def test_junk_parameters_get_an_answer_never_a_500(client, year, make_user, query):
    login(client, make_user(Role.REVIEWER).username)
    for path in ("/reports/", "/reports/evaluation", "/reports/purchase-checks", "/reports/instruments.csv"):
        assert client.get(f"{path}?{query}").status_code in (200, 404), (path, query)


def test_report_files_are_streamed_as_they_are_written_and_read_back_whole(client, year, monkeypatch):
    """A province's year of services is a million rows: the CSV goes out a few rows at a time, the
    XLSX from a temporary file; both hold every record, formula-safe."""
    import openpyxl

    from portal.core import exports

    monkeypatch.setattr(exports.csv_chunks, "__defaults__", (2,))  # two rows a chunk: several chunks
    login(client, year["provider"].username)
    response = client.get("/reports/service-records.csv?year=2025", buffered=False)
    assert response.is_streamed
    chunks = [c if isinstance(c, bytes) else c.encode() for c in response.response]
    response.close()
    assert len(chunks) >= 3
    whole = b"".join(chunks).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(whole)))
    assert len(rows) == 1 + 3  # the header and 2025's three services
    assert whole == client.get("/reports/service-records.csv?year=2025").get_data(as_text=True).lstrip(
        "\ufeff"
    )
    xlsx = client.get("/reports/service-records.xlsx?year=2025", buffered=False)
    assert xlsx.mimetype == exports.XLSX_MIMETYPE
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(xlsx.response))).active
    xlsx.close()
    assert next(list(r) for r in sheet.iter_rows(values_only=True)) == rows[0]
    assert sheet.max_row == len(rows)


def test_csv_chunks_join_to_the_same_text_as_csv_text():
    from portal.core.exports import csv_chunks, csv_text

    rows = [["编号", "=1+1"], *([str(n), "-x"] for n in range(7))]
    chunks = list(csv_chunks(rows, rows_per_chunk=3))
    assert len(chunks) == 3 and "".join(chunks) == csv_text(rows)
    assert "'=1+1" in chunks[0] and chunks[0].startswith("\ufeff")


def test_the_page_lists_instruments_without_use_first_then_the_least_used_and_counts_them_all(
    app, year, make_instrument, monkeypatch
):
    from portal.reporting import services

    host = year["host"]
    for n in (2, 1):  # no use in 2025
        make_instrument(institution=host, code=f"Z-{n}")
    busy = make_instrument(institution=host, code="A-1", specialised=True)
    cheap = make_instrument(institution=host, code="A-0", original_value_fen=499_999_99)  # not reported
    for instrument in (busy, cheap):
        completed_service(
            instrument, year["customer"], datetime(2025, 5, 6, 1, tzinfo=UTC), fee_fen=1, hours=Decimal(3)
        )
    db.session.commit()
    tallies.tally_all()
    overview = services.evaluation_overview(Scope(institution_id=host.id), 2025)
    codes = [s.instrument.code for s in overview.under_used]
    # No use at all first, in code order; then by effective hours (3 h before the fixture's 9.5 h).
    assert codes == ["Z-1", "Z-2", "A-1", year["instrument"].code]
    assert overview.under_used_count == 4 and overview.institutions[0].instruments == 4
    assert [s.norm_hours for s in overview.under_used[2:3]] == [800]  # specialised
    monkeypatch.setattr(services, "UNDER_USED_SHOWN", 3)  # the list stops there; the count does not
    overview = services.evaluation_overview(Scope(institution_id=host.id), 2025)
    assert [s.instrument.code for s in overview.under_used] == ["Z-1", "Z-2", "A-1"]
    assert overview.under_used_count == 4
    monkeypatch.setattr(services, "UNDER_USED_SHOWN", 1)
    assert [s.instrument.code for s in services.evaluation_overview(Scope(), 2025).under_used] == ["Z-1"]


def test_the_evaluation_api_pages_are_the_whole_list_cut_in_code_order(app, year, make_instrument):
    from portal.reporting import services

    for code in ("B-2", "B-1", "B-3"):
        make_instrument(institution=year["host"], code=code)
    db.session.commit()
    scope = Scope(institution_id=year["host"].id)
    whole = [(s.instrument.code, s.hours.effective_hours) for s in services.evaluate(scope, 2025).instruments]
    pages = [services.evaluation_page(scope, 2025, n, 3) for n in (1, 2)]
    assert [p.total for p in pages] == [4, 4]
    assert [(s.instrument.code, s.hours.effective_hours) for p in pages for s in p.items] == whole
    assert whole[0][0] == "B-1" and whole[-1] == (year["instrument"].code, Decimal("9.50"))
