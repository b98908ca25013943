"""The admin console: institutions, enterprises, categories and yearly schemes, with their bad input.

(Catalogue imports have their own file, tests/test_catalog_upload.py.)
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.accounts.models import (
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    VerificationState,
)
from portal.catalog.services import catalog_version
from portal.core.errors import Forbidden
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers import schemes as scheme_services
from portal.vouchers.models import Scheme, VerificationRequest
from tests.factories import extract_csrf, login, valid_uscc


@pytest.fixture
def admin(make_user):
    return make_user(Role.ADMIN)


@pytest.fixture
def console(client, admin):
    """The administrator's signed-in client."""
    login(client, admin.username)
    return client


def post_form(client, url: str, data: dict):
    token = extract_csrf(client.get(url).get_data(as_text=True))
    return client.post(url, data={**data, "csrf_token": token})


def audit_rows(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
    )


def field_error(html: str, field: str) -> str:
    """The message shown under a form field (Bootstrap's invalid-feedback after the input)."""
    match = re.search(
        rf'id="{field}"[^>]*>.*?<div class="invalid-feedback[^"]*"[^>]*>\s*([^<]+?)\s*</div>', html, re.S
    )
    assert match, f"no error shown for {field}"
    return match.group(1)


# --- institutions --------------------------------------------------------------------------------


def institution_form(**overrides) -> dict:
    values = {
        "name": "聊城新材料研究院",
        "uscc": valid_uscc(),
        "kind": "institute",
        "county": "高新区",
        "address": "  长江路 111 号  ",
        "is_local": "y",
        "in_province": "y",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_an_administrator_adds_an_institution_and_the_change_is_recorded(console, admin):
    form = institution_form()
    response = post_form(console, "/admin/institutions/new", form)
    assert response.status_code == 302 and response.location.endswith("/admin/institutions")
    institution = db.session.scalar(select(Institution).where(Institution.name == "聊城新材料研究院"))
    assert institution.uscc == form["uscc"] and institution.county == "高新区"
    assert institution.kind is InstitutionKind.INSTITUTE and institution.is_local is True
    assert institution.address == "长江路 111 号"
    (event,) = audit_rows("institution.created")
    assert event.actor_id == admin.id and event.object_id == str(institution.id)
    assert event.after["uscc"] == form["uscc"] and event.after["is_local"] is True
    listing = console.get("/admin/institutions").get_data(as_text=True)
    assert "聊城新材料研究院" in listing and form["uscc"] in listing


def test_the_form_says_what_being_in_liaocheng_means(console):
    html = console.get("/admin/institutions/new").get_data(as_text=True)
    assert "位于聊城" in html and "市级配套" in html
    assert re.search(r'<input checked[^>]*id="is_local"', html)  # a new host is local unless unticked


def test_a_host_outside_shandong_is_marked_and_kept_with_its_own_place(console, admin, make_institution):
    html = console.get("/admin/institutions/new").get_data(as_text=True)
    assert re.search(r'<input checked[^>]*id="in_province"', html)  # a new host is in the province
    assert "位于山东省" in html
    # In Liaocheng and outside Shandong at once: the message is at the field, and what was typed stays.
    both = post_form(console, "/admin/institutions/new", institution_form(in_province=None))
    assert both.status_code == 200
    assert "位于聊城的单位在山东省内" in field_error(both.get_data(as_text=True), "in_province")
    assert audit_rows("institution.created") == []
    form = institution_form(name="上海某检测中心", is_local=None, in_province=None)
    assert post_form(console, "/admin/institutions/new", form).status_code == 302
    host = db.session.scalar(select(Institution).where(Institution.name == "上海某检测中心"))
    assert host.in_province is False and host.is_local is False
    (event,) = audit_rows("institution.created")
    assert event.after["in_province"] is False
    listing = console.get("/admin/institutions?q=上海某检测中心").get_data(as_text=True)
    assert listing.count(">否<") == 2  # neither in Liaocheng nor in Shandong
    # A host outside the province keeps the place it has, which is not one of Liaocheng's counties.
    host.county = "上海市嘉定区"
    db.session.commit()
    page = console.get(f"/admin/institutions/{host.id}").get_data(as_text=True)
    assert 'value="上海市嘉定区" selected' in page or 'selected value="上海市嘉定区"' in page
    form = institution_form(
        name="上海某检测中心", uscc=host.uscc, county="上海市嘉定区", is_local=None, in_province=None
    )
    form["address"] = "长江路 111 号"
    assert post_form(console, f"/admin/institutions/{host.id}", form).status_code == 302
    # Moved into the province, it must take one of the counties.
    moved = post_form(console, f"/admin/institutions/{host.id}", {**form, "in_province": "y"})
    assert moved.status_code == 200 and field_error(moved.get_data(as_text=True), "county") != ""


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"name": "已有大学"}, "name", "已有其他单位使用此名称"),
        ({"uscc": "TAKEN"}, "uscc", "已有其他单位使用此信用代码"),
        ({"uscc": "91371500MA3C12345"}, "uscc", "18"),  # 17 characters
        ({"uscc": "WRONGCHECK"}, "uscc", "校验"),  # a typing error in the check character
        ({"uscc": "9137150O1234567890"}, "uscc", "O"),  # a letter the code does not use
        ({"county": "海淀区"}, "county", ""),
        ({"name": "   "}, "name", ""),
    ],
    ids=["duplicate name", "duplicate code", "short code", "bad check", "bad letter", "county", "blank name"],
)
def test_bad_input_is_shown_at_its_field_and_what_was_typed_stays(
    console, make_institution, overrides, field, message
):
    overrides = dict(overrides)  # the table's own dict serves the other backend too
    taken = make_institution(name="已有大学")
    if overrides.get("uscc") == "TAKEN":
        overrides["uscc"] = taken.uscc
    if overrides.get("uscc") == "WRONGCHECK":
        code = valid_uscc()
        overrides["uscc"] = code[:17] + ("0" if code[17] != "0" else "1")
    before = db.session.scalar(select(func.count()).select_from(Institution))
    response = post_form(console, "/admin/institutions/new", institution_form(**overrides))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in field_error(html, field)
    assert 'value="长江路 111 号' in html or "长江路 111 号" in html  # what was typed is kept
    assert db.session.scalar(select(func.count()).select_from(Institution)) == before
    assert audit_rows("institution.created") == []


def test_editing_records_only_what_changed_and_refreshes_the_catalogue(console, make_institution, admin):
    institution = make_institution(name="聊城某大学", is_local=True)
    version = catalog_version()
    page = console.get(f"/admin/institutions/{institution.id}").get_data(as_text=True)
    assert 'value="聊城某大学"' in page and institution.uscc in page
    form = institution_form(name="聊城某大学", uscc=institution.uscc, kind="university", county="东昌府区")
    form.pop("is_local")  # unticked: the host is elsewhere now
    form["address"] = institution.address
    response = post_form(console, f"/admin/institutions/{institution.id}", form)
    assert response.status_code == 302
    db.session.refresh(institution)
    assert institution.is_local is False
    (event,) = audit_rows("institution.updated")
    assert event.before == {"is_local": True} and event.after == {"is_local": False}
    assert catalog_version() != version  # catalogue pages show the change at once
    # Saving again unchanged records nothing more.
    form["uscc"] = institution.uscc.lower()  # a code is compared in capitals
    post_form(console, f"/admin/institutions/{institution.id}", form)
    assert len(audit_rows("institution.updated")) == 1


def test_renaming_to_another_institutions_name_is_a_field_error(console, make_institution):
    first, second = make_institution(name="甲大学"), make_institution(name="乙大学")
    form = institution_form(name="甲大学", uscc=second.uscc)
    response = post_form(console, f"/admin/institutions/{second.id}", form)
    assert response.status_code == 200
    assert "已有其他单位使用此名称" in field_error(response.get_data(as_text=True), "name")
    db.session.refresh(second)
    assert second.name == "乙大学" and first.name == "甲大学"


def test_an_unknown_institution_is_not_found(console):
    assert console.get("/admin/institutions/999999").status_code == 404
    assert post_form(console, "/admin/institutions/new", {}).status_code == 200  # an empty form re-shown
    # With a valid token (from the form for a new one), so that only the unknown number can refuse it.
    token = extract_csrf(console.get("/admin/institutions/new").get_data(as_text=True))
    response = console.post("/admin/institutions/999999", data={"csrf_token": token, "name": "甲大学"})
    assert response.status_code == 404


def test_the_institution_list_searches_name_and_code(console, make_institution, make_instrument, make_user):
    wanted = make_institution(name="东阿阿胶股份有限公司")
    make_institution(name="鲁西化工集团")
    make_instrument(institution=wanted)
    make_user(Role.PROVIDER, institution=wanted)
    by_name = console.get("/admin/institutions?q=阿胶").get_data(as_text=True)
    assert "东阿阿胶" in by_name and "鲁西化工" not in by_name
    row = by_name[by_name.index("东阿阿胶") :]
    assert re.search(r'<td class="text-end">1</td><td class="text-end">1</td>', row)
    by_code = console.get(f"/admin/institutions?q={wanted.uscc[-8:].lower()}").get_data(as_text=True)
    assert "东阿阿胶" in by_code and "鲁西化工" not in by_code
    wildcard = console.get("/admin/institutions?q=%25").get_data(as_text=True)  # "%" is just a character
    assert "东阿阿胶" not in wildcard and "鲁西化工" not in wildcard


# --- enterprises ---------------------------------------------------------------------------------


def _enterprise(name: str, **values) -> Enterprise:
    enterprise = Enterprise(
        uscc=values.pop("uscc", None) or valid_uscc(),
        name=name,
        kind=values.pop("kind", EnterpriseKind.TECH_SME),
        county=values.pop("county", "东昌府区"),
        verification_state=values.pop("state", VerificationState.PENDING),
        **values,
    )
    db.session.add(enterprise)
    db.session.commit()
    return enterprise


def names_listed(client, query: str = "") -> list[str]:
    html = client.get(f"/admin/enterprises{query}").get_data(as_text=True)
    table = html[html.index('id="enterprises"') :]
    return re.findall(r"<tr>\s*<td>([^<]+)</td>", table)


def test_enterprises_are_searched_by_name_and_code_and_filtered(console, make_user):
    alpha = _enterprise("聊城甲科技有限公司", state=VerificationState.VERIFIED, county="临清市")
    _enterprise("聊城乙生物有限公司", kind=EnterpriseKind.MAKER_TEAM)
    _enterprise("聊城丙材料有限公司", state=VerificationState.REJECTED)
    assert set(names_listed(console)) >= {"聊城甲科技有限公司", "聊城乙生物有限公司", "聊城丙材料有限公司"}
    assert names_listed(console, "?q=甲科技") == ["聊城甲科技有限公司"]
    assert names_listed(console, f"?q={alpha.uscc[5:14].lower()}") == ["聊城甲科技有限公司"]
    assert names_listed(console, "?state=verified&q=聊城") == ["聊城甲科技有限公司"]
    assert names_listed(console, "?kind=maker_team") == ["聊城乙生物有限公司"]
    assert names_listed(console, "?county=临清市") == ["聊城甲科技有限公司"]
    assert names_listed(console, "?q=100%25") == []  # a wildcard is just a character
    # Nonsense filters are ignored rather than refused.
    assert console.get("/admin/enterprises?kind=nonsense&state=x&county=y&page=-3").status_code == 200
    assert console.get("/admin/enterprises?kind=%0A&state=%20&county=%0A").status_code == 200


def test_an_enterprise_links_to_its_latest_verification_request(console, make_user):
    user = make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING)
    requests = []
    for controller in ("张三", "李四"):
        request = VerificationRequest(
            enterprise_id=user.enterprise_id,
            kind=EnterpriseKind.TECH_SME,
            actual_controller=controller,
            submitted_by_id=user.id,
        )
        db.session.add(request)
        db.session.commit()
        requests.append(request.id)
    html = console.get(f"/admin/enterprises?q={user.enterprise.uscc}").get_data(as_text=True)
    links = re.findall(r'href="/review/verifications/(\d+)"', html)
    assert links == [str(requests[-1])]
    assert console.get(f"/review/verifications/{links[0]}").status_code == 200


def test_the_enterprise_list_is_paged(console):
    for n in range(52):
        db.session.add(
            Enterprise(
                uscc=valid_uscc(),
                name=f"分页企业{n:02d}",
                kind=EnterpriseKind.OTHER,
                county="冠县",
                verification_state=VerificationState.PENDING,
            )
        )
    db.session.commit()
    first = console.get("/admin/enterprises?q=分页企业").get_data(as_text=True)
    assert "52" in first[first.index('id="enterprise-count"') :][:80]
    assert len(names_listed(console, "?q=分页企业")) == 50
    assert len(names_listed(console, "?q=分页企业&page=2")) == 2
    assert names_listed(console, "?q=分页企业")[0] == "分页企业51"  # newest first


# --- categories ----------------------------------------------------------------------------------


def test_the_category_table_shows_both_levels_and_counts(console, make_instrument):
    make_instrument(category_code="0102")
    make_instrument(category_code="0102")
    make_instrument(category_code="01")
    html = console.get("/admin/categories").get_data(as_text=True)
    assert "分析仪器" in html and "质谱仪器" in html and "其他仪器" in html
    rows = dict(re.findall(r"<code>(\d{2,4})</code></th>.*?<td class=\"text-end\">(\d+)</td>", html, re.S))
    assert rows["01"] == "3" and rows["0102"] == "2" and rows["0101"] == "0" and rows["15"] == "0"
    assert "<form" not in html.split('id="categories"')[1]  # read-only


# --- yearly schemes ------------------------------------------------------------------------------


@pytest.fixture
def scheme_2026(make_scheme):
    scheme = make_scheme(
        service_window_start=date(2026, 2, 1),
        service_window_end=date(2026, 11, 30),
        ranking_weights={"hours": "0.5", "samples": "0", "fees": "0.5", "enterprises": "0", "rating": "0"},
        public_notice_days=5,
        voucher_validity_days=300,
    )
    scheme.funds[0].committed_fen, scheme.funds[0].paid_fen = 100_00, 50_00
    scheme.allocated_fen = 1_000_00
    db.session.commit()
    return scheme


def test_the_scheme_list_shows_each_year_with_a_way_to_next_year(console, scheme_2026):
    html = console.get("/admin/schemes").get_data(as_text=True)
    assert 'id="scheme-2026"' in html and "/review/scheme?year=2026" in html
    assert "/admin/schemes/2026/copy" in html and "data-confirm" in html


def test_next_years_scheme_is_made_from_this_years(console, admin, scheme_2026):
    token = extract_csrf(console.get("/admin/schemes").get_data(as_text=True))
    response = console.post("/admin/schemes/2026/copy", data={"csrf_token": token})
    assert response.status_code == 302 and response.location.endswith("/review/scheme?year=2027")
    new = db.session.scalar(select(Scheme).where(Scheme.year == 2027))
    assert new.name == "2027年度聊城市科技创新券"
    assert (new.service_window_start, new.service_window_end) == (date(2027, 2, 1), date(2027, 11, 30))
    assert (new.enterprise_cap_fen, new.group_cap_fen, new.four_eyes_threshold_fen) == (
        500_000_00,
        650_000_00,
        50_000_00,
    )
    assert (new.voucher_validity_days, new.public_notice_days) == (300, 5)
    assert new.excluded_service_types == ["statutory_testing", "mandatory_certification"]
    assert new.ranking_weights == scheme_2026.ranking_weights
    assert new.allocated_fen == 0
    funds = [(f.name, f.rate, f.condition.value, f.enterprise_capped, f.budget_fen) for f in new.funds]
    assert funds == [
        ("province", Decimal("0.6000"), "always", True, 4_000_000_00),
        ("city", Decimal("0.3000"), "local_provider", False, 2_000_000_00),
    ]
    assert all(f.committed_fen == 0 and f.paid_fen == 0 for f in new.funds)
    (event,) = audit_rows("scheme.copied")
    assert event.actor_id == admin.id and event.object_id == "2027" and event.after["copied_from"] == 2026
    # The scheme list no longer offers to make 2027 again.
    assert "/admin/schemes/2026/copy" not in console.get("/admin/schemes").get_data(as_text=True)


def test_a_scheme_for_next_year_that_exists_is_left_alone(console, make_scheme, scheme_2026):
    existing = make_scheme(year=2027, name="2027 已设置", enterprise_cap_fen=1)
    token = extract_csrf(console.get("/admin/schemes").get_data(as_text=True))
    response = console.post("/admin/schemes/2026/copy", data={"csrf_token": token})
    assert response.status_code == 302 and response.location.endswith("/admin/schemes")
    page = console.get("/admin/schemes").get_data(as_text=True)
    assert "2027 年度方案已存在" in page  # the flashed reason
    db.session.refresh(existing)
    assert existing.name == "2027 已设置" and existing.enterprise_cap_fen == 1
    assert audit_rows("scheme.copied") == []


def test_a_year_without_a_scheme_cannot_be_copied(console):
    token = extract_csrf(console.get("/admin/schemes").get_data(as_text=True))
    response = console.post("/admin/schemes/2031/copy", data={"csrf_token": token})
    assert response.status_code == 302
    assert db.session.scalar(select(func.count()).select_from(Scheme)) == 0


def test_29_february_moves_to_28_february(app, make_scheme, admin):
    make_scheme(
        year=2028,
        name="聊城创新券",
        service_window_start=date(2028, 2, 29),
        service_window_end=date(2028, 12, 31),
    )
    new = scheme_services.copy_scheme_to_next_year(admin, 2028)
    assert new.service_window_start == date(2029, 2, 28) and new.name == "聊城创新券 2029"


def test_only_administrators_copy_schemes(app, make_user, scheme_2026):
    with pytest.raises(Forbidden):
        scheme_services.copy_scheme_to_next_year(make_user(Role.REVIEWER), 2026)
    assert db.session.scalar(select(Scheme.id).where(Scheme.year == 2027)) is None


def test_the_front_page_lists_every_section(console):
    html = console.get("/admin/").get_data(as_text=True)
    for path in (
        "/admin/institutions",
        "/admin/enterprises",
        "/admin/categories",
        "/admin/schemes",
        "/admin/imports",
    ):
        assert f'href="{path}"' in html


def test_what_administrators_type_is_shown_escaped(console, make_institution):
    make_institution(name="<b>粗体</b>大学", address="<script>alert(1)</script>")
    for path in ("/admin/institutions", "/admin/institutions?q=粗体"):
        html = console.get(path).get_data(as_text=True)
        assert "<b>粗体</b>" not in html and "&lt;b&gt;粗体&lt;/b&gt;大学" in html
