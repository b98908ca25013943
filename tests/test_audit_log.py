"""The audit log: every action named in both languages, amounts in yuan, found by people's and objects' names.

The labels test reads the code: any new `audit.record("...")` action without a label fails it.
"""

from __future__ import annotations

import ast
import functools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask_babel import force_locale

from portal.accounts.banking import TRANSITIONS as BANKING_TRANSITIONS
from portal.accounts.users import TRANSITIONS as USER_TRANSITIONS
from portal.admission.services import AUDIT_NAMES
from portal.booking import requests, transitions
from portal.booking.models import BookingMode
from portal.booking.transitions import TRANSITIONS
from portal.core import audit
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance.models import BATCH_TRANSITIONS
from portal.vouchers import claims as claim_services
from portal.vouchers.models import ApplicationState, ClaimState
from portal.waitlist.models import TRANSITIONS as WAITLIST_TRANSITIONS
from tests.factories import login

ROOT = Path(__file__).resolve().parent.parent / "portal"
CJK = re.compile(r"[\u4e00-\u9fff]")

# Actions written with an f-string, and every action each can become (from its state machine).
DYNAMIC = {
    "booking.{target.value}": {f"booking.{state}" for state in TRANSITIONS.values()},
    "claim.{claim.state.value}": {f"claim.{state}" for state in ClaimState if state is not ClaimState.DRAFT},
    "voucher_application.{application.state.value}": {
        f"voucher_application.{state}" for state in ApplicationState
    },
    "bank_account.{target.value}": {f"bank_account.{state}" for state in BANKING_TRANSITIONS.values()},
    "batch.{batch.state.value}": {f"batch.{state}" for state in BATCH_TRANSITIONS.values()},
    "waitlist.{target.value}": {f"waitlist.{state}" for state in WAITLIST_TRANSITIONS.values()},
    "provider_admission.{AUDIT_NAMES[action]}": {
        f"provider_admission.{name}" for name in AUDIT_NAMES.values()
    },
    # Helpers that record the action their callers name (file:variable).
    "portal/accounts/passwords.py:action": {"user.password_changed", "user.password_reset"},
    "portal/accounts/services.py:action": {"user.updated", "user.profile_updated"},
    "portal/reporting/versions.py:action": {"report.submitted", "score_sheet.signed"},
    "portal/accounts/users.py:audit_action": {action for _active, action in USER_TRANSITIONS.values()},
    "portal/catalog/imports.py:action": {
        "catalog_import.checked",
        "catalog_import.refused",
        "catalog_import.failed",
    },
}


def _calls_to_record(tree: ast.AST) -> list[ast.Call]:
    """Calls of portal.core.audit.record, as `audit.record(...)` or an imported `record(...)`."""
    imported = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "portal.core.audit"
        and any(alias.name == "record" for alias in node.names)
        for node in ast.walk(tree)
    )
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "record"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "audit"
            )
            or (imported and isinstance(node.func, ast.Name) and node.func.id == "record")
        )
    ]


@functools.cache  # parsing every module takes a second; the code does not change during a run
def audited_actions() -> dict[str, str]:
    """Every audit action the code can write -> where it is written."""
    found: dict[str, str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        for call in _calls_to_record(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT.parent)}:{call.lineno}"
            first = call.args[0] if call.args else None
            if isinstance(first, ast.IfExp):  # "enterprise.verified" if verify else "enterprise.rejected"
                branches = (first.body, first.orelse)
                assert all(isinstance(b, ast.Constant) for b in branches), f"{where}: list it in DYNAMIC"
                found.update({b.value: where for b in branches})
            elif isinstance(first, ast.Constant) and isinstance(first.value, str):
                found[first.value] = where
            elif isinstance(first, ast.JoinedStr):
                source = ast.unparse(first)[2:-1]  # f'...' -> ...
                assert source in DYNAMIC, f"{where}: list what f'{source}' can become in DYNAMIC"
                found.update(dict.fromkeys(DYNAMIC[source], where))
            elif isinstance(first, ast.Name):
                variable = f"{path.relative_to(ROOT.parent)}:{first.id}"
                assert variable in DYNAMIC, f"{where}: list what {first.id} can be in DYNAMIC ({variable!r})"
                found.update(dict.fromkeys(DYNAMIC[variable], where))
            else:
                pytest.fail(f"{where}: an audit action that is not a literal; list it in DYNAMIC")
    return found


def test_the_code_writes_audit_actions_this_test_can_find():
    actions = audited_actions()
    assert {"booking.requested", "booking.no_show", "claim.in_notice", "batch.paid"} <= set(actions)


def test_every_audit_action_has_a_label_in_english_and_chinese(app):
    missing = {action: where for action, where in audited_actions().items() if action not in ACTION_LABELS}
    assert missing == {}, f"no label for these audit actions (add them to ACTION_LABELS): {missing}"
    with force_locale("zh"):
        untranslated = [a for a in audited_actions() if not CJK.search(str(ACTION_LABELS[a]))]
    assert untranslated == [], f"labels without a Chinese translation: {untranslated}"
    with force_locale("en"):
        assert all(not CJK.search(str(ACTION_LABELS[a])) for a in audited_actions())


def test_every_kind_of_audited_object_has_a_name(app):
    kinds = set()
    for path in sorted(ROOT.rglob("*.py")):
        for call in _calls_to_record(ast.parse(path.read_text(encoding="utf-8"))):
            if len(call.args) > 1 and isinstance(call.args[1], ast.Constant):
                kinds.add(call.args[1].value)
    assert kinds and kinds <= set(OBJECT_LABELS), kinds - set(OBJECT_LABELS)
    with force_locale("zh"):
        assert all(CJK.search(str(OBJECT_LABELS[k])) for k in kinds)


# --- the page ------------------------------------------------------------------------------------


@pytest.fixture
def log(
    app, fake_clock, make_user, make_instrument, make_institution, make_scheme, make_voucher, make_service
):
    """Two enterprises' doings on one instrument, a voucher and a claim, and a reviewer to search them."""
    host = make_institution()
    instrument = make_instrument(institution=host, code="SEM-0001", name="场发射扫描电镜")
    other = make_instrument(institution=host, code="XRD-0002", name="X射线衍射仪")
    provider = make_user(Role.PROVIDER, institution=host, username="prov_li", full_name="李操作")
    first = make_user(Role.ENTERPRISE, username="ent_jia", full_name="甲联系人")
    first.enterprise.name = "聊城甲新材料有限公司"
    second = make_user(Role.ENTERPRISE, username="ent_yi", full_name="乙联系人")
    second.enterprise.name = "聊城乙电子有限公司"
    db.session.commit()
    start = datetime(2026, 12, 9, 1, 0, tzinfo=UTC)
    booked = {}
    for n, (user, machine) in enumerate(((first, instrument), (second, other))):
        request = requests.request_booking(
            user,
            machine.code,
            requests.BookingRequest(
                mode=BookingMode.SLOT,
                purpose="测试",
                starts_at=start + timedelta(days=n),
                ends_at=start + timedelta(days=n, hours=1),
            ),
        )
        transitions.confirm_booking(provider, request.id)
        booked[user.username] = request
    scheme = make_scheme()
    voucher = make_voucher(first, scheme, 80_000_00)
    record = make_service(first, 12_345_67, instrument=instrument)
    claim = claim_services.create_claim(first, voucher.id, [record.id])
    audit.record(
        "voucher_application.submitted",
        "voucher_application",
        voucher.application_id,
        after={"state": "submitted", "amount_fen": 123_456_78, "funds": {"city": {"budget_fen": 5_00}}},
        actor_id=first.id,
    )
    db.session.commit()
    return {
        "reviewer": make_user(Role.REVIEWER),
        "bookings": booked,
        "voucher": voucher,
        "claim": claim,
        "first": first,
        "second": second,
    }


def rows(client, **query) -> list[dict[str, str]]:
    page = client.get("/review/audit", query_string=query)
    assert page.status_code == 200
    out = []
    for row in re.findall(r"<tr>\s*<td class=\"text-nowrap\">(.*?)</tr>", page.get_data(as_text=True), re.S):
        cells = dict(re.findall(r'<td class="(?:small )?audit-(\w+)">(.*?)</td>', row, re.S))
        out.append({k: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", v)).strip() for k, v in cells.items()})
    return out


def test_actions_are_named_and_amounts_shown_in_yuan(client, log):
    login(client, log["reviewer"].username)
    found = rows(client, action="voucher_application.submitted")
    assert len(found) == 1
    assert found[0]["action"] == "提交申请"  # voucher_application.submitted, by its name
    assert "¥123,456.78" in found[0]["values"] and "12345678" not in found[0]["values"]
    assert "¥5.00" in found[0]["values"]  # nested amounts too
    confirmed = rows(client, action="booking.confirmed")
    assert {r["action"] for r in confirmed} == {"服务方已确认"}
    assert not any("." in r["action"] for r in rows(client))  # no row shows a code


@pytest.mark.parametrize(
    ("who", "expected"),
    [("prov_li", {"李操作 (prov_li)"}), ("李操作", {"李操作 (prov_li)"}), ("PROV", {"李操作 (prov_li)"})],
)
def test_who_is_found_by_username_or_name(client, log, who, expected):
    login(client, log["reviewer"].username)
    found = rows(client, who=who)
    assert found and {r["actor"] for r in found} == expected


def objects(client, **query) -> set[str]:
    return {r["object"] for r in rows(client, **query)}


def test_objects_are_found_by_instrument_code_or_name(client, log):
    login(client, log["reviewer"].username)
    mine = log["bookings"]["ent_jia"].id
    by_name = objects(client, object="扫描电镜", kind="booking")
    assert by_name == {f"预约 #{mine} · 场发射扫描电镜 · 聊城甲新材料有限公司"}
    assert objects(client, object="sem-0001", kind="booking") == by_name  # the code, any case


def test_objects_are_found_by_enterprise_name(client, log):
    login(client, log["reviewer"].username)
    found = objects(client, object="乙电子")
    theirs = log["bookings"]["ent_yi"].id
    assert found == {f"预约 #{theirs} · X射线衍射仪 · 聊城乙电子有限公司"}
    claims = objects(client, object="甲新材料", kind="claim")
    assert claims == {f"申领 #{log['claim'].id} · 聊城甲新材料有限公司"}


def test_objects_are_found_by_voucher_code_and_by_number(client, log):
    login(client, log["reviewer"].username)
    assert objects(client, object=log["voucher"].code, kind="claim") == {
        f"申领 #{log['claim'].id} · 聊城甲新材料有限公司"
    }
    assert f"申领 #{log['claim'].id} · 聊城甲新材料有限公司" in objects(client, object=f"#{log['claim'].id}")


def test_nothing_matches_nothing_and_bad_filters_are_ignored_not_fatal(client, log):
    login(client, log["reviewer"].username)
    assert rows(client, object="不存在的名字") == []
    assert rows(client, who="nobody-at-all") == []
    everything = len(rows(client))
    assert len(rows(client, action="no.such.action", kind="<script>", since="2026-13-01")) == everything
    assert rows(client, object="%") == [] and rows(client, object="_") == []  # wildcards match literally


def test_a_booking_history_names_each_step(client, log):
    login(client, log["first"].username)
    page = client.get(f"/bookings/{log['bookings']['ent_jia'].id}").get_data(as_text=True)
    history = page.split('id="booking-history"')[1]
    assert "booking.requested" not in history and "服务方已确认" in history
