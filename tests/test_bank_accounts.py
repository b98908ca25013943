"""Bank accounts: the holder enters them, a reviewer verifies them, every version and mail is kept, and
money only goes to a verified account, written into the bank file as text that survives a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts.models import BankAccount, BankAccountState
from portal.core.errors import Forbidden, InvalidTransition, ValidationFailed
from portal.core.exports import FORMULA_PREFIXES
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance import exports as subsidy_exports
from portal.finance.models import DisbursementBatch
from portal.notifications.models import Notification
from portal.vouchers import claims as claim_services
from portal.vouchers import notice
from portal.vouchers import review as desk
from portal.vouchers.models import Claim, ClaimState
from tests.factories import extract_csrf, login
from tests.test_notifications import mails

State = BankAccountState
ICBC = "中国工商银行聊城东昌支行"
# Nineteen digits with a leading zero: a spreadsheet that reads it as a number loses both ends.
NUMBER = "0160 9012 3456 7890 123"
DIGITS = NUMBER.replace(" ", "")
MONTH = "2026-12"


@pytest.fixture
def mailbox(app, tmp_path) -> Path:
    """Mail is written as files here (there is no MAIL_SERVER in the tests)."""
    app.config["MAIL_FILE_FOLDER"] = str(tmp_path / "mail")
    return tmp_path / "mail"


@pytest.fixture
def company(make_user):
    """An enterprise with its holder and a colleague (staff), and a reviewer."""
    holder = make_user(Role.ENTERPRISE)
    staff = make_user(Role.ENTERPRISE, enterprise=holder.enterprise, is_holder=False)
    return {"holder": holder, "staff": staff, "reviewer": make_user(Role.REVIEWER)}


def enter(user, name=None, bank=ICBC, number=NUMBER) -> BankAccount:
    return banking.record_bank_account(
        user, banking.BankAccountData(name if name is not None else user.enterprise.name, bank, number)
    )


def actions(object_id: int) -> list[str]:
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.object_type == "bank_account", AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.id)
        )
    )


def notes(kind: str) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.kind == kind)))


# --- entering and verifying ------------------------------------------------------------------------


def test_an_entered_account_waits_for_a_reviewer_and_everyone_is_told(company, mailbox):
    holder, staff = company["holder"], company["staff"]
    account = enter(holder)
    assert (account.state, account.version, account.account_number) == (State.PENDING, 1, DIGITS)
    assert banking.verified_account(holder.enterprise_id) is None  # not in effect yet
    assert actions(account.id) == ["bank_account.submitted"]
    told = notes("bank_account.submitted")
    assert {n.recipient_id for n in told} == {holder.id, staff.id}
    # The mail names the account by its last digits only: a mailbox is not a vault.
    sent = {m["To"]: m for m in mails(mailbox)}
    assert set(sent) == {holder.email, staff.email}
    body = sent[staff.email].get_content()
    assert "0123" in sent[staff.email]["Subject"] and ICBC in body
    assert DIGITS not in body and DIGITS not in str(told[0].payload)


def test_verifying_puts_it_in_effect_and_keeps_every_version(company, mailbox):
    holder, reviewer = company["holder"], company["reviewer"]
    first = enter(holder)
    banking.decide_bank_account(reviewer, first.id, "verify")
    assert banking.verified_account(holder.enterprise_id).id == first.id

    change = enter(holder, bank="中国建设银行聊城分行", number="6217 0022 1100 0000 017")
    # The old account stays where the money goes until the change is verified.
    assert banking.verified_account(holder.enterprise_id).id == first.id
    banking.decide_bank_account(reviewer, change.id, "verify")
    db.session.rollback()
    history = banking.versions(holder.enterprise_id)
    assert [(v.version, v.state) for v in history] == [(2, State.VERIFIED), (1, State.SUPERSEDED)]
    assert history[0].decided_by_id == reviewer.id and history[0].entered_by_id == holder.id
    assert history[1].ended_at is not None
    assert actions(first.id) == ["bank_account.submitted", "bank_account.verified", "bank_account.superseded"]
    assert actions(change.id) == ["bank_account.submitted", "bank_account.verified"]
    assert len(notes("bank_account.verified")) == 2 * 2  # two decisions, two users each
    verified_mail = [
        m for m in mails(mailbox) if "0017" in m["Subject"] and m["To"] == company["staff"].email
    ]
    assert len(verified_mail) == 2  # entered, then verified


def test_a_rejection_needs_a_reason_and_leaves_the_account_in_effect(company):
    holder, reviewer = company["holder"], company["reviewer"]
    first = enter(holder)
    banking.decide_bank_account(reviewer, first.id, "verify")
    change = enter(holder, number="6222 0000 1111 2222 333")
    with pytest.raises(ValidationFailed) as error:
        banking.decide_bank_account(reviewer, change.id, "reject", "  ")
    assert "reason" in error.value.fields
    banking.decide_bank_account(reviewer, change.id, "reject", "开户许可证上的账号与填写不一致")
    db.session.rollback()
    assert db.session.get(BankAccount, change.id).state is State.REJECTED
    assert banking.verified_account(holder.enterprise_id).id == first.id
    rejected = notes("bank_account.rejected")
    assert rejected and all(n.payload["reason"] == "开户许可证上的账号与填写不一致" for n in rejected)
    with pytest.raises(InvalidTransition):
        banking.decide_bank_account(reviewer, change.id, "verify")  # decided is decided


def test_a_newer_entry_replaces_the_one_waiting(company):
    holder = company["holder"]
    waiting = enter(holder)
    newer = enter(holder, number="6222 0000 1111 2222 444")
    db.session.rollback()
    assert db.session.get(BankAccount, waiting.id).state is State.WITHDRAWN
    assert (newer.state, newer.version) == (State.PENDING, 2)
    assert actions(waiting.id)[-1] == "bank_account.withdrawn"
    with pytest.raises(ValidationFailed):
        enter(holder, number="6222 0000 1111 2222 444")  # the very same entry again


def test_an_account_in_another_name_is_verified_only_with_a_reason(company):
    holder, reviewer = company["holder"], company["reviewer"]
    account = enter(holder, name="张三")
    with pytest.raises(ValidationFailed) as error:
        banking.decide_bank_account(reviewer, account.id, "verify")
    assert "reason" in error.value.fields
    banking.decide_bank_account(reviewer, account.id, "verify", "个体工商户：经营者本人账户，已核对营业执照")
    assert db.session.get(BankAccount, account.id).reason.startswith("个体工商户")


def test_a_staff_user_who_is_not_the_holder_cannot_change_the_account(company):
    with pytest.raises(Forbidden) as error:
        enter(company["staff"])
    assert company["holder"].full_name in error.value.message  # says whom to ask
    assert db.session.scalar(select(sa.func.count()).select_from(BankAccount)) == 0


@pytest.mark.parametrize("role", [Role.ENTERPRISE, Role.PROVIDER, Role.FINANCE])
def test_only_reviewers_decide(company, make_user, role):
    account = enter(company["holder"])
    with pytest.raises(Forbidden):
        banking.decide_bank_account(make_user(role), account.id, "verify")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("account_number", "6222-0000-1111-2222"),
        ("account_number", "6222 abcd 1111"),
        ("account_number", "1234567"),  # too short
        ("account_number", "1" * 33),  # too long
        ("account_number", ""),
        ("account_name", " "),
        ("bank_name", "工行"),
        ("bank_name", "银" * 101),
    ],
)
def test_bad_entries_are_refused_field_by_field(company, field, value):
    data = {"name": None, "bank": ICBC, "number": NUMBER}
    data[{"account_number": "number", "account_name": "name", "bank_name": "bank"}[field]] = value
    with pytest.raises(ValidationFailed) as error:
        enter(company["holder"], **data)
    assert field in error.value.fields


def test_full_width_digits_and_spaces_are_read_as_the_digits_they_are(company):
    account = enter(company["holder"], number="０１６０　９０１２ 3456 7890 123")
    assert account.account_number == DIGITS


def test_the_database_allows_one_waiting_and_one_verified_version(company, make_bank_account):
    holder = company["holder"]
    make_bank_account(holder)
    with pytest.raises(sa.exc.IntegrityError):
        make_bank_account(holder)
    db.session.rollback()
    make_bank_account(holder, state=State.PENDING)
    with pytest.raises(sa.exc.IntegrityError):
        make_bank_account(holder, state=State.PENDING)
    db.session.rollback()


# --- pages ------------------------------------------------------------------------------------------


def test_the_holder_enters_the_account_on_the_voucher_page_and_a_reviewer_verifies_it(client, company):
    holder, reviewer = company["holder"], company["reviewer"]
    login(client, holder.username)
    page = client.get("/vouchers/bank-account").get_data(as_text=True)
    assert 'id="bank-form"' in page and holder.enterprise.name in page  # the name is suggested
    token = extract_csrf(page)
    bad = client.post(
        "/vouchers/bank-account",
        data={"csrf_token": token, "account_name": "某某", "bank_name": ICBC, "account_number": "62x2"},
    )
    html = bad.get_data(as_text=True)
    assert bad.status_code == 200 and "is-invalid" in html
    assert 'value="62x2"' in html and f'value="{ICBC}"' in html  # what was typed is kept
    done = client.post(
        "/vouchers/bank-account",
        data={
            "csrf_token": token,
            "account_name": holder.enterprise.name,
            "bank_name": ICBC,
            "account_number": NUMBER,
        },
    )
    assert done.status_code == 302
    assert 'id="bank-pending"' in client.get("/vouchers/bank-account").get_data(as_text=True)
    assert "bank-card" in client.get("/vouchers/").get_data(as_text=True)

    desk = client.application.test_client()
    login(desk, reviewer.username)
    queue = desk.get("/review/?kind=bank_account").get_data(as_text=True)
    account_id = int(re.search(r'href="/review/bank-accounts/(\d+)"', queue).group(1))
    detail = desk.get(f"/review/bank-accounts/{account_id}").get_data(as_text=True)
    assert "0160 9012 3456 7890 123" in detail and "data-confirm=" in detail
    assert 'id="name-mismatch"' not in detail
    verified = desk.post(
        f"/review/bank-accounts/{account_id}", data={"csrf_token": extract_csrf(detail), "verify": "1"}
    )
    assert verified.status_code == 302 and "kind=bank_account" in verified.location
    assert banking.verified_account(holder.enterprise_id).id == account_id
    after = desk.get(f"/review/bank-accounts/{account_id}").get_data(as_text=True)
    assert 'id="verify-bank-account"' not in after  # decided: no more buttons


def test_a_colleague_sees_the_account_but_not_the_form(client, company, make_bank_account):
    make_bank_account(company["holder"])
    login(client, company["staff"].username)
    page = client.get("/vouchers/bank-account").get_data(as_text=True)
    assert 'id="holder-only"' in page and 'id="bank-form"' not in page
    assert company["holder"].full_name in page and "中国工商银行聊城分行" in page
    refused = client.post(
        "/vouchers/bank-account",
        data={
            "csrf_token": extract_csrf(page),
            "account_name": "别人的户名",
            "bank_name": ICBC,
            "account_number": NUMBER,
        },
    )
    assert refused.status_code == 200 and company["holder"].full_name in refused.get_data(as_text=True)
    assert db.session.scalar(select(sa.func.count()).select_from(BankAccount)) == 1


# --- batches: no verified account, no payment ------------------------------------------------------


@pytest.fixture
def payable(fake_clock, make_scheme, make_user, make_voucher, make_service):
    """Payable claims through the real services; the enterprises have no bank account yet."""
    scheme = make_scheme()
    reviewer = make_user(Role.REVIEWER)

    def make(name: str, fee_fen: int = 10_000_00):
        user = make_user(Role.ENTERPRISE)
        user.enterprise.name = name
        db.session.commit()
        claim = claim_services.create_claim(
            user, make_voucher(user, scheme).id, [make_service(user, fee_fen).id]
        )
        claim_services.submit_claim(user, claim.id)
        desk.approve_claim(reviewer, claim.id)
        return user, claim.id

    def finish_notice() -> None:
        fake_clock.advance(days=10)
        notice.end_public_notice()
        fake_clock.advance(days=-10)

    make.finish_notice = finish_notice
    return make


def test_a_payee_without_a_verified_account_is_refused_by_name(payable, make_user, make_bank_account):
    clerk = make_user(Role.FINANCE)
    ready, ready_claim = payable("聊城有账户科技有限公司")
    waiting, waiting_claim = payable("聊城无账户科技有限公司")
    make_bank_account(ready)
    make_bank_account(waiting, state=State.PENDING)  # entered, not verified: not enough
    payable.finish_notice()

    batch = batches.build_batch(clerk, MONTH)
    assert batch.claims == 1 and batch.total_fen == db.session.get(Claim, ready_claim).total_fen
    assert [(p["name"], p["claims"]) for p in batch.held_back] == [
        ("聊城无账户科技有限公司", [waiting_claim])
    ]
    held = db.session.get(Claim, waiting_claim)
    assert held.state is ClaimState.PAYABLE and held.batch_id is None  # waits for the next batch
    told = notes("bank_account.missing")
    assert [n.recipient_id for n in told] == [waiting.id] and "聊城无账户" in told[0].payload["enterprise"]
    built = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "batch.built"))
    assert built.after["held_back"] == [waiting.enterprise_id]

    # With nobody left who can be paid, the batch is refused outright, naming the payee.
    with pytest.raises(InvalidTransition, match="聊城无账户科技有限公司") as error:
        batches.build_batch(clerk, MONTH)
    assert error.value.details["held_back"][0]["claims"] == [waiting_claim]
    assert db.session.scalar(select(sa.func.count()).select_from(DisbursementBatch)) == 1


def test_the_batch_pages_name_the_payees_held_back(client, payable, make_user, make_bank_account):
    clerk = make_user(Role.FINANCE)
    ready, _claim = payable("聊城有账户科技有限公司")
    payable("聊城无账户科技有限公司")
    make_bank_account(ready)
    payable.finish_notice()
    login(client, clerk.username)
    page = client.get("/finance/batches").get_data(as_text=True)
    assert 'id="without-account"' in page and "聊城无账户科技有限公司" in page
    assert "data-confirm=" in page  # closing a month asks first
    built = client.post(
        "/finance/batches",
        data={"csrf_token": extract_csrf(page), "batch-month": MONTH, "batch-submit": "1"},
        follow_redirects=True,
    )
    html = built.get_data(as_text=True)
    assert 'id="held-back"' in html and "聊城无账户科技有限公司" in html and "alert-warning" in html


# --- the bank file: text cells that survive Excel and LibreOffice ----------------------------------


@pytest.fixture
def exported_batch(payable, make_user, make_bank_account):
    """A batch of two payees: one with an all-digit credit code and a leading-zero account number."""
    clerk = make_user(Role.FINANCE)
    first, _c = payable('=HYPERLINK("http://evil","点我")')
    second, _c = payable("聊城数码科技有限公司", fee_fen=3_333_33)
    first.enterprise.uscc = "913715001234567890"  # all digits: 9.13715E+17 in a careless sheet
    second.enterprise.uscc = "91371500123456E789"  # digits and an E: scientific notation
    db.session.commit()
    make_bank_account(first, account_number=DIGITS, account_name="@某公司")
    make_bank_account(second, account_number="6217002211000000017")
    payable.finish_notice()
    batch = batches.build_batch(clerk, MONTH)
    return {"clerk": clerk, "batch": batch, "first": first, "second": second}


def soffice() -> str:
    path = shutil.which("libreoffice") or shutil.which("soffice")
    if path is None:
        from tests.conftest import service_missing

        service_missing("LibreOffice")
    return path


def through_libreoffice(path: Path, tmp_path: Path, *infilter: str) -> list[list]:
    """Open the file in LibreOffice headless as a user would, save it as XLSX, read back each cell as
    (value, type): what LibreOffice made of it."""
    out = tmp_path / "out"
    subprocess.run(
        [
            soffice(),
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--headless",
            *infilter,
            "--convert-to",
            "xlsx:Calc MS Excel 2007 XML",
            "--outdir",
            str(out),
            str(path),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    sheet = load_workbook(out / f"{path.stem}.xlsx").active
    return [[(cell.value, cell.data_type) for cell in row] for row in sheet.iter_rows()]


def test_the_bank_file_carries_the_accounts_as_text(exported_batch):
    clerk, batch = exported_batch["clerk"], exported_batch["batch"]
    text = batches.export_batch(clerk, batch.id, "csv")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    header, body, total = rows[0], rows[1:-1], rows[-1]
    assert header[2:5] == ["户名", "开户行", "账号"]
    assert all(not cell.startswith(FORMULA_PREFIXES) for row in rows for cell in row)
    by_code = {row[1].rstrip("\t"): row for row in body}
    first = by_code["913715001234567890"]
    assert first[0].startswith("'=HYPERLINK") and first[2] == "'@某公司"
    assert first[4] == DIGITS + "\t" and first[1] == "913715001234567890\t"
    assert by_code["91371500123456E789"][4] == "6217002211000000017\t"
    assert total[5] == f"{batch.total_fen / 100:.2f}"
    exported = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "batch.exported"))
    accounts = banking.verified_accounts([exported_batch["first"].enterprise_id])
    assert (
        exported.after["accounts"][str(exported_batch["first"].enterprise_id)]
        == next(iter(accounts.values())).id
    )

    data = batches.export_batch(clerk, batch.id, "xlsx")
    sheet = load_workbook(io.BytesIO(data)).active
    cells = {row[1].value: row for row in sheet.iter_rows(min_row=2) if row[1].value}
    row = cells["913715001234567890"]
    assert (row[4].value, row[4].data_type, row[4].number_format) == (DIGITS, "s", "@")
    assert (row[1].data_type, row[1].number_format) == ("s", "@")
    assert isinstance(row[5].value, int | float) and row[5].number_format == "#,##0.00"
    assert all(cell.data_type != "f" for r in sheet.iter_rows() for cell in r)


def test_libreoffice_reads_account_numbers_and_credit_codes_as_text(exported_batch, tmp_path):
    clerk, batch = exported_batch["clerk"], exported_batch["batch"]
    (tmp_path / "batch.xlsx").write_bytes(batches.export_batch(clerk, batch.id, "xlsx"))
    (tmp_path / "batch.csv").write_text(batches.export_batch(clerk, batch.id, "csv"), encoding="utf-8")
    for name, infilter in (("batch.xlsx", ()), ("batch.csv", ("--infilter=CSV:44,34,76",))):
        rows = through_libreoffice(tmp_path / name, tmp_path / name.replace(".", "-"), *infilter)
        body = rows[1:-1]
        assert len(body) == 2, name
        codes = {row[1][0].strip(): row for row in body}
        assert set(codes) == {"913715001234567890", "91371500123456E789"}, name
        first = codes["913715001234567890"]
        # Text, every digit, the leading zero: not 1.60901234567891E+17.
        assert first[1][1] == "s" and first[4][1] == "s", (name, first)
        assert first[4][0].strip() == DIGITS, (name, first)
        assert codes["91371500123456E789"][1][1] == "s", name
        assert codes["91371500123456E789"][4][0].strip() == "6217002211000000017", name
        assert first[5][1] == "n", name  # the amount stays a number
        assert round(rows[-1][5][0] * 100) == batch.total_fen, name


def test_the_subsidy_export_keeps_credit_codes_as_text(exported_batch):
    text = subsidy_exports.csv_text(MONTH, MONTH)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert "913715001234567890\t" in [row[3] for row in rows]
    buffer = io.BytesIO()
    subsidy_exports.write_xlsx(buffer, MONTH, MONTH)
    sheet = load_workbook(io.BytesIO(buffer.getvalue())).active
    codes = [row[3] for row in sheet.iter_rows(min_row=2) if row[3].value]
    assert all(c.data_type == "s" and c.number_format == "@" for c in codes)


def test_finance_downloads_the_bank_file_in_either_format(client, exported_batch):
    login(client, exported_batch["clerk"].username)
    url = f"/finance/batches/{exported_batch['batch'].id}"
    token = extract_csrf(client.get(url).get_data(as_text=True))
    xlsx = client.post(url, data={"csrf_token": token, "export-xlsx": "1"})
    assert xlsx.status_code == 200 and xlsx.mimetype.endswith("spreadsheetml.sheet")
    assert load_workbook(io.BytesIO(xlsx.data)).active["E1"].value == "账号"
    csv_file = client.post(url, data={"csrf_token": token, "export-submit": "1"})
    assert csv_file.mimetype == "text/csv" and DIGITS + "\t" in csv_file.get_data(as_text=True)
    page = client.get(url).get_data(as_text=True)
    assert "0160 9012 3456 7890 123" in page  # the account each payment goes to
    paid_form = re.search(r'<form[^>]*id="paid-form".*?</form>', page, re.S).group(0)
    assert "data-confirm=" in paid_form  # marking paid asks first


def test_no_bank_file_for_a_payee_whose_account_is_gone(exported_batch):
    # No service takes a verified account away; a row changed underneath (by hand, by a bad migration)
    # must still not send money to an account nobody verified.
    account = banking.verified_account(exported_batch["second"].enterprise_id)
    account.state = State.SUPERSEDED
    db.session.commit()
    with pytest.raises(InvalidTransition, match="聊城数码科技有限公司"):
        batches.export_batch(exported_batch["clerk"], exported_batch["batch"].id, "xlsx")
