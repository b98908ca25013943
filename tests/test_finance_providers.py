"""Issue 21, item 5: providers paid for redemptions at payment.

A provider institution's bank account is entered by its provider users and verified at the review desk
like an enterprise's; a batch pays an at-payment claim to its provider (one line per payee, summed, into
its verified account) and holds back a provider without one; the bank file carries the provider's
account as text; tallies, totals and the subsidy export split by redemption mode and payee kind, and
each mode's totals equal the COMMITTED ledger entries of its claims, to the fen.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask_babel import force_locale
from openpyxl import load_workbook
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts.models import BankAccount, BankAccountState
from portal.accounts.services import issue_api_token
from portal.core.errors import ValidationFailed
from portal.core.exports import FORMULA_PREFIXES
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance import exports as subsidy_exports
from portal.finance import services as finance
from portal.finance.models import SubsidyTally
from portal.notifications.models import Notification
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, review
from portal.vouchers.models import (
    Claim,
    ClaimState,
    Fund,
    LedgerEntry,
    LedgerKind,
    RedemptionMode,
    Voucher,
)
from tests.factories import extract_csrf, login

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

MONTH = "2026-12"  # the fake clock's month
ICBC = "中国工商银行聊城东昌支行"
# Nineteen digits with a leading zero: a spreadsheet that reads it as a number loses both ends.
PROVIDER_NUMBER = "0371 5000 2222 3333 444"
PROVIDER_DIGITS = PROVIDER_NUMBER.replace(" ", "")


def notes(kind: str) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.kind == kind)))


def provider_account(provider, reviewer, number: str = PROVIDER_NUMBER, verify: bool = True) -> BankAccount:
    """The institution's account, entered by its provider user (and verified by the reviewer)."""
    account = banking.record_bank_account(
        provider, banking.BankAccountData(provider.institution.name, ICBC, number)
    )
    if verify:
        banking.decide_bank_account(reviewer, account.id, "verify")
    return db.session.get_one(BankAccount, account.id)


# --- the provider's bank account --------------------------------------------------------------------


@pytest.fixture
def institution_staff(make_user, make_institution):
    """Two provider users of one institution, one of another (in another county), and a reviewer."""
    own = make_institution(county="东昌府区")
    first = make_user(Role.PROVIDER, institution=own)
    second = make_user(Role.PROVIDER, institution=own)
    stranger = make_user(Role.PROVIDER, institution=make_institution(county="临清市"))
    return {"first": first, "second": second, "stranger": stranger, "reviewer": make_user(Role.REVIEWER)}


def test_a_provider_enters_its_institutions_account_and_a_reviewer_verifies_it(institution_staff):
    first, second, reviewer = (institution_staff[k] for k in ("first", "second", "reviewer"))
    account = provider_account(first, reviewer, verify=False)
    assert (account.institution_id, account.enterprise_id, account.payee_kind) == (
        first.institution_id,
        None,
        "provider",
    )
    assert account.state is BankAccountState.PENDING and account.account_number == PROVIDER_DIGITS
    told = notes("provider_account.submitted")
    assert {n.recipient_id for n in told} == {first.id, second.id}  # every provider user, no stranger
    assert told[0].payload["last_digits"] == PROVIDER_DIGITS[-4:] and told[0].link == banking.PROVIDER_LINK
    entered = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "bank_account.submitted"))
    assert entered.after["institution"] == first.institution_id and "enterprise" not in entered.after

    # The other provider user replaces the waiting entry; a reviewer verifies the replacement.
    change = banking.record_bank_account(
        second, banking.BankAccountData(first.institution.name, ICBC, "6217 0000 1111 2222")
    )
    assert db.session.get(BankAccount, account.id).state is BankAccountState.WITHDRAWN
    assert change.version == 2
    banking.decide_bank_account(reviewer, change.id, "verify")
    assert banking.verified_accounts([first.institution_id], "provider")[first.institution_id].id == change.id
    assert banking.verified_account(first.institution_id) is None  # not an enterprise's account
    assert {n.recipient_id for n in notes("provider_account.verified")} == {first.id, second.id}
    assert notes("bank_account.verified") == []  # the enterprises' wording is not used
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_id == str(change.id)).order_by(AuditEvent.id)
    ).all()
    assert actions == ["bank_account.submitted", "bank_account.verified"]


def test_an_institution_account_in_another_name_needs_a_reason(institution_staff):
    account = banking.record_bank_account(
        institution_staff["first"], banking.BankAccountData("张三", ICBC, PROVIDER_NUMBER)
    )
    with force_locale("en"), pytest.raises(ValidationFailed) as error:
        banking.decide_bank_account(institution_staff["reviewer"], account.id, "verify")
    assert "institution's registered name" in error.value.message
    banking.decide_bank_account(institution_staff["reviewer"], account.id, "verify", "分支机构账户，已核对")
    assert db.session.get(BankAccount, account.id).state is BankAccountState.VERIFIED


def test_the_database_holds_one_payee_and_one_waiting_version_per_institution(institution_staff, make_user):
    first = institution_staff["first"]
    enterprise = make_user(Role.ENTERPRISE)

    def row(**owner):
        return BankAccount(
            version=next_version(),
            account_name="户名",
            bank_name=ICBC,
            account_number="62170000111122223",
            state=BankAccountState.PENDING,
            entered_by_id=first.id,
            **owner,
        )

    versions = iter(range(1, 100))

    def next_version() -> int:
        return next(versions)

    for owner in ({}, {"institution_id": first.institution_id, "enterprise_id": enterprise.enterprise_id}):
        db.session.add(row(**owner))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
    db.session.add(row(institution_id=first.institution_id))
    db.session.commit()
    db.session.add(row(institution_id=first.institution_id))
    with pytest.raises(sa.exc.IntegrityError):  # a second waiting version of the same institution
        db.session.commit()
    db.session.rollback()
    # ... while an enterprise's and another institution's waiting versions are theirs alone.
    db.session.add(row(enterprise_id=enterprise.enterprise_id))
    db.session.add(row(institution_id=institution_staff["stranger"].institution_id))
    db.session.commit()


def test_the_provider_page_and_the_review_desk(client, institution_staff, make_user):
    first, stranger, reviewer = (institution_staff[k] for k in ("first", "stranger", "reviewer"))
    login(client, first.username)
    page = client.get("/vouchers/provider/bank-account").get_data(as_text=True)
    assert 'id="bank-form"' in page and first.institution.name in page and 'id="holder-only"' not in page
    assert 'id="nav-provider-bank-account"' in page
    done = client.post(
        "/vouchers/provider/bank-account",
        data={
            "csrf_token": extract_csrf(page),
            "account_name": first.institution.name,
            "bank_name": ICBC,
            "account_number": PROVIDER_NUMBER,
        },
    )
    assert done.status_code == 302 and done.location.endswith("/vouchers/provider/bank-account")
    assert 'id="bank-pending"' in client.get("/vouchers/provider/bank-account").get_data(as_text=True)
    assert client.get("/vouchers/bank-account").status_code == 403  # the enterprises' page is not theirs

    desk = client.application.test_client()
    login(desk, reviewer.username)
    queue = desk.get("/review/?kind=bank_account&county=东昌府区").get_data(as_text=True)
    account_id = int(re.search(r'href="/review/bank-accounts/(\d+)"', queue).group(1))
    assert first.institution.name in queue and 'data-payee-kind="provider"' in queue
    elsewhere = desk.get("/review/?kind=bank_account&county=临清市").get_data(as_text=True)
    assert f"/review/bank-accounts/{account_id}" not in elsewhere  # the county filter holds for institutions
    detail = desk.get(f"/review/bank-accounts/{account_id}").get_data(as_text=True)
    assert "0371 5000 2222 3333 444" in detail and 'data-payee-kind="provider"' in detail
    assert first.institution.uscc in detail and 'id="name-mismatch"' not in detail
    verified = desk.post(
        f"/review/bank-accounts/{account_id}", data={"csrf_token": extract_csrf(detail), "verify": "1"}
    )
    assert verified.status_code == 302
    assert (
        banking.verified_accounts([first.institution_id], "provider")[first.institution_id].id == account_id
    )

    # Another institution's provider sees its own (empty) account, never this one; nor the desk.
    other = client.application.test_client()
    login(other, stranger.username)
    theirs = other.get("/vouchers/provider/bank-account").get_data(as_text=True)
    assert stranger.institution.name in theirs and first.institution.name not in theirs
    assert PROVIDER_DIGITS[-4:] not in theirs and "0371 5000" not in theirs
    assert other.get(f"/review/bank-accounts/{account_id}").status_code == 403
    enterprise = client.application.test_client()
    login(enterprise, make_user(Role.ENTERPRISE).username)
    assert enterprise.get("/vouchers/provider/bank-account").status_code == 403


# --- batches of both modes --------------------------------------------------------------------------


@pytest.fixture
def mixed(
    fake_clock, make_scheme, make_user, make_voucher, make_service, make_bank_account, make_institution
):
    """Payable claims of both modes: reimbursement claims of enterprises E1 and E2 (approved by the real
    services, paid to them), and at-payment claims written directly as approval leaves them (PAYABLE,
    reserved then committed in the ledger, the funds committed): two for provider P1 (from E1 and E3),
    paid to P1, one for provider P2, which has no verified account."""
    scheme = make_scheme()
    reviewer = make_user(Role.REVIEWER)
    enterprises = [make_user(Role.ENTERPRISE) for _ in range(3)]
    vouchers = [make_voucher(user, scheme) for user in enterprises]
    for user in enterprises[:2]:
        make_bank_account(user)
    reimbursed = []
    for user, voucher, fee in zip(enterprises[:2], vouchers[:2], (10_000_00, 3_333_33), strict=True):
        claim = claim_services.create_claim(user, voucher.id, [make_service(user, fee).id])
        claim_services.submit_claim(user, claim.id)
        reimbursed.append(review.approve_claim(reviewer, claim.id).id)
    p1, p2 = make_institution(name="聊城大学分析测试中心"), make_institution(name="外地检测研究院")
    providers = {
        p1.id: make_user(Role.PROVIDER, institution=p1),
        p2.id: make_user(Role.PROVIDER, institution=p2),
    }
    provider_account(providers[p1.id], reviewer)
    at_payment = [
        at_payment_claim(enterprises[0], vouchers[0], p1.id, 8_000_00),
        at_payment_claim(enterprises[2], vouchers[2], p1.id, 5_555_55),
        at_payment_claim(enterprises[1], vouchers[1], p2.id, 2_000_00),
    ]
    finance.tally_month(MONTH)
    fake_clock.advance(days=10)
    assert notice.end_public_notice() == 2  # the reimbursement claims; the others are payable already
    return {
        "enterprises": enterprises,
        "reimbursed": reimbursed,
        "at_payment": at_payment,
        "p1": p1,
        "p2": p2,
        "providers": providers,
        "reviewer": reviewer,
        "clerk": make_user(Role.FINANCE),
    }


def at_payment_claim(user, voucher: Voucher, institution_id: int, fee_fen: int) -> int:
    """An at-payment claim as its approval leaves it (the lead's redemptions module does this for real):
    PAYABLE, 60 % province and 30 % city, reserved then committed in the voucher's ledger, the funds
    committed."""
    province, city = fee_fen * 60 // 100, fee_fen * 30 // 100
    claim = Claim(
        voucher_id=voucher.id,
        enterprise_id=user.enterprise_id,
        institution_id=institution_id,
        mode=RedemptionMode.AT_PAYMENT,
        state=ClaimState.PAYABLE,
        fee_fen=fee_fen,
        enterprise_paid_fen=fee_fen - province - city,
        limited_by=[],
        checks=[],
        created_by_id=user.id,
        approved_month=MONTH,
    )
    claim.set_amounts([("province", province, province), ("city", city, city)])
    db.session.add(claim)
    db.session.flush()
    voucher = db.session.get_one(Voucher, voucher.id)
    voucher.balance_fen -= claim.total_fen
    for kind in (LedgerKind.RESERVED, LedgerKind.COMMITTED):
        db.session.add(
            LedgerEntry(
                voucher_id=voucher.id,
                kind=kind,
                amount_fen=claim.total_fen,
                balance_after_fen=voucher.balance_fen,
                claim_id=claim.id,
            )
        )
    for fund in db.session.scalars(select(Fund).where(Fund.scheme_id == voucher.scheme_id)):
        fund.committed_fen += claim.fund_amounts().get(fund.name, 0)
    db.session.commit()
    return claim.id


def claim(claim_id: int) -> Claim:
    return db.session.get_one(Claim, claim_id)


def test_a_batch_pays_each_payee_once_into_its_verified_account(mixed):
    clerk, p1, p2 = mixed["clerk"], mixed["p1"], mixed["p2"]
    batch = batches.build_batch(clerk, MONTH)
    to_p1, _other, to_p2 = mixed["at_payment"]
    paid = [*mixed["reimbursed"], *mixed["at_payment"][:2]]
    assert batch.claims == 4 and batch.total_fen == sum(claim(i).total_fen for i in paid)
    assert claim(to_p2).batch_id is None and claim(to_p1).batch_id == batch.id

    lines = {p.key: p for p in finance.payments(batch)}
    e1, e2 = (u.enterprise_id for u in mixed["enterprises"][:2])
    assert set(lines) == {f"enterprise:{e1}", f"enterprise:{e2}", f"provider:{p1.id}"}
    p1_line = lines[f"provider:{p1.id}"]
    assert p1_line.payee.name == "聊城大学分析测试中心" and p1_line.claims == mixed["at_payment"][:2]
    assert p1_line.amount_fen == sum(claim(i).total_fen for i in mixed["at_payment"][:2])  # two enterprises
    assert p1_line.account.institution_id == p1.id and p1_line.account.account_number == PROVIDER_DIGITS
    e1_line = lines[f"enterprise:{e1}"]
    assert e1_line.claims == [mixed["reimbursed"][0]] and e1_line.account.enterprise_id == e1
    assert e1_line.payee_kind == "enterprise" and p1_line.payee_kind == "provider"

    # P2 is held back by name, its provider users told; E3 (whose claim went to P1) is not asked.
    assert batch.held_back == [
        {
            "payee_kind": "provider",
            "institution_id": p2.id,
            "name": "外地检测研究院",
            "claims": [to_p2],
            "total_fen": claim(to_p2).total_fen,
        }
    ]
    asked = notes("provider_account.missing")
    assert [n.recipient_id for n in asked] == [mixed["providers"][p2.id].id]
    assert asked[0].payload["institution"] == "外地检测研究院" and asked[0].link == banking.PROVIDER_LINK
    assert notes("bank_account.missing") == []
    built = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "batch.built"))
    assert (built.after["held_back"], built.after["held_back_providers"]) == ([], [p2.id])
    assert [p["name"] for p in finance.payees_without_account()] == ["外地检测研究院"]


def test_the_bank_file_carries_the_providers_account_as_text(mixed):
    clerk, p1 = mixed["clerk"], mixed["p1"]
    batch = batches.build_batch(clerk, MONTH)
    with force_locale("en"):
        text = batches.export_batch(clerk, batch.id, "csv")
        data = batches.export_batch(clerk, batch.id, "xlsx")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[-1] == "Payee kind" and len(body) == 3
    assert all(not cell.startswith(FORMULA_PREFIXES) for row in rows for cell in row)
    line = next(row for row in body if row[0] == p1.name)
    assert line[4] == PROVIDER_DIGITS + "\t"  # text: the leading zero and every digit survive
    assert line[1] == p1.uscc + "\t" and line[2] == p1.name and line[3] == ICBC and line[-1] == "Provider"
    assert Decimal(line[5]) * 100 == sum(claim(i).total_fen for i in mixed["at_payment"][:2])
    assert sorted(row[-1] for row in body) == ["Enterprise", "Enterprise", "Provider"]
    assert Decimal(total[5]) * 100 == batch.total_fen and len(total) == len(header)

    sheet = load_workbook(io.BytesIO(data)).active
    cells = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    row = cells[p1.name]
    assert (row[4].value, row[4].data_type, row[4].number_format) == (PROVIDER_DIGITS, "s", "@")
    assert (row[1].value, row[1].data_type) == (p1.uscc, "s") and row[7].value == "Provider"
    assert round(Decimal(str(row[5].value)) * 100) == sum(claim(i).total_fen for i in mixed["at_payment"][:2])

    exported = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "batch.exported")).all()
    account = banking.verified_accounts([p1.id], "provider")[p1.id]
    assert all(e.after["provider_accounts"] == {str(p1.id): account.id} for e in exported)
    assert all(len(e.after["accounts"]) == 2 for e in exported)


def test_no_bank_file_when_a_providers_account_has_lapsed(mixed):
    clerk, p1 = mixed["clerk"], mixed["p1"]
    batch = batches.build_batch(clerk, MONTH)
    banking.verified_accounts([p1.id], "provider")[p1.id].state = BankAccountState.SUPERSEDED
    db.session.commit()
    with force_locale("en"), pytest.raises(Exception) as error:
        batches.export_batch(clerk, batch.id)
    assert error.value.details == {"payees": [p1.name]}


def test_the_batch_page_names_the_payee_kind(client, mixed):
    batch = batches.build_batch(mixed["clerk"], MONTH)
    login(client, mixed["clerk"].username)
    page = client.get(f"/finance/batches/{batch.id}").get_data(as_text=True)
    assert f'data-payee="provider:{mixed["p1"].id}"' in page and "0371 5000 2222 3333 444" in page
    assert 'id="held-back"' in page and "外地检测研究院" in page


# --- totals, tallies, exports by mode -----------------------------------------------------------------


def by_mode_from_claims() -> dict[str, int]:
    """Each mode's committed subsidy summed claim by claim."""
    sums = {mode.value: 0 for mode in RedemptionMode}
    for row in db.session.scalars(select(Claim).where(Claim.approved_month == MONTH)):
        sums[row.mode.value] += row.total_fen
    return sums


def test_totals_by_mode_and_payee_kind_equal_the_ledger_also_after_payment(mixed):
    clerk = mixed["clerk"]
    for paid in (False, True):
        if paid:  # the batch is paid: the approved totals stay, the paid ones follow
            batch = batches.build_batch(clerk, MONTH)
            batches.export_batch(clerk, batch.id)
            batches.mark_batch_paid(clerk, batch.id, "ICBC-20261217-9")
            db.session.rollback()
        expected = by_mode_from_claims()
        assert expected["at_payment"] > 0 and expected["reimbursement"] > 0
        ledger = finance.ledger_committed_by_mode(MONTH)
        assert ledger == expected  # the ledger's COMMITTED entries, per mode of their claims
        assert finance.ledger_committed(MONTH) == sum(expected.values())
        modes = {r.key: r for r in finance.totals(MONTH, MONTH, "mode").rows}
        assert {k: r.approved_fen for k, r in modes.items()} == expected
        payees = {r.key: r.approved_fen for r in finance.totals(MONTH, MONTH, "payee_kind").rows}
        assert payees == {"enterprise": expected["reimbursement"], "provider": expected["at_payment"]}
        split = {row.mode: row for row in finance.by_mode(MONTH, MONTH)}
        assert all(row.reconciled for row in split.values())
        assert (
            split["at_payment"].payee_kind == "provider" and split["reimbursement"].payee_kind == "enterprise"
        )
        for group in finance.GROUPS:
            assert finance.totals(MONTH, MONTH, group).approved_fen == finance.ledger_committed(MONTH)
    paid_at_payment = sum(claim(i).total_fen for i in mixed["at_payment"][:2])
    assert split["at_payment"].paid_fen == paid_at_payment
    assert claim(mixed["at_payment"][0]).state is ClaimState.PAID


def test_the_tally_keeps_the_modes_apart(mixed):
    """A reimbursement and an at-payment claim of the same enterprise, provider and fund are two rows."""
    rows = db.session.execute(
        select(SubsidyTally.mode, SubsidyTally.fund, sa.func.sum(SubsidyTally.approved_fen))
        .where(SubsidyTally.month == MONTH)
        .group_by(SubsidyTally.mode, SubsidyTally.fund)
    ).all()
    assert {mode for mode, _fund, _sum in rows} == {"reimbursement", "at_payment"}
    province = {mode: int(amount) for mode, fund, amount in rows if fund == "province"}
    assert province["at_payment"] == sum(claim(i).fund_amounts()["province"] for i in mixed["at_payment"])


def test_the_api_totals_group_by_mode_and_payee_kind(client, mixed):
    headers = {"Authorization": f"Bearer {issue_api_token(mixed['clerk'])[0]}"}
    expected = by_mode_from_claims()
    for group, keys in (("mode", expected), ("payee_kind", {"enterprise": 0, "provider": 0})):
        body = client.get(
            f"/api/v1/finance/totals?month={MONTH}&group_by={group}", headers=headers
        ).get_json()
        assert body["group_by"] == group and body["reconciled"]
        assert body["total_fen"] == body["ledger_fen"] == sum(expected.values())
        assert {r["key"] for r in body["rows"]} == set(keys)
        assert all(r["amount_fen"] == r["ledger_fen"] for r in body["rows"])  # each mode reconciles
    spec = client.get("/api/v1/openapi.json").get_json()
    parameters = spec["paths"]["/api/v1/finance/totals"]["get"]["parameters"]
    group_by = next(p for p in parameters if p["name"] == "group_by")
    assert {"mode", "payee_kind"} <= set(group_by["schema"]["enum"])


def test_the_export_names_mode_and_payee_and_its_total_equals_the_ledger(mixed):
    with force_locale("en"):
        text = subsidy_exports.csv_text(MONTH, MONTH)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[-3:] == ["Redemption mode", "Payee kind", "Payee"] and len(total) == len(header)
    assert len(body) == 5
    by_claim = {int(row[0]): row for row in body}
    p1_row = by_claim[mixed["at_payment"][0]]
    assert p1_row[-3:] == ["At payment", "Provider", "聊城大学分析测试中心"]
    e_row = by_claim[mixed["reimbursed"][0]]
    assert e_row[-3:] == ["Reimbursement", "Enterprise", e_row[2]]
    assert Decimal(total[8]) * 100 == finance.ledger_committed(MONTH)
    for mode, label in (("at_payment", "At payment"), ("reimbursement", "Reimbursement")):
        share = sum(Decimal(row[8]) for row in body if row[-3] == label) * 100
        assert share == finance.ledger_committed(MONTH, mode=mode)

    buffer = io.BytesIO()
    with force_locale("en"):
        _rows, fen = subsidy_exports.write_xlsx(buffer, MONTH, MONTH)
    sheet = list(load_workbook(io.BytesIO(buffer.getvalue())).active.iter_rows(values_only=True))
    assert fen == finance.ledger_committed(MONTH) and round(Decimal(str(sheet[-1][8])) * 100) == fen
    assert sorted(row[-2] for row in sheet[1:-1]) == ["Enterprise"] * 2 + ["Provider"] * 3


def test_the_totals_page_splits_by_mode_and_payee(client, mixed):
    login(client, mixed["clerk"].username)
    page = client.get(f"/finance/?month_from={MONTH}&month_to={MONTH}&group_by=payee_kind")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="by-mode"' in html
    assert 'data-mode="at_payment" data-payee-kind="provider"' in html
    assert html.count('data-reconciled="yes"') == 2 and 'data-reconciled="no"' not in html
    at_payment = by_mode_from_claims()["at_payment"]
    assert f"{at_payment / 100:,.2f}" in html
    assert 'value="mode"' in html and 'value="payee_kind" selected' in html
