"""Providers keep their instruments current: every field of the catalogue entry, on the page and through
the API, by the catalogue import's rules; a field-level audit row and a new catalogue version for each
edit; a status that stops bookings lists the confirmed ones first and tells their enterprises."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import func, select

from portal.accounts.services import issue_api_token
from portal.booking.models import BookingState
from portal.catalog.editing import EDITABLE_FIELDS
from portal.catalog.models import Instrument, InstrumentStatus, SharingMode
from portal.catalog.services import catalog_version
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.messages import render
from portal.notifications.models import Notification
from tests.factories import extract_csrf, login
from tests.test_fuzz_forms import forms_on, page_values

SOON = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)  # Wednesday 09:00 in Liaocheng


@pytest.fixture
def world(app, fake_clock, make_institution, make_instrument, make_user):
    host = make_institution(name="聊城测试大学")
    return {
        "instrument": make_instrument(institution=host, fee_per_sample_fen=None),
        "provider": make_user(Role.PROVIDER, institution=host),
        "other_provider": make_user(Role.PROVIDER),
        "admin": make_user(Role.ADMIN),
    }


def record_url(instrument: Instrument) -> str:
    return f"/manage/instruments/{instrument.code}/record"


def record_form(client, instrument: Instrument):
    """The record form as the page shows it: its action and its values."""
    url = record_url(instrument)
    page = client.get(url)
    assert page.status_code == 200
    form = next(
        f for f in forms_on(page.get_data(as_text=True), "http://localhost" + url) if "record" in f.action
    )
    return page_values(form)


def save(client, instrument: Instrument, **changed: str):
    """Post the page's own form with some fields changed, as a browser would."""
    values = record_form(client, instrument) | changed
    return client.post(record_url(instrument), data=values)


def fresh(instrument: Instrument) -> Instrument:
    db.session.expire_all()
    return db.session.get(Instrument, instrument.id)


def audit_rows(instrument: Instrument) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "instrument", AuditEvent.object_id == instrument.code)
            .order_by(AuditEvent.id)
        )
    )


def bearer(user) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_api_token(user)[0]}"}


# --- the page: every field ---------------------------------------------------------------------------


def test_the_page_shows_the_record_in_the_units_it_is_typed_in(client, world):
    login(client, world["provider"].username)
    values = record_form(client, world["instrument"])
    assert values["name"] == world["instrument"].name
    assert values["category"] == "0102"
    assert values["original_value"] == "100.00"  # 1,000,000 yuan, in 万元 as the catalogue file has it
    assert values["fee_per_hour"] == "300.00"
    assert values["fee_per_sample"] == ""
    assert values["status"] == "normal" and values["sharing_mode"] == "open"
    assert values["operator_phone"] == "0635-8239999"


# (form field, what is typed, record field, what the record then holds, what the audit row says)
EDITS = [
    ("name", "场发射扫描电子显微镜", "name", "场发射扫描电子显微镜", "场发射扫描电子显微镜"),
    ("name_en", "Field emission SEM", "name_en", "Field emission SEM", "Field emission SEM"),
    ("category", "0101", "category", "0101", "0101"),
    ("model", "Sigma 300", "model", "Sigma 300", "Sigma 300"),
    ("manufacturer", "蔡司", "manufacturer", "蔡司", "蔡司"),
    ("country_of_origin", "德国", "country_of_origin", "德国", "德国"),
    ("original_value", "56.78", "original_value_fen", 56_780_000, 56_780_000),
    ("in_service_on", "2019-05-20", "in_service_on", date(2019, 5, 20), "2019-05-20"),
    ("county", "茌平区", "county", "茌平区", "茌平区"),
    ("address", "湖南路1号实验楼203室", "address", "湖南路1号实验楼203室", "湖南路1号实验楼203室"),
    ("status", "awaiting_repair", "status", InstrumentStatus.AWAITING_REPAIR, "awaiting_repair"),
    ("sharing_mode", "conditional", "sharing_mode", SharingMode.CONDITIONAL, "conditional"),
    ("fee_per_hour", "120.50", "fee_per_hour_fen", 12_050, 12_050),
    ("fee_per_sample", "80", "fee_per_sample_fen", 8_000, 8_000),
    ("specs", "分辨率 0.8 nm\n放大倍数 10–1,000,000", "specs", "分辨率 0.8 nm\n放大倍数 10–1,000,000", None),
    ("functions", "形貌观察", "functions", "形貌观察", "形貌观察"),
    ("service_content", "委托测试、上机培训", "service_content", "委托测试、上机培训", "委托测试、上机培训"),
    ("operator_name", "李四", "operator_name", "李四", "李四"),
    ("operator_phone", "13806350001", "operator_phone", "13806350001", "13806350001"),
    # The national platform's fields (issue 19).
    ("acquisition", "捐赠", "acquisition", "捐赠", "捐赠"),
    ("funding_source", "中央财政", "funding_source", "中央财政", "中央财政"),
    ("subject_area", "材料科学", "subject_area", "材料科学", "材料科学"),
    ("department", "化学化工学院", "department", "化学化工学院", "化学化工学院"),
    (
        "user_requirements",
        "首次上机须参加培训",
        "user_requirements",
        "首次上机须参加培训",
        "首次上机须参加培训",
    ),
    ("specialised", "是", "specialised", True, True),
    ("customs_supervised", "是", "customs_supervised", True, True),
    (
        "customs_declaration_number",
        "422020190000123456",
        "customs_declaration_number",
        "422020190000123456",
        None,
    ),
    ("customs_import_date", "2019-04-01", "customs_import_date", date(2019, 4, 1), "2019-04-01"),
    ("customs_item_number", "3", "customs_item_number", "3", "3"),
]


def plain(value):
    return value.isoformat() if isinstance(value, date) else getattr(value, "value", value)


def test_each_field_is_saved_with_a_field_level_audit_row_and_a_new_catalogue_version(client, world):
    """One field at a time, on one instrument (one set-up for the whole table)."""
    instrument = world["instrument"]
    login(client, world["provider"].username)
    for field, typed, attr, stored, audited in EDITS:
        row = fresh(instrument)
        before = row.category.code if attr == "category" else getattr(row, attr)
        db.session.rollback()
        version = catalog_version()
        response = save(client, instrument, **{field: typed})
        assert response.status_code == 302, (field, response.get_data(as_text=True)[:2000])
        row = fresh(instrument)
        assert (row.category.code if attr == "category" else getattr(row, attr)) == stored, field
        event = audit_rows(instrument)[-1]
        assert (event.action, event.actor_id) == ("instrument.updated", world["provider"].id)
        assert event.before == {attr: plain(before)}, field
        assert event.after == {attr: audited if audited is not None else stored}, field
        db.session.rollback()
        assert catalog_version() != version, field
    assert len(audit_rows(instrument)) == len(EDITS)


def test_every_field_of_the_record_has_a_row_in_that_table():
    assert sorted({attr for _f, _t, attr, _s, _a in EDITS}) == sorted(EDITABLE_FIELDS)


def test_saving_several_fields_audits_only_those_that_changed(client, world):
    login(client, world["provider"].username)
    response = save(client, world["instrument"], model="新型号", fee_per_hour="300.00", operator_name="王五")
    assert response.status_code == 302
    (event,) = [e for e in audit_rows(world["instrument"]) if e.action == "instrument.updated"]
    assert set(event.after) == {"model", "operator_name"}  # 300.00 yuan is the fee it already had
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    history = page.split('id="record-history"', 1)[1].split("</ul>", 1)[0]
    assert "仪器信息已修改: 规格型号、操作员" in unescape(re.sub(r"\s+", " ", history))


def test_saving_nothing_new_writes_nothing(client, world):
    login(client, world["provider"].username)
    version = catalog_version()
    response = save(client, world["instrument"])
    assert response.status_code == 302
    assert audit_rows(world["instrument"]) == []
    db.session.rollback()
    assert catalog_version() == version
    assert "没有更改" in client.get(response.headers["Location"]).get_data(as_text=True)


# (form field, what is typed, a piece of the message next to the field)
BAD = [
    ("name", "", "必填"),
    ("name", "长" * 121, "120"),
    ("category", "9999", "9999"),
    ("original_value", "一百", "一百"),
    ("original_value", "-1", "不能为负"),
    ("original_value", "1.234", "两位小数"),
    ("original_value", "", "必填"),
    ("in_service_on", "2020-13-01", "2020-13-01"),
    ("county", "朝阳区", "朝阳区"),
    ("status", "broken", "broken"),
    ("sharing_mode", "closed", "closed"),
    ("fee_per_hour", "abc", "abc"),
    ("fee_per_sample", "-5", "不能为负"),
    ("operator_phone", "call me", "call me"),
    ("specs", "长" * 4001, "4000"),
    ("operator_name", "长" * 41, "40"),
    ("acquisition", "租赁", "租赁"),
    ("specialised", "也许", "也许"),
    ("customs_import_date", "2019-02-30", "2019-02-30"),
    ("department", "长" * 81, "80"),
]


def test_a_bad_value_is_shown_at_its_field_with_what_was_typed_and_nothing_is_saved(client, world):
    instrument = world["instrument"]
    login(client, world["provider"].username)
    version = catalog_version()
    for field, typed, says in BAD:
        response = save(client, instrument, model="另一型号", **{field: typed})
        page = response.get_data(as_text=True)
        assert response.status_code == 200, field
        match = re.search(rf'<(?:input|select|textarea)[^>]*\bname="{field}"[^>]*>', page)
        assert match and "is-invalid" in match.group(0), f"{field} is not marked invalid"
        feedback = page[match.end() :].split('class="invalid-feedback', 1)[1][:600]
        assert says in unescape(feedback), (field, typed)
        values = page_values(next(f for f in forms_on(page, "http://localhost/") if "record" in f.action))
        assert values["model"] == "另一型号", field  # what was typed stays, in the good fields too
        # A select shows its options, not what was sent.
        if field not in ("category", "county", "status", "sharing_mode", "acquisition", "specialised"):
            assert values[field] == typed, field
    assert fresh(instrument).model != "另一型号"
    assert audit_rows(instrument) == []
    db.session.rollback()
    assert catalog_version() == version


def test_every_bad_field_is_reported_at_once(client, world):
    login(client, world["provider"].username)
    page = save(client, world["instrument"], name="", original_value="x", operator_phone="?").get_data(
        as_text=True
    )
    for field in ("name", "original_value", "operator_phone"):
        assert re.search(
            rf'name="{field}"[^>]*class="[^"]*is-invalid|class="[^"]*is-invalid[^"]*"[^>]*name="{field}"',
            page,
        )


# --- who may ------------------------------------------------------------------------------------------


def test_another_institutions_provider_finds_no_such_page(client, world):
    instrument = world["instrument"]
    login(client, world["other_provider"].username)
    assert client.get(record_url(instrument)).status_code == 404
    token = extract_csrf(client.get("/account").get_data(as_text=True))
    response = client.post(record_url(instrument), data={"csrf_token": token, "name": "改名"})
    assert response.status_code == 404
    assert fresh(instrument).name != "改名" and audit_rows(instrument) == []


def test_an_administrator_edits_any_instrument(client, world):
    login(client, world["admin"].username)
    assert save(client, world["instrument"], name="管理员改名").status_code == 302
    assert fresh(world["instrument"]).name == "管理员改名"


@pytest.mark.parametrize("role", [Role.ENTERPRISE, Role.REVIEWER, Role.FINANCE])
def test_other_roles_may_not_open_the_page(client, world, make_user, role):
    login(client, make_user(role).username)
    assert client.get(record_url(world["instrument"])).status_code == 403


def test_the_catalogue_record_links_to_the_editor_only_for_those_who_may_edit(client, world, make_user):
    url = f"/instruments/{world['instrument'].code}"
    editor = record_url(world["instrument"])
    assert editor not in client.get(url).get_data(as_text=True)
    for user, shown in ((world["other_provider"], False), (world["provider"], True), (world["admin"], True)):
        browser = client.application.test_client()
        login(browser, user.username)
        assert (editor in browser.get(url).get_data(as_text=True)) is shown


# --- a status that stops bookings -----------------------------------------------------------------------


@pytest.fixture
def bookings(world, make_user, make_booking):
    instrument = world["instrument"]
    first, second, bystander = make_user(), make_user(), make_user()
    return {
        "slot": make_booking(
            instrument, first, SOON, SOON + timedelta(hours=2), state=BookingState.CONFIRMED
        ),
        "sample": make_booking(instrument, second, state=BookingState.CONFIRMED),
        # Not stranded: over already, only requested (the provider answers it), cancelled.
        "past": make_booking(
            instrument,
            bystander,
            SOON - timedelta(days=3),
            SOON - timedelta(days=3, hours=-1),
            state=BookingState.CONFIRMED,
        ),
        "requested": make_booking(
            instrument, bystander, SOON + timedelta(hours=3), SOON + timedelta(hours=4)
        ),
        "cancelled": make_booking(
            instrument,
            bystander,
            SOON + timedelta(hours=5),
            SOON + timedelta(hours=6),
            state=BookingState.CANCELLED,
        ),
        "users": {"first": first, "second": second, "bystander": bystander},
    }


def told(kind: str = "instrument.unavailable") -> list[Notification]:
    return list(
        db.session.scalars(select(Notification).where(Notification.kind == kind).order_by(Notification.id))
    )


def test_a_status_that_stops_bookings_lists_them_first_then_tells_their_enterprises(client, world, bookings):
    instrument = world["instrument"]
    login(client, world["provider"].username)
    asked = save(client, instrument, status="awaiting_repair")
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="stranded"' in page
    listed = {int(n) for n in re.findall(r'href="/bookings/(\d+)"', page)}
    assert listed == {bookings["slot"].id, bookings["sample"].id}
    assert (
        fresh(instrument).status is InstrumentStatus.NORMAL and told() == [] and audit_rows(instrument) == []
    )

    form = next(f for f in forms_on(page, "http://localhost/") if "record" in f.action)
    values = page_values(form)
    assert values["status"] == "awaiting_repair"  # the choice is kept for the confirmation
    saved = client.post(record_url(instrument), data=values)
    assert saved.status_code == 302
    assert fresh(instrument).status is InstrumentStatus.AWAITING_REPAIR
    recipients = {n.recipient_id for n in told()}
    assert recipients == {bookings["users"]["first"].id, bookings["users"]["second"].id}
    notice = told()[0]
    assert notice.payload["phone"] == "0635-8239999" and notice.link.startswith("/bookings/")
    _subject, body = render(notice.kind, notice.payload)
    assert "0635-8239999" in body and "待修" in body
    # The bookings are not cancelled: the provider decides each one.
    for name in ("slot", "sample"):
        db.session.refresh(bookings[name])
        assert bookings[name].state is BookingState.CONFIRMED
    assert "2" in client.get(saved.headers["Location"]).get_data(as_text=True)


def test_a_booking_confirmed_after_the_list_was_shown_is_asked_about_again(
    client, world, bookings, make_user, make_booking
):
    instrument = world["instrument"]
    login(client, world["provider"].username)
    page = save(client, instrument, status="frequent_fault").get_data(as_text=True)
    values = page_values(next(f for f in forms_on(page, "http://localhost/") if "record" in f.action))
    late = make_booking(
        instrument,
        make_user(),
        SOON + timedelta(days=1),
        SOON + timedelta(days=1, hours=1),
        state=BookingState.CONFIRMED,
    )
    again = client.post(record_url(instrument), data=values).get_data(as_text=True)
    assert f'href="/bookings/{late.id}"' in again
    assert fresh(instrument).status is InstrumentStatus.NORMAL and told() == []


def test_between_two_statuses_that_stop_bookings_nobody_is_told_again(client, world, bookings):
    instrument = world["instrument"]
    instrument.status = InstrumentStatus.AWAITING_REPAIR
    db.session.commit()
    login(client, world["provider"].username)
    assert save(client, instrument, status="awaiting_scrap").status_code == 302
    assert told() == []


def test_the_api_saves_a_status_without_asking_and_tells_the_enterprises(client, world, bookings):
    response = client.patch(
        f"/api/v1/instruments/{world['instrument'].code}",
        json={"status": "awaiting_repair"},
        headers=bearer(world["provider"]),
    )
    assert response.status_code == 200, response.json
    assert response.json["status"] == "awaiting_repair"
    assert {n.recipient_id for n in told()} == {bookings["users"]["first"].id, bookings["users"]["second"].id}


def test_the_anonymous_catalogue_shows_a_new_status_at_once(client, world):
    instrument = world["instrument"]
    anonymous = client.application.test_client()
    listing, detail = f"/instruments/?q={instrument.code}", f"/instruments/{instrument.code}"
    badge = re.compile(r'class="badge text-bg-\w+">([^<]+)<')
    for url in (listing, detail):
        assert badge.findall(anonymous.get(url).get_data(as_text=True)) == ["正常"]
    login(client, world["provider"].username)
    assert save(client, instrument, status="awaiting_repair").status_code == 302
    for url in (listing, detail):  # the search page was in the anonymous cache: it is not served stale
        assert badge.findall(anonymous.get(url).get_data(as_text=True)) == ["待修"], url


# --- the API ----------------------------------------------------------------------------------------------


API_EDITS = [
    ({"name": "新名称", "name_en": None}, {"name": "新名称", "name_en": None}),
    ({"category": "0101"}, {"category": {"code": "0101"}}),
    ({"original_value_fen": 56_780_000}, {"original_value_fen": 56_780_000}),
    (
        {"fee_per_hour_fen": 12_050, "fee_per_sample_fen": None},
        {"fee_per_hour_fen": 12_050, "fee_per_sample_fen": None},
    ),
    ({"in_service_on": "2019-05-20"}, {"in_service_on": "2019-05-20"}),
    ({"status": "待修"}, {"status": "awaiting_repair"}),
    (
        {"status": "standby", "sharing_mode": "conditional"},
        {"status": "standby", "sharing_mode": "conditional"},
    ),
    ({"county": "临清市", "address": "新址"}, {"county": "临清市", "address": "新址"}),
    (
        {"specs": "a", "functions": "b", "service_content": "c"},
        {"specs": "a", "functions": "b", "service_content": "c"},
    ),
    (
        {"operator_name": "李四", "operator_phone": "13806350001"},
        {"operator_name": "李四", "operator_phone": "13806350001"},
    ),
    (
        {"model": "X1", "manufacturer": "岛津", "country_of_origin": "日本"},
        {"model": "X1", "manufacturer": "岛津"},
    ),
]


def test_patch_changes_fields_and_answers_the_full_record(client, world):
    headers = bearer(world["provider"])
    for body, expected in API_EDITS:
        response = client.patch(f"/api/v1/instruments/{world['instrument'].code}", json=body, headers=headers)
        assert response.status_code == 200, (body, response.json)
        for key, value in expected.items():
            if isinstance(value, dict):
                assert response.json[key].items() >= value.items(), body
            else:
                assert response.json[key] == value, body
        assert (
            response.json["operator_phone"] and "photos" in response.json and "opening_hours" in response.json
        )
        event = audit_rows(world["instrument"])[-1]
        assert event.action == "instrument.updated" and event.after and set(event.after) <= set(body), body
    assert len(audit_rows(world["instrument"])) == len(API_EDITS)


API_BAD = [
    ({"original_value_fen": 123}, "original_value_fen"),  # not whole 万元 with two decimals
    ({"original_value_fen": -10_000}, "original_value_fen"),
    ({"original_value_fen": None}, "original_value_fen"),
    ({"fee_per_hour_fen": "12"}, "fee_per_hour_fen"),
    ({"fee_per_hour_fen": 10**20}, "fee_per_hour_fen"),
    ({"name": ""}, "name"),
    ({"name": None}, "name"),
    ({"name": "长" * 121}, "name"),
    ({"category": "0100"}, "category"),
    ({"county": "朝阳区"}, "county"),
    ({"status": "broken"}, "status"),
    ({"sharing_mode": None}, "sharing_mode"),
    ({"in_service_on": "20.5.2019"}, "in_service_on"),
    ({"operator_phone": "call me"}, "operator_phone"),
    ({"code": "NEW-001"}, "code"),
    ({"institution_id": 1}, "institution_id"),
    ({"unknown": 1}, "unknown"),
]


def test_patch_refuses_a_bad_value_naming_the_field_and_changes_nothing(client, world):
    version = catalog_version()
    headers = bearer(world["provider"])
    for body, field in API_BAD:
        response = client.patch(
            f"/api/v1/instruments/{world['instrument'].code}",
            json={"model": "另一型号", **body},
            headers=headers,
        )
        assert response.status_code == 422, (body, response.json)
        error = response.json["error"]
        assert error["code"] == "validation_error" and set(error["details"]["fields"]) == {field}, body
    assert fresh(world["instrument"]).model != "另一型号" and audit_rows(world["instrument"]) == []
    db.session.rollback()
    assert catalog_version() == version


def test_patch_on_another_institutions_instrument_answers_as_for_a_missing_one(client, world):
    code = world["instrument"].code
    headers = bearer(world["other_provider"])
    foreign = client.patch(f"/api/v1/instruments/{code}", json={"name": "改名"}, headers=headers)
    missing = client.patch("/api/v1/instruments/NOPE-1", json={"name": "改名"}, headers=headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json == {
        "error": {
            **missing.json["error"],
            "message": missing.json["error"]["message"].replace("NOPE-1", code),
        }
    }
    assert fresh(world["instrument"]).name != "改名"


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), (Role.ENTERPRISE, 403), (Role.REVIEWER, 403), (Role.FINANCE, 403)]
)
def test_patch_is_for_providers_and_administrators(client, world, make_user, role, status):
    headers = bearer(make_user(role)) if role else {}
    response = client.patch(
        f"/api/v1/instruments/{world['instrument'].code}", json={"name": "改名"}, headers=headers
    )
    assert response.status_code == status
    admin = client.patch(
        f"/api/v1/instruments/{world['instrument'].code}",
        json={"name": "改名"},
        headers=bearer(world["admin"]),
    )
    assert admin.status_code == 200 and admin.json["name"] == "改名"


def test_the_openapi_document_describes_exactly_the_editable_fields(client):
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/instruments/{code}"]["patch"]
    assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
    schema = spec["components"]["schemas"]["InstrumentPatch"]
    # The record's own fields, and its price table (issue 17), which PATCH saves through prices.py.
    assert sorted(schema["properties"]) == sorted([*EDITABLE_FIELDS, "prices"])
    assert schema["additionalProperties"] is False and "required" not in schema
    assert schema["properties"]["original_value_fen"]["multipleOf"] == 10_000
    assert "awaiting_repair" in schema["properties"]["status"]["enum"]
    detail = spec["components"]["schemas"]["InstrumentDetail"]["properties"]
    assert "photos" in detail and "thumbnail_url" in detail


def test_an_edit_through_the_api_shows_in_the_api_list_at_once(client, world):
    code = world["instrument"].code
    listed = lambda: client.get(f"/api/v1/instruments?q={code}").json["items"][0]  # noqa: E731
    assert listed()["fee_per_hour_fen"] == 300_00
    response = client.patch(
        f"/api/v1/instruments/{code}", json={"fee_per_hour_fen": 250_00}, headers=bearer(world["provider"])
    )
    assert response.status_code == 200
    assert listed()["fee_per_hour_fen"] == 250_00
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "instrument.updated")
        )
        == 1
    )
