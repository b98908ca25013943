"""Funds are data: a scheme with one fund, or three, works end to end (apply → voucher → claim →
approve → notice → batch → paid), and the finance totals and exports equal the ledger to the fen."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import batches
from portal.finance import exports as subsidy_exports
from portal.finance import services as finance
from portal.finance.models import BatchState
from portal.vouchers import applications, claims, notice, review
from portal.vouchers.models import Claim, ClaimState, Fund, FundCondition, Voucher

MONTH = "2026-12"  # the fake clock's month

ONE_FUND = [
    {"name": "county", "label": "县级券", "rate": Decimal("0.50"), "budget_fen": 1_000_000_00},
]
THREE_FUNDS = [
    {
        "name": "province",
        "label": "省级",
        "rate": Decimal("0.40"),
        "budget_fen": 4_000_000_00,
        "enterprise_capped": True,
    },
    {
        "name": "city",
        "label": "市级",
        "rate": Decimal("0.20"),
        "budget_fen": 2_000_000_00,
        "condition": FundCondition.LOCAL_PROVIDER,
    },
    # A small budget, so that it binds: the amount stays below the raw amount.
    {"name": "district", "label": "区级", "rate": Decimal("0.15"), "budget_fen": 1_000_00},
]


def apply_for_voucher(user, reviewer, amount_fen: int) -> Voucher:
    application = applications.apply_for_voucher(user, amount_fen, "计划")
    applications.approve_application(reviewer, application.id)
    return db.session.scalar(select(Voucher).where(Voucher.enterprise_id == user.enterprise_id))


@pytest.mark.parametrize(
    ("funds", "fee_fen", "expected"),
    [
        (ONE_FUND, 10_000_00, [("county", 5_000_00, 5_000_00)]),
        (
            THREE_FUNDS,
            10_001_01,
            [
                ("province", 4_000_40, 4_000_40),
                ("city", 2_000_20, 2_000_20),
                ("district", 1_500_15, 1_000_00),
            ],
        ),
    ],
    ids=["one-fund", "three-funds"],
)
def test_a_scheme_of_any_number_of_funds_works_end_to_end(
    app,
    fake_clock,
    make_scheme,
    make_user,
    make_service,
    make_bank_account,
    funds,
    fee_fen,
    expected,
):
    scheme = make_scheme(funds=funds)
    user = make_user(Role.ENTERPRISE)
    reviewer, clerk = make_user(Role.REVIEWER), make_user(Role.FINANCE)
    make_bank_account(user)
    voucher = apply_for_voucher(user, reviewer, 50_000_00)
    assert voucher.scheme_id == scheme.id

    claim = claims.create_claim(user, voucher.id, [make_service(user, fee_fen).id])
    if len(funds) == 3:  # a draft already names what binds it (claims.create_claim mutant 23 kept none)
        assert db.session.get(Claim, claim.id, populate_existing=True).limited_by == ["district_budget"]
    claims.submit_claim(user, claim.id)
    review.approve_claim(reviewer, claim.id)
    claim = db.session.get(Claim, claim.id)
    assert claim.state is ClaimState.IN_NOTICE
    assert [(f["fund"], f["raw_fen"], f["amount_fen"]) for f in claim.funds()] == expected
    total = sum(amount for _name, _raw, amount in expected)
    assert claim.total_fen == total
    if len(funds) == 3:
        assert claim.limited_by == ["district_budget"]

    fake_clock.advance(days=10)
    assert notice.end_public_notice() == 1
    batch = batches.build_batch(clerk, MONTH)
    assert batch.fund_amounts == {name: amount for name, _raw, amount in expected}
    batches.export_batch(clerk, batch.id)
    batches.mark_batch_paid(clerk, batch.id, "BANK-7")
    db.session.rollback()
    assert db.session.get(type(batch), batch.id).state is BatchState.PAID
    assert db.session.get(Claim, claim.id).state is ClaimState.PAID
    fund_rows = {f.name: (f.committed_fen, f.paid_fen) for f in db.session.scalars(select(Fund))}
    assert fund_rows == {name: (amount, amount) for name, _raw, amount in expected}

    finance.tally_month(MONTH)
    ledger = finance.ledger_committed(MONTH)
    assert ledger == total
    by_fund = finance.totals(MONTH, MONTH, "fund")
    assert {r.key: (r.approved_fen, r.paid_fen) for r in by_fund.rows} == {
        name: (amount, amount) for name, _raw, amount in expected if amount
    }
    assert {r.key: r.label for r in by_fund.rows} == {f["name"]: f["label"] for f in funds}
    assert by_fund.approved_fen == by_fund.paid_fen == ledger

    # The exports: one column per fund, headed by its label, and a totals row equal to the ledger.
    rows = list(csv.reader(io.StringIO(subsidy_exports.csv_text(MONTH, MONTH).lstrip("\ufeff"))))
    headers, body, totals = rows[0], rows[1:-1], rows[-1]
    fund_columns = headers[6 : 6 + len(funds)]
    assert [h.split(" (")[0].split("（")[0] for h in fund_columns] == [f["label"] for f in funds]
    assert [int(Decimal(c) * 100) for c in body[0][6 : 6 + len(funds)]] == [a for _n, _r, a in expected]
    assert int(Decimal(totals[6 + len(funds)]) * 100) == ledger
    buffer = io.BytesIO()
    _count, xlsx_total = subsidy_exports.write_xlsx(buffer, MONTH, MONTH)
    sheet = list(load_workbook(io.BytesIO(buffer.getvalue())).active.iter_rows(values_only=True))
    assert xlsx_total == ledger == round(Decimal(str(sheet[-1][6 + len(funds)])) * 100)
