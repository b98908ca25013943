"""Finance rules: monthly tallies in SQL, totals, disbursement batches, closings (exports: exports.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import case, delete, func, insert, or_, select

from portal.accounts import banking
from portal.accounts.members import users_of_enterprise, users_of_institution
from portal.accounts.models import (
    PAYEE_ENTERPRISE,
    PAYEE_KIND_LABELS,
    PAYEE_PROVIDER,
    BankAccount,
    Enterprise,
    Institution,
    User,
)
from portal.core import audit, clock, outbox
from portal.core.database import serialized_write
from portal.core.errors import Forbidden, InvalidTransition, ValidationFailed
from portal.core.exports import Code
from portal.core.money import fen_to_yuan, format_yuan
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance.models import (
    MODE_LABELS,
    DisbursementBatch,
    PeriodClose,
    SubsidyTally,
)
from portal.notifications.services import notify
from portal.vouchers.labels import fund_labels
from portal.vouchers.models import (
    COMMITTED_STATES,
    Claim,
    ClaimFund,
    ClaimState,
    LedgerEntry,
    LedgerKind,
    RedemptionMode,
)
from portal.vouchers.schemes import in_fund_order

# Years 2000-2099 only: month 0001-01 or 9999-12 would overflow the datetimes a month spans.
MONTH = re.compile(r"^20[0-9]{2}-(0[1-9]|1[0-2])$")
LOCK_TALLY = 7302
FINANCE_ROLES = (Role.FINANCE, Role.ADMIN)
MONEY_FORMAT = "#,##0.00"
GROUPS = ("fund", "county", "enterprise", "provider", "mode", "payee_kind")
# Whom a claim of each mode pays: the enterprise claims the subsidy back; at payment the provider is paid.
PAYEE_OF_MODE = {
    RedemptionMode.REIMBURSEMENT.value: PAYEE_ENTERPRISE,
    RedemptionMode.AT_PAYMENT.value: PAYEE_PROVIDER,
}


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
    """The claims approved or paid in the month, grouped per enterprise, provider, county, redemption
    mode and fund and also per state, approval month and payment month: the sum per fund and the
    number of claims with money from it.

    As plain as a GROUP BY gets, so PostgreSQL scans in parallel and evaluates nothing per row
    beyond the filter; which groups count as approved or paid is decided on the few grouped rows.
    (One conditional sum per fund and measure made the tally nearly twice as slow as a bare GROUP BY
    of the month's claims; a union of one scan per fund and measure, five times.)
    """
    keys = (
        Claim.enterprise_id,
        Claim.institution_id,
        Enterprise.county,
        Claim.mode,
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
    """The month's tally rows, one per fund × enterprise × provider × county × mode with money in it."""
    committed = {state.value for state in COMMITTED_STATES}
    figures: dict[tuple, list[int]] = {}
    for row in db.session.execute(_tally_source(month)):
        (
            enterprise_id,
            institution_id,
            county,
            mode,
            state,
            approved_month,
            paid_month,
            fund,
            amount,
            claims,
        ) = row
        amount, claims, state = int(amount or 0), int(claims or 0), getattr(state, "value", state)
        key = (fund, enterprise_id, institution_id, county, getattr(mode, "value", mode))
        entry = figures.setdefault(key, [0, 0, 0])
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
            "mode": mode,
            "approved_fen": approved,
            "paid_fen": paid,
            "claims": claims,
        }
        for (fund, enterprise_id, institution_id, county, mode), (approved, paid, claims) in figures.items()
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
        "mode": SubsidyTally.mode,
        "payee_kind": _payee_kind(SubsidyTally.mode),
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


def _payee_kind(mode):
    """The payee kind of a mode column, in SQL: at payment the provider, otherwise the enterprise."""
    return case((mode == RedemptionMode.AT_PAYMENT.value, PAYEE_PROVIDER), else_=PAYEE_ENTERPRISE).label(
        "payee_kind"
    )


def _labels(group_by: str, keys: list[Any]) -> dict[Any, str]:
    if group_by == "mode":
        return {k: str(MODE_LABELS.get(k, k)) for k in keys}
    if group_by == "payee_kind":
        return {k: str(PAYEE_KIND_LABELS.get(k, k)) for k in keys}
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


def ledger_committed(month_from: str, month_to: str | None = None, mode: str | None = None) -> int:
    """What the voucher ledgers committed in the months (inclusive): the figure every total must equal;
    with `mode`, only for the claims of that redemption mode (what the totals of that mode must equal)."""
    if mode is not None:
        return ledger_committed_by_mode(month_from, month_to).get(mode, 0)
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


def ledger_committed_by_mode(month_from: str, month_to: str | None = None) -> dict[str, int]:
    """What the voucher ledgers committed in the months, per redemption mode of the claims (every mode,
    nought where nothing was)."""
    start, end = month_range(month_from)[0], month_range(month_to or month_from)[1]
    rows = db.session.execute(
        select(Claim.mode, func.sum(LedgerEntry.amount_fen))
        .join(Claim, Claim.id == LedgerEntry.claim_id)
        .where(
            LedgerEntry.kind == LedgerKind.COMMITTED,
            LedgerEntry.created_at >= start,
            LedgerEntry.created_at < end,
        )
        .group_by(Claim.mode)
    ).all()
    committed = {mode.value: 0 for mode in RedemptionMode}
    committed.update({getattr(mode, "value", mode): int(amount or 0) for mode, amount in rows})
    return committed


@dataclass
class ModeRow:
    """One redemption mode's approved and paid subsidy in a period, beside what its claims' ledger
    entries committed: the two are equal to the fen."""

    mode: str
    label: str
    payee_kind: str
    payee_label: str
    approved_fen: int
    paid_fen: int
    ledger_fen: int

    @property
    def reconciled(self) -> bool:
        return self.approved_fen == self.ledger_fen


def by_mode(month_from: str, month_to: str) -> list[ModeRow]:
    """The period's subsidy split by redemption mode (so by payee kind), each reconciled with the ledger."""
    result = {row.key: row for row in totals(month_from, month_to, "mode").rows}
    ledger = ledger_committed_by_mode(month_from, month_to)
    rows = []
    for mode in RedemptionMode:
        total, payee = result.get(mode.value), PAYEE_OF_MODE[mode.value]
        rows.append(
            ModeRow(
                mode=mode.value,
                label=str(MODE_LABELS[mode.value]),
                payee_kind=payee,
                payee_label=str(PAYEE_KIND_LABELS[payee]),
                approved_fen=total.approved_fen if total else 0,
                paid_fen=total.paid_fen if total else 0,
                ledger_fen=ledger[mode.value],
            )
        )
    return rows


# --- disbursement batches and closed months ------------------------------------------------------


def refuse_closed(month: str) -> None:
    if is_closed(month):
        raise InvalidTransition(_("%(month)s is closed: its numbers can no longer change.", month=month))


Payee = tuple[str, int]  # (payee kind, enterprise or institution id)


def payee_of(claim: Claim) -> Payee:
    """Whom the claim is paid to: at payment its provider, otherwise its enterprise."""
    if claim.at_payment and claim.institution_id is not None:
        return PAYEE_PROVIDER, claim.institution_id
    return PAYEE_ENTERPRISE, claim.enterprise_id


def _payee_models(payees) -> dict[Payee, Enterprise | Institution]:
    """The enterprise or institution of each payee, in one query per kind."""
    wanted = set(payees)
    found: dict[Payee, Enterprise | Institution] = {}
    for kind, model in banking.PAYEE_MODELS.items():
        ids = {i for k, i in wanted if k == kind}
        if ids:
            rows: list[Enterprise | Institution] = list(
                db.session.scalars(select(model).where(model.id.in_(ids)))
            )
            found.update({(kind, row.id): row for row in rows})
    return found


def held_back_payees(claims: list[Claim]) -> list[dict[str, Any]]:
    """The payees of these claims, each with its kind, id, name, its claims and what they come to."""
    payees: dict[Payee, dict[str, Any]] = {}
    for claim in claims:
        kind, payee_id = payee_of(claim)
        id_field = "institution_id" if kind == PAYEE_PROVIDER else "enterprise_id"
        payee = payees.setdefault(
            (kind, payee_id),
            {"payee_kind": kind, id_field: payee_id, "name": "", "claims": [], "total_fen": 0},
        )
        payee["claims"].append(claim.id)
        payee["total_fen"] += claim.total_fen
    names = _payee_models(payees)
    for key, payee in payees.items():
        payee["name"] = names[key].name
    return list(payees.values())


def ask_for_account(batch: DisbursementBatch, payee: dict[str, Any]) -> None:
    """Tell a held-back payee's users that its money waits for a verified bank account."""
    amount = format_yuan(payee["total_fen"])
    if payee.get("payee_kind") == PAYEE_PROVIDER:
        notify(
            users_of_institution(payee["institution_id"]),
            "provider_account.missing",
            f"batch:{batch.id}:missing_account:provider:{payee['institution_id']}",
            payload={"institution": payee["name"], "amount": amount},
            link=banking.PROVIDER_LINK,
        )
        return
    notify(
        users_of_enterprise(payee["enterprise_id"]),
        "bank_account.missing",
        f"batch:{batch.id}:missing_account:{payee['enterprise_id']}",
        payload={"enterprise": payee["name"], "amount": amount},
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
    accounts = banking.verified_payee_accounts(payee_of(c) for c in claims)
    return held_back_payees([c for c in claims if payee_of(c) not in accounts])


def batch_claims(batch: DisbursementBatch) -> list[Claim]:
    return list(
        db.session.scalars(
            select(Claim).where(Claim.batch_id == batch.id).order_by(Claim.enterprise_id, Claim.id)
        )
    )


@dataclass
class Payment:
    """One line of the bank file: a payee (an enterprise, or a provider paid at payment), the account
    it is paid into, and how much."""

    payee_kind: str
    payee: Enterprise | Institution
    account: BankAccount | None
    amount_fen: int
    claims: list[int]

    @property
    def key(self) -> str:
        """How the audit row names the payee: "enterprise:12", "provider:3"."""
        return f"{self.payee_kind}:{self.payee.id}"

    def cells(self) -> list[Any]:
        account = self.account
        return [
            self.payee.name,
            Code(self.payee.uscc) if self.payee.uscc else "",
            account.account_name if account else "",
            account.bank_name if account else "",
            Code(account.account_number) if account else "",
            fen_to_yuan(self.amount_fen),
            " ".join(f"#{c}" for c in self.claims),
            str(PAYEE_KIND_LABELS[self.payee_kind]),
        ]


def payments(batch: DisbursementBatch) -> list[Payment]:
    """One payment per payee (an enterprise, or a provider for its at-payment claims, however many
    enterprises they came from), into its verified bank account (None: it has none now)."""
    per_payee: dict[Payee, list[Claim]] = {}
    for claim in batch_claims(batch):
        per_payee.setdefault(payee_of(claim), []).append(claim)
    accounts = banking.verified_payee_accounts(per_payee)
    payees = _payee_models(per_payee)
    return [
        Payment(
            payee_kind=key[0],
            payee=payees[key],
            account=accounts.get(key),
            amount_fen=sum(c.total_fen for c in claims),
            claims=[c.id for c in claims],
        )
        for key, claims in per_payee.items()
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
        _("Payee kind"),
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
