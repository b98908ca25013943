"""Finance rules: monthly tallies in SQL, totals, formula-safe exports, disbursement batches, closings."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import delete, func, insert, or_, select, update

from portal.accounts import banking
from portal.accounts.members import users_of_enterprise
from portal.accounts.models import BankAccount, Enterprise, Institution, User
from portal.core import audit, clock, outbox, uploads
from portal.core.database import serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.exports import Code, XlsxBook, csv_cell, neutralise
from portal.core.money import fen_to_yuan, format_yuan
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance.models import (
    DisbursementBatch,
    ExportJob,
    ExportState,
    PeriodClose,
    SubsidyTally,
)
from portal.notifications.services import notify
from portal.vouchers.models import (
    CLAIM_STATE_LABELS,
    COMMITTED_STATES,
    Claim,
    ClaimFund,
    ClaimState,
    LedgerEntry,
    LedgerKind,
    fund_labels,
)
from portal.vouchers.schemes import in_fund_order

# Years 2000-2099 only: month 0001-01 or 9999-12 would overflow the datetimes a month spans.
MONTH = re.compile(r"^20[0-9]{2}-(0[1-9]|1[0-2])$")
LOCK_TALLY = 7302
FINANCE_ROLES = (Role.FINANCE, Role.ADMIN)
MONEY_FORMAT = "#,##0.00"
GROUPS = ("fund", "county", "enterprise", "provider")


def month_of(moment: datetime) -> str:
    """The accounting month (Beijing time) of an instant."""
    return clock.local_month(moment)


def check_month(text: str | None, field: str = "month") -> str:
    if not text or not MONTH.match(text):
        raise ValidationFailed(_("A month looks like 2026-11."), {field: _("A month looks like 2026-11.")})
    return text


def month_range(month: str) -> tuple[datetime, datetime]:
    """The UTC instants a Beijing-time month runs between."""
    return clock.local_month_bounds(month)


def is_closed(month: str) -> bool:
    return db.session.scalar(select(PeriodClose.id).where(PeriodClose.month == month)) is not None


def require_finance(user: User) -> None:
    if not user.is_authenticated or user.role not in FINANCE_ROLES:
        raise Forbidden(_("Only bureau finance can do this."))


# --- tallies ------------------------------------------------------------------------------------


def _tally_source(month: str):
    """The claims approved or paid in the month, grouped per enterprise, provider, county and fund and
    also per state, approval month and payment month: the sum per fund and the number of claims with
    money from it.

    As plain as a GROUP BY gets, so PostgreSQL scans in parallel and evaluates nothing per row
    beyond the filter; which groups count as approved or paid is decided on the few grouped rows.
    (One conditional sum per fund and measure made the tally nearly twice as slow as a bare GROUP BY
    of the month's claims; a union of one scan per fund and measure, five times.)
    """
    keys = (
        Claim.enterprise_id,
        Claim.institution_id,
        Enterprise.county,
        Claim.state,
        Claim.approved_month,
        Claim.paid_month,
        ClaimFund.fund,
    )
    return (
        select(*keys, func.sum(ClaimFund.amount_fen), func.count().filter(ClaimFund.amount_fen > 0))
        .join(ClaimFund, ClaimFund.claim_id == Claim.id)
        .join(Enterprise, Enterprise.id == Claim.enterprise_id)
        .where(
            or_(Claim.approved_month == month, Claim.paid_month == month), Claim.institution_id.is_not(None)
        )
        .group_by(*keys)
    )


def _tally_rows(month: str) -> list[dict[str, Any]]:
    """The month's tally rows, one per fund × enterprise × provider × county with money in it."""
    committed = {state.value for state in COMMITTED_STATES}
    figures: dict[tuple, list[int]] = {}
    for row in db.session.execute(_tally_source(month)):
        enterprise_id, institution_id, county, state, approved_month, paid_month, fund, amount, claims = row
        amount, claims, state = int(amount or 0), int(claims or 0), getattr(state, "value", state)
        entry = figures.setdefault((fund, enterprise_id, institution_id, county), [0, 0, 0])
        if approved_month == month and state in committed:
            entry[0] += amount
            entry[2] += claims
        if paid_month == month and state == ClaimState.PAID.value:
            entry[1] += amount
    return [
        {
            "month": month,
            "fund": fund,
            "enterprise_id": enterprise_id,
            "institution_id": institution_id,
            "county": county,
            "approved_fen": approved,
            "paid_fen": paid,
            "claims": claims,
        }
        for (fund, enterprise_id, institution_id, county), (approved, paid, claims) in figures.items()
        if approved or paid
    ]


def tally_month(month: str) -> int:
    """Recompute the month's tally rows from the claims; idempotent, and a closed month stays as it is."""
    check_month(month)
    with serialized_write((LOCK_TALLY, int(month.replace("-", "")))):
        if is_closed(month):
            db.session.rollback()
            return 0
        # Read, then write back: PostgreSQL never runs the SELECT of an INSERT … SELECT in parallel,
        # and the groups are few (enterprises × providers × funds) however many claims there are.
        rows = _tally_rows(month)
        db.session.execute(delete(SubsidyTally).where(SubsidyTally.month == month))
        if rows:
            db.session.execute(insert(SubsidyTally), rows)
        count = len(rows)
        db.session.commit()
    return count


# --- totals -------------------------------------------------------------------------------------


@dataclass
class TotalRow:
    key: Any
    label: str
    approved_fen: int
    paid_fen: int


@dataclass
class Totals:
    rows: list[TotalRow]
    approved_fen: int
    paid_fen: int
    month_from: str
    month_to: str
    group_by: str


def totals(month_from: str, month_to: str, group_by: str = "fund") -> Totals:
    """Approved and paid subsidy between two months (inclusive), grouped as asked, from the tallies."""
    check_month(month_from, "month_from")
    check_month(month_to, "month_to")
    if group_by not in GROUPS:
        raise ValidationFailed(_("Unknown grouping."), {"group_by": _("Unknown grouping.")})
    key = {
        "fund": SubsidyTally.fund,
        "county": SubsidyTally.county,
        "enterprise": SubsidyTally.enterprise_id,
        "provider": SubsidyTally.institution_id,
    }[group_by]
    rows = db.session.execute(
        select(key, func.sum(SubsidyTally.approved_fen), func.sum(SubsidyTally.paid_fen))
        .where(SubsidyTally.month >= month_from, SubsidyTally.month <= month_to)
        .group_by(key)
        .order_by(func.sum(SubsidyTally.approved_fen).desc())
    ).all()
    labels = _labels(group_by, [r[0] for r in rows])
    out = [TotalRow(k, labels.get(k, str(k)), int(a or 0), int(p or 0)) for k, a, p in rows]
    return Totals(
        out, sum(r.approved_fen for r in out), sum(r.paid_fen for r in out), month_from, month_to, group_by
    )


def _labels(group_by: str, keys: list[Any]) -> dict[Any, str]:
    if group_by == "enterprise":
        return dict(
            db.session.execute(select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(keys))).all()
        )
    if group_by == "provider":
        return dict(
            db.session.execute(select(Institution.id, Institution.name).where(Institution.id.in_(keys))).all()
        )
    if group_by == "fund":
        labels = fund_labels()
        return {k: labels.get(k, k) for k in keys}
    return {k: k for k in keys}


def monthly_series(month_from: str, month_to: str) -> tuple[list[str], list[tuple[str, dict[str, int]]]]:
    """The funds with money in the period (in the schemes' order) and, per month, the approved
    subsidy of each, for the chart."""
    rows = db.session.execute(
        select(SubsidyTally.month, SubsidyTally.fund, func.sum(SubsidyTally.approved_fen))
        .where(SubsidyTally.month >= month_from, SubsidyTally.month <= month_to)
        .group_by(SubsidyTally.month, SubsidyTally.fund)
    ).all()
    by_month: dict[str, dict[str, int]] = {}
    for month, fund, amount in rows:
        by_month.setdefault(month, {})[fund] = int(amount or 0)
    return in_fund_order(fund for _month, fund, _amount in rows), sorted(by_month.items())


def ledger_committed(month_from: str, month_to: str | None = None) -> int:
    """What the voucher ledgers committed in the months (inclusive): the figure every total must equal."""
    start, end = month_range(month_from)[0], month_range(month_to or month_from)[1]
    return int(
        db.session.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount_fen), 0)).where(
                LedgerEntry.kind == LedgerKind.COMMITTED,
                LedgerEntry.created_at >= start,
                LedgerEntry.created_at < end,
            )
        ).scalar_one()
    )


# --- exports ------------------------------------------------------------------------------------


def export_funds(month_from: str, month_to: str) -> list[str]:
    """The funds of the claims an export holds, in their schemes' order: one column each."""
    claims = _claims_query(month_from, month_to).with_only_columns(Claim.id).order_by(None).subquery()
    rows = db.session.execute(
        select(ClaimFund.fund, func.min(ClaimFund.position))
        .where(ClaimFund.claim_id.in_(select(claims.c.id)))
        .group_by(ClaimFund.fund)
        .order_by(func.min(ClaimFund.position), ClaimFund.fund)
    ).all()
    return [fund for fund, _position in rows]


def export_headers(funds: list[str]) -> list[str]:
    labels = fund_labels()
    return [
        _("Claim"),
        _("Approved in"),
        _("Enterprise"),
        _("Unified social credit code"),
        _("County or district"),
        _("Provider"),
        *(_("%(fund)s (yuan)", fund=labels.get(fund, fund)) for fund in funds),
        _("Total (yuan)"),
        _("State"),
        _("Paid in"),
        _("Batch"),
    ]


# The columns before the amounts, one per fund and the total.
LEADING_COLUMNS = 6


def _exported(month_from: str, month_to: str) -> tuple[Any, ...]:
    """The claims an export holds: approved in the months (inclusive), with a provider (the export
    names it)."""
    return (
        Claim.state.in_(COMMITTED_STATES),
        Claim.approved_month >= month_from,
        Claim.approved_month <= month_to,
        Claim.institution_id.is_not(None),
    )


def _claims_query(month_from: str, month_to: str):
    return (
        select(
            Claim.id,
            Claim.approved_month,
            Enterprise.name,
            Enterprise.uscc,
            Enterprise.county,
            Institution.name,
            Claim.state,
            Claim.paid_month,
            Claim.batch_id,
        )
        .join(Enterprise, Enterprise.id == Claim.enterprise_id)
        .join(Institution, Institution.id == Claim.institution_id)
        .where(*_exported(month_from, month_to))
        .order_by(Claim.approved_month, Claim.id)
    )


def count_export_rows(month_from: str, month_to: str) -> int:
    """How many rows the export of the months has: its claims, counted without the joins that name
    their enterprise and provider (each claim has exactly one of each: the foreign keys hold them, the
    provider's not being null is in `_exported`). So PostgreSQL counts from `ix_claims_approved_month_state`
    alone; through the joins it read and sorted every claim of the period (700 ms for a year's
    1,000,000 at province scale)."""
    return db.session.execute(select(func.count()).where(*_exported(month_from, month_to))).scalar_one()


def export_rows(month_from: str, month_to: str, funds: list[str]) -> Iterator[tuple[list[Any], list[int]]]:
    """(cells, fen per fund in the order of `funds`) per approved claim, streamed from the database."""
    stmt = (
        _claims_query(month_from, month_to)
        .add_columns(ClaimFund.fund, ClaimFund.amount_fen)
        .outerjoin(ClaimFund, ClaimFund.claim_id == Claim.id)
        .execution_options(yield_per=2000)
    )
    # One row per claim and fund, a claim's rows together (ordered by claim): one claim per group.
    for _claim, group in groupby(db.session.execute(stmt), key=lambda row: row[0]):
        rows = list(group)
        cid, approved, enterprise, uscc, county, provider, state, paid, batch = rows[0][:9]
        given = {row[9]: int(row[10] or 0) for row in rows if row[9] is not None}
        amounts = [given.get(fund, 0) for fund in funds]
        cells = [
            cid,
            approved,
            neutralise(enterprise),
            Code(uscc),
            county,
            neutralise(provider),
            *(fen_to_yuan(amount) for amount in amounts),
            fen_to_yuan(sum(given.values())),
            str(CLAIM_STATE_LABELS[state]),
            paid or "",
            batch or "",
        ]
        yield cells, amounts


def _export(month_from: str, month_to: str, write_row, progress=None) -> tuple[int, int]:
    """Headers, one row per claim and a totals row through `write_row(cells)`; returns (rows, total fen)."""
    funds = export_funds(month_from, month_to)
    write_row(export_headers(funds))
    rows, totals = 0, [0] * len(funds)
    for cells, amounts in export_rows(month_from, month_to, funds):
        write_row(cells)
        rows, totals = rows + 1, [t + a for t, a in zip(totals, amounts, strict=True)]
        if progress and rows % 1000 == 0:
            progress(rows)
    total = sum(totals)
    write_row(
        [_("Total"), *[""] * (LEADING_COLUMNS - 1), *map(fen_to_yuan, totals), fen_to_yuan(total), "", "", ""]
    )
    return rows, total


def write_csv(handle, month_from: str, month_to: str, progress=None) -> tuple[int, int]:
    """UTF-8 with BOM (so Excel shows Chinese), a totals row; returns (rows, total fen)."""
    handle.write("\ufeff")
    writer = csv.writer(handle)

    def write_row(cells: list[Any]) -> None:
        # Headers too: a fund's label is typed by an administrator.
        writer.writerow([csv_cell(cell) for cell in cells])

    return _export(month_from, month_to, write_row, progress)


def write_xlsx(path, month_from: str, month_to: str, progress=None) -> tuple[int, int]:
    """XlsxWriter in constant-memory mode (memory stays flat); amounts as numbers in yuan with two
    decimals; every cell formula-safe (a fund's label is typed by an administrator)."""
    book = XlsxBook(path)
    sheet = book.sheet(_("Subsidies"))
    money: dict[int, str] = {}

    def write_row(cells: list[Any]) -> None:
        if not money:  # the headers
            money.update(
                dict.fromkeys(range(LEADING_COLUMNS, len(cells) - 3), MONEY_FORMAT)
            )  # up to the state
            sheet.append(cells)
            return
        sheet.append(cells, money)

    rows, total = _export(month_from, month_to, write_row, progress)
    book.close()
    return rows, total


def csv_text(month_from: str, month_to: str) -> str:
    buffer = io.StringIO()
    write_csv(buffer, month_from, month_to)
    return buffer.getvalue()


def start_export_job(user: User, month_from: str, month_to: str, fmt: str) -> ExportJob:
    """A large export, written by a worker; the user follows its progress."""
    require_finance(user)
    job = ExportJob(
        user_id=user.id,
        params={"month_from": month_from, "month_to": month_to},
        fmt=fmt,
        total_rows=count_export_rows(month_from, month_to),
    )
    db.session.add(job)
    db.session.flush()
    job_id = job.id
    outbox.send_task("finance.run_export", job_id)
    db.session.commit()
    return db.session.get_one(ExportJob, job_id)


def run_export_job(job_id: int) -> None:
    job = db.session.get(ExportJob, job_id)
    if job is None or job.state is not ExportState.QUEUED:
        return
    job.state = ExportState.RUNNING
    db.session.commit()
    name = f"export-{uuid.uuid4().hex}.{job.fmt}"
    path = uploads.upload_root() / name

    def progress(rows: int) -> None:
        db.session.execute(update(ExportJob).where(ExportJob.id == job_id).values(done_rows=rows))
        db.session.commit()

    try:
        params = job.params
        if job.fmt == "csv":
            with path.open("w", encoding="utf-8", newline="") as handle:
                rows, _total = write_csv(handle, params["month_from"], params["month_to"], progress)
        else:
            rows, _total = write_xlsx(path, params["month_from"], params["month_to"], progress)
    except Exception as error:
        db.session.rollback()
        db.session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id)
            .values(state=ExportState.FAILED, error=str(error)[:1000])
        )
        db.session.commit()
        raise
    db.session.execute(
        update(ExportJob)
        .where(ExportJob.id == job_id)
        .values(state=ExportState.DONE, done_rows=rows, stored_name=name, finished_at=clock.utcnow())
    )
    db.session.commit()


def get_export_job(user: User, job_id: int) -> ExportJob:
    job = db.session.get(ExportJob, job_id)
    if job is None or job.user_id != user.id:
        raise NotFound(_("No such export."))
    return job


# --- disbursement batches and closed months ------------------------------------------------------


def refuse_closed(month: str) -> None:
    if is_closed(month):
        raise InvalidTransition(_("%(month)s is closed: its numbers can no longer change.", month=month))


def held_back_payees(claims: list[Claim]) -> list[dict[str, Any]]:
    """The payees of these claims, each with its name, its claims and what they come to."""
    payees: dict[int, dict[str, Any]] = {}
    for claim in claims:
        payee = payees.setdefault(
            claim.enterprise_id,
            {"enterprise_id": claim.enterprise_id, "name": "", "claims": [], "total_fen": 0},
        )
        payee["claims"].append(claim.id)
        payee["total_fen"] += claim.total_fen
    names = dict(
        db.session.execute(select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(payees))).all()
    )
    for enterprise_id, payee in payees.items():
        payee["name"] = names[enterprise_id]
    return list(payees.values())


def ask_for_account(batch: DisbursementBatch, payee: dict[str, Any]) -> None:
    notify(
        users_of_enterprise(payee["enterprise_id"]),
        "bank_account.missing",
        f"batch:{batch.id}:missing_account:{payee['enterprise_id']}",
        payload={"enterprise": payee["name"], "amount": format_yuan(payee["total_fen"])},
        link=banking.LINK,
    )


def claims_waiting_for_batch() -> int:
    return db.session.execute(
        select(func.count())
        .select_from(Claim)
        .where(Claim.state == ClaimState.PAYABLE, Claim.batch_id.is_(None))
    ).scalar_one()


def payees_without_account() -> list[dict[str, Any]]:
    """The payees of claims waiting for a batch who have no verified bank account yet."""
    claims = db.session.scalars(
        select(Claim).where(Claim.state == ClaimState.PAYABLE, Claim.batch_id.is_(None)).order_by(Claim.id)
    ).all()
    accounts = banking.verified_accounts(c.enterprise_id for c in claims)
    return held_back_payees([c for c in claims if c.enterprise_id not in accounts])


def batch_claims(batch: DisbursementBatch) -> list[Claim]:
    return list(
        db.session.scalars(
            select(Claim).where(Claim.batch_id == batch.id).order_by(Claim.enterprise_id, Claim.id)
        )
    )


@dataclass
class Payment:
    """One line of the bank file: an enterprise, the account it is paid into, and how much."""

    enterprise: Enterprise
    account: BankAccount | None
    amount_fen: int
    claims: list[int]

    def cells(self) -> list[Any]:
        account = self.account
        return [
            self.enterprise.name,
            Code(self.enterprise.uscc),
            account.account_name if account else "",
            account.bank_name if account else "",
            Code(account.account_number) if account else "",
            fen_to_yuan(self.amount_fen),
            " ".join(f"#{c}" for c in self.claims),
        ]


def payments(batch: DisbursementBatch) -> list[Payment]:
    """One payment per enterprise, into its verified bank account (None: it has none now)."""
    per_enterprise: dict[int, list[Claim]] = {}
    for claim in batch_claims(batch):
        per_enterprise.setdefault(claim.enterprise_id, []).append(claim)
    accounts = banking.verified_accounts(per_enterprise)
    return [
        Payment(
            enterprise=db.session.get_one(Enterprise, enterprise_id),
            account=accounts.get(enterprise_id),
            amount_fen=sum(c.total_fen for c in claims),
            claims=[c.id for c in claims],
        )
        for enterprise_id, claims in per_enterprise.items()
    ]


def bank_file_headers() -> list[str]:
    return [
        _("Payee"),
        _("Unified social credit code"),
        _("Account name"),
        _("Bank"),
        _("Account number"),
        _("Amount (yuan)"),
        _("Claims"),
    ]


BANK_FILE_FORMATS = ("csv", "xlsx")


def close_month(user: User, month: str) -> PeriodClose:
    """Close a finished month: its tally is brought up to date one last time, then frozen."""
    require_finance(user)
    check_month(month)
    if month >= month_of(clock.utcnow()):
        raise ValidationFailed(
            _("Only a month that has ended can be closed."), {"month": _("Not ended yet.")}
        )
    tally_month(month)
    with serialized_write((LOCK_TALLY, int(month.replace("-", "")))):
        if is_closed(month):
            raise InvalidTransition(_("%(month)s is already closed.", month=month))
        row = PeriodClose(month=month, closed_by_id=user.id, closed_at=clock.utcnow())
        db.session.add(row)
        audit.record("period.closed", "period", month, after={"month": month}, actor_id=user.id)
        db.session.commit()
    return row


def closed_months() -> list[PeriodClose]:
    return list(db.session.scalars(select(PeriodClose).order_by(PeriodClose.month.desc())))


def queue_tally(month: str) -> None:
    """Recompute the month's tally in a worker once the current transaction (which changes it) commits."""
    outbox.send_task("finance.tally_month", month)


def batches() -> list[DisbursementBatch]:
    return list(db.session.scalars(select(DisbursementBatch).order_by(DisbursementBatch.id.desc())))
