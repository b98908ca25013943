"""Finance: tallies equal the claims, exports are formula-safe and reconcile, batches pay, months close."""

from __future__ import annotations

import csv
import io
import random
import shutil
import subprocess
import threading
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from flask_babel import force_locale
from openpyxl import load_workbook
from sqlalchemy import func, select, update

from portal.accounts import banking
from portal.accounts.models import BankAccountState, Enterprise
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.exports import FORMULA_PREFIXES
from portal.core.models import AuditEvent
from portal.core.money import fen_to_yuan, format_yuan
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance import exports as subsidy_exports
from portal.finance import services as finance
from portal.finance.models import BatchState, ExportJob, ExportState, SubsidyTally
from portal.notifications.models import Notification
from portal.vouchers import claims as claim_services
from portal.vouchers import notice, review
from portal.vouchers.models import Claim, ClaimState, Fund, LedgerEntry, LedgerKind
from tests.conftest import make_app
from tests.factories import extract_csrf, login

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

MONTH = "2026-12"  # the fake clock's month


def tally_rows(month: str) -> list[tuple]:
    return sorted(
        db.session.execute(
            select(
                SubsidyTally.fund,
                SubsidyTally.enterprise_id,
                SubsidyTally.institution_id,
                SubsidyTally.county,
                SubsidyTally.approved_fen,
                SubsidyTally.paid_fen,
                SubsidyTally.claims,
            ).where(SubsidyTally.month == month)
        ).all()
    )


@pytest.fixture
def approved(fake_clock, make_scheme, make_user, make_voucher, make_service, make_bank_account):
    """Approve claims through the real services; returns a function making one more. The enterprise
    has a verified bank account unless `bank_account=False`."""
    scheme = make_scheme()
    reviewer = make_user(Role.REVIEWER)

    def approve(user=None, fee_fen=10_000_00, name=None, bank_account=True):
        user = user or make_user(Role.ENTERPRISE)
        if name:
            user.enterprise.name = name
            db.session.commit()
        if bank_account:
            make_bank_account(user)
        voucher = make_voucher(user, scheme)
        record = make_service(user, fee_fen)
        claim = claim_services.create_claim(user, voucher.id, [record.id])
        claim_services.submit_claim(user, claim.id)
        return review.approve_claim(reviewer, claim.id)

    return approve


# --- tallies ------------------------------------------------------------------------------------


@pytest.fixture
def random_claims(app, make_scheme, make_user, make_voucher, make_institution):
    """Claims in every state, month, county, provider and fund mix, written directly (the tally's input)."""
    rng = random.Random(20261124)
    scheme = make_scheme()
    counties = ["东昌府区", "临清市", "茌平区", "阳谷县"]
    users = []
    for n in range(6):
        user = make_user(Role.ENTERPRISE)
        user.enterprise.county = counties[n % len(counties)]
        users.append((user, make_voucher(user, scheme)))
    institutions = [make_institution() for _ in range(3)]
    months = ["2026-10", "2026-11", "2026-12"]
    claims = []
    for _ in range(120):
        user, voucher = rng.choice(users)
        state = rng.choice(list(ClaimState))
        committed = state in (ClaimState.IN_NOTICE, ClaimState.PAYABLE, ClaimState.PAID)
        claim = Claim(
            voucher_id=voucher.id,
            enterprise_id=user.enterprise_id,
            institution_id=rng.choice(institutions).id,
            state=state,
            fee_fen=rng.randrange(1, 10**8),
            limited_by=[],
            checks=[],
            created_by_id=user.id,
            approved_month=rng.choice(months) if committed or rng.random() < 0.2 else None,
            paid_month=rng.choice(months) if state is ClaimState.PAID else None,
        )
        province, city = rng.randrange(0, 10**7), rng.choice((0, rng.randrange(1, 10**7)))
        claim.set_amounts([("province", province, province), ("city", city + 1, city)])
        claims.append(claim)
    db.session.add_all(claims)
    db.session.commit()
    return months


def direct_sums(month: str) -> list[tuple]:
    """The same figures summed in Python, claim by claim."""
    sums: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    committed = (ClaimState.IN_NOTICE, ClaimState.PAYABLE, ClaimState.PAID)
    for claim in db.session.scalars(select(Claim)):
        county = db.session.get(Enterprise, claim.enterprise_id).county
        for fund, amount in claim.fund_amounts().items():
            if amount <= 0:
                continue
            key = (fund, claim.enterprise_id, claim.institution_id, county)
            if claim.approved_month == month and claim.state in committed:
                sums[key][0] += amount
                sums[key][2] += 1
            if claim.paid_month == month and claim.state is ClaimState.PAID:
                sums[key][1] += amount
    return sorted((*key, *values) for key, values in sums.items())


def test_tallies_equal_a_direct_sum_over_the_claims(random_claims):
    for month in random_claims:
        finance.tally_month(month)
        expected = direct_sums(month)
        assert expected, "the random data should give every month something to tally"
        assert tally_rows(month) == expected


def test_running_the_tally_twice_gives_identical_rows(random_claims):
    month = random_claims[1]
    finance.tally_month(month)
    first = tally_rows(month)
    assert finance.tally_month(month) == len(first)
    assert tally_rows(month) == first


def test_parallel_tallies_give_the_same_rows_as_one(random_claims, database_url):
    month = random_claims[2]
    finance.tally_month(month)
    expected = tally_rows(month)
    db.session.execute(SubsidyTally.__table__.delete())
    db.session.commit()
    other = make_app(database_url)
    barrier, errors = threading.Barrier(4), []

    def run() -> None:
        with other.app_context():
            barrier.wait()
            try:
                finance.tally_month(month)
            except Exception as error:
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with other.app_context():
        db.engine.dispose()
    assert errors == []
    db.session.rollback()
    assert tally_rows(month) == expected


def test_an_approval_updates_the_month_tally(approved):
    claim = approved()
    db.session.rollback()
    rows = tally_rows(MONTH)
    assert sum(r[4] for r in rows) == claim.total_fen
    assert claim.approved_month == MONTH and claim.institution_id is not None


def test_totals_by_each_grouping_add_up_to_the_ledger(approved, make_user):
    approved()
    approved(fee_fen=7_000_00)
    approved(fee_fen=3_333_33)
    db.session.rollback()
    ledger = finance.ledger_committed(MONTH)
    assert ledger == sum(c.total_fen for c in db.session.scalars(select(Claim)))
    for group in finance.GROUPS:
        result = finance.totals(MONTH, MONTH, group)
        assert result.approved_fen == ledger
        assert sum(r.approved_fen for r in result.rows) == ledger


# --- exports ------------------------------------------------------------------------------------

HOSTILE = '=HYPERLINK("http://evil","点我")'


def test_csv_export_has_a_bom_neutralised_cells_and_a_total_equal_to_the_ledger(approved):
    approved(name=HOSTILE)
    approved(name="+86 聊城", fee_fen=1_234_56)
    text = subsidy_exports.csv_text(MONTH, MONTH)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    body, total = rows[1:-1], rows[-1]
    assert len(body) == 2
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_PREFIXES), cell
    assert any(row[2] == "'" + HOSTILE for row in body)
    ledger = finance.ledger_committed(MONTH)
    assert Decimal(total[8]) * 100 == ledger
    assert sum(Decimal(row[8]) for row in body) * 100 == ledger


def test_the_count_of_an_exports_rows_is_the_number_of_rows_it_exports(random_claims):
    # An approved claim without a provider is not exported (the export names the provider), nor counted:
    # the count reads the claims alone, not through the export's joins.
    claim = db.session.scalars(select(Claim).where(Claim.state == ClaimState.PAID)).first()
    claim.institution_id = None
    db.session.commit()
    months = random_claims
    for month_from, month_to in ((months[0], months[0]), (months[0], months[2]), (months[1], months[2])):
        text = subsidy_exports.csv_text(month_from, month_to)
        exported = len(list(csv.reader(io.StringIO(text[1:])))) - 2  # the headers and the totals row
        assert subsidy_exports.count_export_rows(month_from, month_to) == exported > 0
    everything = subsidy_exports.count_export_rows(months[0], months[2])
    claim.institution_id = db.session.scalars(
        select(Claim.institution_id).where(Claim.id != claim.id)
    ).first()
    db.session.commit()
    assert subsidy_exports.count_export_rows(months[0], months[2]) == everything + 1


def test_the_totals_page_counts_the_export_for_finance_only(client, approved, make_user):
    approved()
    approved(fee_fen=5_000_00)
    login(client, make_user(Role.FINANCE).username)
    page = client.get(f"/finance/?month_from={MONTH}&month_to={MONTH}").get_data(as_text=True)
    assert 'id="export-csv"' in page and "已批准申领 2 笔" in page  # 2 approved claims
    reviewer = client.application.test_client()
    login(reviewer, make_user(Role.REVIEWER).username)
    page = reviewer.get(f"/finance/?month_from={MONTH}&month_to={MONTH}").get_data(as_text=True)
    assert 'id="totals"' in page and 'id="export-csv"' not in page


def xlsx_of(month: str) -> tuple[bytes, int]:
    buffer = io.BytesIO()
    _rows, total = subsidy_exports.write_xlsx(buffer, month, month)
    return buffer.getvalue(), total


def test_xlsx_export_has_no_formula_cells_and_its_totals_match(approved):
    approved(name=HOSTILE)
    approved(name="@SUM(A1:A9)", fee_fen=2_000_01)
    approved(name="-1+2", fee_fen=777_77)
    data, total = xlsx_of(MONTH)
    sheet = load_workbook(io.BytesIO(data)).active
    rows = list(sheet.iter_rows())
    for row in rows:
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
            assert not (isinstance(cell.value, str) and cell.value.startswith(FORMULA_PREFIXES))
    body, totals = rows[1:-1], rows[-1]
    assert len(body) == 3
    amounts = [row[8].value for row in body]
    assert all(isinstance(a, int | float) for a in amounts)  # numbers, not text
    assert body[0][8].number_format == "#,##0.00"
    ledger = finance.ledger_committed(MONTH)
    assert total == ledger
    assert round(sum(Decimal(str(a)) for a in amounts) * 100) == ledger
    assert round(Decimal(str(totals[8].value)) * 100) == ledger


def test_the_xlsx_opens_in_libreoffice_with_the_same_numbers(approved, tmp_path):
    soffice = shutil.which("libreoffice") or shutil.which("soffice")
    if soffice is None:
        from tests.conftest import service_missing

        service_missing("LibreOffice")
    approved(name=HOSTILE)
    approved(fee_fen=4_321_09)
    data, total = xlsx_of(MONTH)
    (tmp_path / "subsidies.xlsx").write_bytes(data)
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76",
            "--outdir",
            str(tmp_path),
            str(tmp_path / "subsidies.xlsx"),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    rows = list(csv.reader((tmp_path / "subsidies.csv").read_text(encoding="utf-8").splitlines()))
    body, totals = rows[1:-1], rows[-1]
    assert len(body) == 2
    assert any(row[2] == "'" + HOSTILE or row[2] == HOSTILE.lstrip("=") or HOSTILE in row[2] for row in body)

    def fen(text: str) -> int:
        return int(Decimal(text.replace(",", "")) * 100)

    assert sum(fen(row[8]) for row in body) == total
    assert fen(totals[8]) == total == finance.ledger_committed(MONTH)


def test_large_exports_run_as_a_job_with_progress_and_a_download(
    database_url, fake_clock, approved, make_user, tmp_path
):
    approved()
    approved(fee_fen=5_000_00)
    clerk, other = make_user(Role.FINANCE), make_user(Role.FINANCE)
    app = make_app(database_url, EXPORT_ASYNC_ROWS=1, UPLOAD_FOLDER=str(tmp_path / "uploads"))
    client = app.test_client()
    login(client, clerk.username)
    response = client.get(f"/finance/export.csv?month_from={MONTH}&month_to={MONTH}")
    assert response.status_code == 302 and "/finance/exports/" in response.location
    page = client.get(response.location)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="export-download"' in html and 'value="2"' in html
    job_id = int(response.location.rstrip("/").split("/")[-1])
    download = client.get(f"/finance/exports/{job_id}/download")
    assert download.status_code == 200
    text = download.get_data().decode("utf-8")
    assert text.startswith("\ufeff") and len(list(csv.reader(io.StringIO(text)))) == 4
    intruder = app.test_client()
    login(intruder, other.username)
    assert intruder.get(f"/finance/exports/{job_id}").status_code == 404
    assert intruder.get(f"/finance/exports/{job_id}/download").status_code == 404
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_export_job_saves_its_progress_while_it_reads_the_claims_in_batches(
    database_url, fake_clock, approved, make_user, tmp_path, monkeypatch, fmt
):
    """The job's progress is saved between two batches of the claims' cursor (a million claims are
    read 2,000 at a time): saving it must not end the transaction the cursor lives in."""
    for fee in (1_000_00, 2_000_00, 3_000_00, 4_000_00, 5_000_00):
        approved(fee_fen=fee)
    monkeypatch.setattr(subsidy_exports, "EXPORT_BATCH_ROWS", 2)
    monkeypatch.setattr(subsidy_exports, "PROGRESS_ROWS", 1)
    clerk = make_user(Role.FINANCE)
    app = make_app(database_url, EXPORT_ASYNC_ROWS=1, UPLOAD_FOLDER=str(tmp_path / "uploads"))
    client = app.test_client()
    login(client, clerk.username)
    response = client.get(f"/finance/export.{fmt}?month_from={MONTH}&month_to={MONTH}")
    assert response.status_code == 302
    job_id = int(response.location.rstrip("/").split("/")[-1])
    with app.app_context():
        job = db.session.get_one(ExportJob, job_id)
        assert (job.state, job.done_rows, job.error) == (ExportState.DONE, 5, None)
        data = (Path(app.config["UPLOAD_FOLDER"]) / job.stored_name).read_bytes()
        db.engine.dispose()
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    else:
        rows = [list(r) for r in load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True)]
    assert len(rows) == 1 + 5 + 1
    assert round(Decimal(str(rows[-1][8])) * 100) == finance.ledger_committed(MONTH)


# --- batches and closed months ------------------------------------------------------------------


@pytest.fixture
def payable(approved, fake_clock):
    claims = [approved(name=HOSTILE), approved(fee_fen=2_000_00)]
    fake_clock.advance(days=10)
    assert notice.end_public_notice() == 2
    return [c.id for c in claims]


def test_a_batch_is_built_exported_and_paid_and_the_enterprises_hear(payable, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    month = finance.month_of(fake_clock())
    batch = batches.build_batch(clerk, month)
    claims = [db.session.get(Claim, i) for i in payable]
    assert batch.claims == 2 and batch.total_fen == sum(c.total_fen for c in claims)
    with pytest.raises(InvalidTransition):
        batches.build_batch(clerk, month)  # nothing is left waiting
    with pytest.raises(InvalidTransition):
        batches.mark_batch_paid(clerk, batch.id, "BANK-1")  # not exported yet

    text = batches.export_batch(clerk, batch.id)
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert all(not cell.startswith(FORMULA_PREFIXES) for row in rows for cell in row)
    assert Decimal(rows[-1][5]) * 100 == batch.total_fen
    with pytest.raises(ValidationFailed):
        batches.mark_batch_paid(clerk, batch.id, "  ")

    funds_before = {f.name: f.paid_fen for f in db.session.scalars(select(Fund))}
    batches.mark_batch_paid(clerk, batch.id, "ICBC-20261217-001")
    db.session.rollback()
    assert db.session.get(type(batch), batch.id).state is BatchState.PAID
    for claim_id in payable:
        claim = db.session.get(Claim, claim_id)
        assert claim.state is ClaimState.PAID and claim.paid_month == finance.month_of(fake_clock())
        assert (
            db.session.scalar(
                select(func.count()).where(
                    LedgerEntry.claim_id == claim_id, LedgerEntry.kind == LedgerKind.PAID
                )
            )
            == 1
        )
        notes = db.session.scalars(select(Notification).where(Notification.kind == "claim.paid")).all()
        assert any(
            n.payload["claim"] == claim_id and n.payload["reference"] == "ICBC-20261217-001" for n in notes
        )
    funds_after = {f.name: f.paid_fen for f in db.session.scalars(select(Fund))}
    paid = sum(db.session.get(Claim, i).total_fen for i in payable)
    assert sum(funds_after.values()) - sum(funds_before.values()) == paid
    assert sum(r[5] for r in tally_rows(finance.month_of(fake_clock()))) == paid
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"batch.built", "batch.exported", "batch.paid", "claim.paid"} <= actions
    with pytest.raises(InvalidTransition):
        batches.mark_batch_paid(clerk, batch.id, "again")


def test_each_batch_transition_records_the_state_it_found_and_who(payable, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    batch = batches.build_batch(clerk, MONTH)
    claims = [db.session.get(Claim, i) for i in payable]
    accounts = {str(e): a.id for e, a in banking.verified_accounts(c.enterprise_id for c in claims).items()}
    fake_clock.advance(hours=1)
    batches.export_batch(clerk, batch.id)
    exported_at = fake_clock()
    fake_clock.advance(hours=1)
    batches.export_batch(clerk, batch.id, "xlsx")  # fetched again: the first export's time stays
    fake_clock.advance(hours=1)
    batches.mark_batch_paid(clerk, batch.id, " " + "R" * 90 + " ")
    db.session.rollback()
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.object_type == "batch").order_by(AuditEvent.id)
    ).all()
    total = sum(c.total_fen for c in claims)
    assert [(e.action, e.before, e.after, e.reason, e.actor_id) for e in rows] == [
        (
            "batch.built",
            None,
            {
                "state": "draft",
                "month": MONTH,
                "claims": 2,
                "total_fen": total,
                "held_back": [],
                "held_back_providers": [],
            },
            None,
            clerk.id,
        ),
        (
            "batch.exported",
            {"state": "draft"},
            {"state": "exported", "format": "csv", "accounts": accounts, "provider_accounts": {}},
            None,
            clerk.id,
        ),
        (
            "batch.exported",
            {"state": "exported"},
            {"state": "exported", "format": "xlsx", "accounts": accounts, "provider_accounts": {}},
            None,
            clerk.id,
        ),
        ("batch.paid", {"state": "exported"}, {"state": "paid"}, "R" * 90, clerk.id),
    ]
    assert {e.object_id for e in rows} == {str(batch.id)}  # each row names the batch
    batch = db.session.get(type(batch), batch.id)
    assert (batch.exported_at, batch.paid_at, batch.paid_reference) == (exported_at, fake_clock(), "R" * 80)
    assert batch.fund_amounts == {
        name: sum(c.fund_amounts()[name] for c in claims) for name in ("province", "city")
    }
    paid = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "claim.paid")).all()
    assert {(e.object_id, e.reason, e.actor_id) for e in paid} == {
        (str(i), "R" * 90, clerk.id) for i in payable
    }


def refused(action, *args, error=InvalidTransition):
    """What a refused batch action says, in English (the Chinese come from the catalogue)."""
    with force_locale("en"), pytest.raises(error) as raised:
        action(*args)
    return raised.value


def test_a_batch_holds_back_payees_without_a_verified_account_and_asks_them_for_one(
    approved, make_user, fake_clock
):
    clerk = make_user(Role.FINANCE)
    assert refused(batches.build_batch, clerk, MONTH).message == "No payable claim is waiting for a batch."
    without = approved(name="无账户公司", bank_account=False)
    fake_clock.advance(days=10)
    notice.end_public_notice()
    error = refused(batches.build_batch, clerk, MONTH)
    held = [
        {
            "payee_kind": "enterprise",
            "enterprise_id": without.enterprise_id,
            "name": "无账户公司",
            "claims": [without.id],
            "total_fen": without.total_fen,
        }
    ]
    assert error.message == "No payee of the payable claims has a verified bank account: 无账户公司."
    assert error.details == {"held_back": held}
    ready = approved(fee_fen=2_000_00)
    fake_clock.advance(days=10)
    notice.end_public_notice()
    batch = batches.build_batch(clerk, MONTH)
    assert (batch.claims, batch.held_back) == (1, held)
    assert db.session.get(Claim, ready.id).batch_id == batch.id
    assert db.session.get(Claim, without.id).batch_id is None
    asked = db.session.scalars(select(Notification).where(Notification.kind == "bank_account.missing")).all()
    assert {n.recipient_id for n in asked} == {u.id for u in without.enterprise.users}
    assert asked[0].payload == {"enterprise": "无账户公司", "amount": format_yuan(without.total_fen)}


def test_a_batch_refused_for_want_of_accounts_names_every_payee(approved, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    for name in ("甲公司", "乙公司"):
        approved(name=name, bank_account=False)
    fake_clock.advance(days=10)
    notice.end_public_notice()
    error = refused(batches.build_batch, clerk, MONTH)
    names = [payee["name"] for payee in error.details["held_back"]]
    assert sorted(names) == ["乙公司", "甲公司"]
    assert error.message == f"No payee of the payable claims has a verified bank account: {', '.join(names)}."


def test_what_a_refused_batch_action_says(payable, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    batch = batches.build_batch(clerk, MONTH)
    error = refused(batches.export_batch, clerk, batch.id, "pdf", error=ValidationFailed)
    assert (error.message, error.fields) == ("Unknown format.", {"format": "CSV or XLSX."})
    for action in (batches.export_batch, lambda user, batch_id: batches.mark_batch_paid(user, batch_id, "R")):
        assert refused(action, clerk, batch.id + 1, error=NotFound).message == "No such batch."
    error = refused(batches.mark_batch_paid, clerk, batch.id, "R")
    assert error.message == "Export the batch for the bank before marking it paid."
    # A payee's account stopped being verified after the batch was built: the bank file is refused.
    name = db.session.get(Claim, payable[1]).enterprise.name
    account = banking.verified_accounts([db.session.get(Claim, payable[1]).enterprise_id]).popitem()[1]
    account.state = BankAccountState.SUPERSEDED
    db.session.commit()
    error = refused(batches.export_batch, clerk, batch.id)
    assert (error.message, error.details) == (f"No verified bank account for: {name}.", {"payees": [name]})
    # Both payees' accounts lapsed: the refusal names both, as a list.
    first = db.session.get(Claim, payable[0]).enterprise
    other = banking.verified_accounts([first.id]).popitem()[1]
    other.state = BankAccountState.SUPERSEDED
    db.session.commit()
    error = refused(batches.export_batch, clerk, batch.id)
    names = error.details["payees"]
    assert sorted(names) == sorted([first.name, name])
    assert error.message == f"No verified bank account for: {', '.join(names)}."
    other.state = account.state = BankAccountState.VERIFIED
    db.session.commit()
    batches.export_batch(clerk, batch.id)
    error = refused(batches.mark_batch_paid, clerk, batch.id, "  ", error=ValidationFailed)
    assert (error.message, error.fields) == ("Give the bank's payment reference.", {"reference": "Required."})
    error = refused(batches.mark_batch_paid, clerk, batch.id, None, error=ValidationFailed)
    assert error.fields == {"reference": "Required."}  # no reference at all, as an API body may send
    batches.mark_batch_paid(clerk, batch.id, "R")
    error = refused(batches.export_batch, clerk, batch.id)
    assert (error.message, error.details) == (
        "This batch is already paid.",
        {"state": "paid", "action": "export"},
    )


def test_the_bank_file_has_a_line_per_payee_and_a_totals_row_in_csv_and_xlsx(payable, make_user):
    clerk = make_user(Role.FINANCE)
    batch = batches.build_batch(clerk, MONTH)
    claims = [db.session.get(Claim, i) for i in payable]
    total = str(fen_to_yuan(sum(c.total_fen for c in claims)))
    with force_locale("en"):
        text = batches.export_batch(clerk, batch.id)
        book = load_workbook(io.BytesIO(batches.export_batch(clerk, batch.id, "xlsx")))
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][0] == "Payee" and len(rows) == 2 + len(claims)
    assert rows[-1] == ["Total", "", "", "", "", total, "", ""]
    assert rows[0][-1] == "Payee kind" and {row[-1] for row in rows[1:-1]} == {"Enterprise"}
    sheet = book["Payments"]
    cells = list(sheet.iter_rows(values_only=True))
    assert cells[-1][0] == "Total" and Decimal(str(cells[-1][5])) == Decimal(total)
    assert sheet.cell(row=2, column=6).number_format == "#,##0.00"


def test_a_batch_of_a_month_closed_since_it_was_exported_is_not_marked_paid(payable, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    batch = batches.build_batch(clerk, MONTH)
    batches.export_batch(clerk, batch.id)
    fake_clock.advance(days=20)  # into January
    finance.close_month(clerk, MONTH)
    error = refused(batches.mark_batch_paid, clerk, batch.id, "R")
    assert error.message == f"{MONTH} is closed: its numbers can no longer change."
    assert db.session.get(type(batch), batch.id).state is BatchState.EXPORTED


def test_a_closed_month_cannot_change(approved, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    claim = approved()
    with pytest.raises(ValidationFailed):
        finance.close_month(clerk, MONTH)  # December has not ended yet
    fake_clock.advance(days=40)  # into January
    finance.close_month(clerk, MONTH)
    frozen = tally_rows(MONTH)
    assert sum(r[4] for r in frozen) == claim.total_fen
    with pytest.raises(InvalidTransition):
        finance.close_month(clerk, MONTH)

    # A claim changed underneath (as a bad migration might) does not move the closed month's tally.
    db.session.get(Claim, claim.id).fund_rows[0].amount_fen += 1
    db.session.commit()
    assert finance.tally_month(MONTH) == 0
    assert tally_rows(MONTH) == frozen

    # Nor can a batch be built for it, nor a reviewer approve into it.
    fake_clock.advance(days=-40)
    assert (
        refused(batches.build_batch, clerk, MONTH).message
        == f"{MONTH} is closed: its numbers can no longer change."
    )
    with pytest.raises(InvalidTransition, match=MONTH):
        approved()


def test_a_batch_takes_only_payable_claims_and_pays_only_its_own(payable, approved, make_user, fake_clock):
    """A claim still in public notice stays out of the batch; one that becomes payable after the
    batch was built is neither in it nor paid with it."""
    clerk = make_user(Role.FINANCE)
    in_notice = approved()
    batch = batches.build_batch(clerk, MONTH)
    assert batch.claims == 2
    assert db.session.get(Claim, in_notice.id).batch_id is None
    fake_clock.advance(days=10)
    assert notice.end_public_notice() == 1  # now payable, but the batch was built before
    batches.export_batch(clerk, batch.id)
    batches.mark_batch_paid(clerk, batch.id, "R")
    later = db.session.get(Claim, in_notice.id)
    assert (later.state, later.batch_id) == (ClaimState.PAYABLE, None)
    assert {db.session.get(Claim, i).state for i in payable} == {ClaimState.PAID}


def test_only_finance_builds_batches_and_closes_months(payable, make_user):
    for role in (Role.ENTERPRISE, Role.REVIEWER, Role.PROVIDER):
        user = make_user(role)
        with pytest.raises(Forbidden):
            batches.build_batch(user, MONTH)
        with pytest.raises(Forbidden):
            finance.close_month(user, "2026-01")


def test_tallies_after_a_batch_still_reconcile(payable, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    batch = batches.build_batch(clerk, MONTH)
    batches.export_batch(clerk, batch.id)
    batches.mark_batch_paid(clerk, batch.id, "REF-9")
    result = finance.totals(MONTH, MONTH, "fund")
    assert result.approved_fen == finance.ledger_committed(MONTH) == result.paid_fen


def test_a_scheme_without_a_city_fund_pays_its_batch(
    fake_clock, make_scheme, make_user, make_voucher, make_service, make_bank_account
):
    scheme = make_scheme()
    db.session.delete(next(f for f in scheme.funds if f.name == "city"))
    db.session.commit()
    user, reviewer, clerk = make_user(Role.ENTERPRISE), make_user(Role.REVIEWER), make_user(Role.FINANCE)
    make_bank_account(user)
    voucher = make_voucher(user, scheme)
    claim = claim_services.create_claim(user, voucher.id, [make_service(user, 10_000_00).id])
    claim_services.submit_claim(user, claim.id)
    review.approve_claim(reviewer, claim.id)
    fake_clock.advance(days=10)
    notice.end_public_notice()
    batch = batches.build_batch(clerk, MONTH)
    batches.export_batch(clerk, batch.id)
    batches.mark_batch_paid(clerk, batch.id, "ICBC-1")
    db.session.rollback()
    claim = db.session.get(Claim, claim.id)
    assert (claim.state, claim.fund_amounts()) == (ClaimState.PAID, {"province": 6_000_00})
    assert [(f.name, f.committed_fen, f.paid_fen) for f in db.session.scalars(select(Fund))] == [
        ("province", 6_000_00, 6_000_00)
    ]


def test_paying_a_claim_checks_its_current_state_and_audits_the_real_one(payable, make_user, fake_clock):
    clerk = make_user(Role.FINANCE)
    claim = db.session.get(Claim, payable[0])
    voucher = claim.voucher
    funds = {f.name: f for f in voucher.scheme.funds}
    with pytest.raises(Forbidden):
        claim_services.pay_claim(make_user(Role.REVIEWER), claim, voucher, funds, reference="R", month=MONTH)
    # Another transaction paid it after this one read it: the conditional UPDATE refuses.
    db.session.execute(
        update(Claim)
        .where(Claim.id == claim.id)
        .values(state=ClaimState.PAID)
        .execution_options(synchronize_session=False)
    )
    assert claim.state is ClaimState.PAYABLE  # what this transaction read
    with pytest.raises(InvalidTransition):
        claim_services.pay_claim(clerk, claim, voucher, funds, reference="R", month=MONTH)
    db.session.rollback()

    claim = db.session.get(Claim, payable[1])
    claim_services.pay_claim(clerk, claim, claim.voucher, funds, reference="R-2", month=MONTH)
    db.session.commit()
    row = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "claim.paid", AuditEvent.object_id == str(claim.id))
    )
    assert (row.before, row.after, row.reason) == ({"state": "payable"}, {"state": "paid"}, "R-2")
    with pytest.raises(InvalidTransition):
        claim_services.pay_claim(clerk, claim, claim.voucher, funds, reference="R-3", month=MONTH)


# --- pages and API ------------------------------------------------------------------------------


def test_the_totals_page_shows_the_period_the_chart_and_reconciles(client, approved, make_user):
    claim = approved()
    reviewer, enterprise = make_user(Role.REVIEWER), make_user(Role.ENTERPRISE)
    login(client, reviewer.username)
    page = client.get(f"/finance/?month_from={MONTH}&month_to={MONTH}&group_by=county")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<svg" in html and 'id="reconciled"' in html
    assert "东昌府区" in html and f"{claim.total_fen // 100:,}" in html
    assert client.get(f"/finance/export.csv?month_from={MONTH}&month_to={MONTH}").status_code == 403
    bad = client.get("/finance/?month_from=2026-13")
    assert bad.status_code == 200 and "2026-11" in bad.get_data(as_text=True)  # the format is explained
    outsider = client.application.test_client()
    login(outsider, enterprise.username)
    assert outsider.get("/finance/").status_code == 403
    assert outsider.get("/finance/batches").status_code == 403


def test_finance_builds_exports_and_pays_a_batch_through_the_pages(client, payable, make_user):
    clerk = make_user(Role.FINANCE)
    login(client, clerk.username)
    page = client.get("/finance/batches")
    assert 'id="waiting"' in page.get_data(as_text=True)
    token = extract_csrf(page.get_data(as_text=True))
    built = client.post(
        "/finance/batches", data={"csrf_token": token, "batch-month": MONTH, "batch-submit": "1"}
    )
    assert built.status_code == 302
    batch_url = built.location
    exported = client.post(batch_url, data={"csrf_token": token, "export-submit": "1"})
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert exported.get_data(as_text=True).startswith("\ufeff")
    empty = client.post(batch_url, data={"csrf_token": token, "paid-reference": "", "paid-submit": "1"})
    assert empty.status_code == 200 and "is-invalid" in empty.get_data(as_text=True)
    # Without its CSRF token the very post that pays below is refused, and nothing is paid.
    no_csrf = client.post(batch_url, data={"paid-reference": "BOC-7", "paid-submit": "1"})
    assert no_csrf.status_code == 400
    assert all(db.session.get(Claim, i).state is ClaimState.PAYABLE for i in payable)
    paid = client.post(batch_url, data={"csrf_token": token, "paid-reference": "BOC-7", "paid-submit": "1"})
    assert paid.status_code == 302
    assert all(db.session.get(Claim, i).state is ClaimState.PAID for i in payable)
    assert all(db.session.get(Claim, i).paid_at is not None for i in payable)


def test_the_api_totals_equal_the_ledger_and_are_for_the_bureau_only(client, approved, make_user):
    from portal.accounts.services import issue_api_token

    approved()
    approved(fee_fen=1_111_11)
    clerk, enterprise = make_user(Role.FINANCE), make_user(Role.ENTERPRISE)
    headers = {"Authorization": f"Bearer {issue_api_token(clerk)[0]}"}
    for group in finance.GROUPS:
        body = client.get(
            f"/api/v1/finance/totals?month={MONTH}&group_by={group}", headers=headers
        ).get_json()
        assert body["total_fen"] == body["ledger_fen"] == finance.ledger_committed(MONTH) > 0
        assert sum(r["amount_fen"] for r in body["rows"]) == body["total_fen"] and body["reconciled"]
    bad = client.get("/api/v1/finance/totals?month=2026-13", headers=headers)
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "validation_error"
    assert client.get(f"/api/v1/finance/totals?month={MONTH}").status_code == 401
    outsider = {"Authorization": f"Bearer {issue_api_token(enterprise)[0]}"}
    forbidden = client.get(f"/api/v1/finance/totals?month={MONTH}", headers=outsider)
    assert forbidden.status_code == 403 and forbidden.get_json()["error"]["code"] == "forbidden"
