"""The review desk's reading side: the queue with its filters and counts, histories."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import MultiDict

from portal.accounts.models import BankAccount, BankAccountState, Enterprise
from portal.core import clock
from portal.core.models import AuditEvent
from portal.core.money import yuan_to_fen
from portal.extensions import db
from portal.vouchers.models import (
    ApplicationState,
    Claim,
    ClaimFund,
    ClaimState,
    RequestState,
    VerificationRequest,
    VoucherApplication,
)

KINDS = ("verification", "application", "claim", "bank_account")
QUEUE_MODELS = {
    "verification": VerificationRequest,
    "application": VoucherApplication,
    "claim": Claim,
    "bank_account": BankAccount,
}


@dataclass
class QueueFilters:
    kind: str = "claim"
    county: str | None = None
    amount_min_fen: int | None = None
    amount_max_fen: int | None = None
    older_than_days: int | None = None
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: MultiDict) -> QueueFilters:
        """Read the filters from a query string; a malformed value is reported and left out."""
        filters = cls(kind=args.get("kind") if args.get("kind") in KINDS else "claim")
        filters.county = args.get("county") or None
        for name, target in (("amount_min", "amount_min_fen"), ("amount_max", "amount_max_fen")):
            if args.get(name):
                try:
                    setattr(filters, target, yuan_to_fen(args[name]))
                except ValueError:
                    filters.errors[name] = args[name]
        if args.get("older_than"):
            # isdecimal, not isdigit: int() refuses "²"; and no more days than a date can go back.
            if args["older_than"].isdecimal() and int(args["older_than"]) <= 36_500:
                filters.older_than_days = int(args["older_than"])
            else:
                filters.errors["older_than"] = args["older_than"]
        return filters


@dataclass
class Queue:
    items: list[Any]
    counts: dict[str, int]
    total: int


def _filtered(filters: QueueFilters, kind: str) -> Select:
    if kind == "verification":
        model, submitted, waiting, amount = (
            VerificationRequest,
            VerificationRequest.submitted_at,
            [RequestState.SUBMITTED],
            None,
        )
    elif kind == "application":
        model, submitted, waiting, amount = (
            VoucherApplication,
            VoucherApplication.submitted_at,
            [ApplicationState.SUBMITTED, ApplicationState.PENDING_SECOND],
            VoucherApplication.amount_fen,
        )
    elif kind == "bank_account":
        model, submitted, waiting, amount = (
            BankAccount,
            BankAccount.entered_at,
            [BankAccountState.PENDING],
            None,
        )
    else:
        model, submitted, waiting, amount = (
            Claim,
            Claim.submitted_at,
            [ClaimState.SUBMITTED, ClaimState.PENDING_SECOND],
            select(func.coalesce(func.sum(ClaimFund.amount_fen), 0))
            .where(ClaimFund.claim_id == Claim.id)
            .scalar_subquery(),
        )
    stmt = (
        select(model)
        .join(Enterprise, Enterprise.id == model.enterprise_id)
        .where(model.state.in_(waiting))
        .order_by(submitted)
    )
    if filters.county:
        stmt = stmt.where(Enterprise.county == filters.county)
    if amount is not None and filters.amount_min_fen is not None:
        stmt = stmt.where(amount >= filters.amount_min_fen)
    if amount is not None and filters.amount_max_fen is not None:
        stmt = stmt.where(amount <= filters.amount_max_fen)
    if filters.older_than_days is not None:
        stmt = stmt.where(submitted <= clock.utcnow() - timedelta(days=filters.older_than_days))
    return stmt


def queue(filters: QueueFilters) -> Queue:
    """What waits for a decision, oldest first, with how many of each kind match the filters."""
    counts = {
        kind: db.session.scalar(select(func.count()).select_from(_filtered(filters, kind).subquery()))
        for kind in KINDS
    }
    # Only the enterprise is shown with each item: a wildcard eager load here pulled in every related row
    # (vouchers with their ledgers, claim items, users ...), some 100,000 objects for a few dozen claims.
    enterprise = QUEUE_MODELS[filters.kind].enterprise
    items = list(
        db.session.scalars(_filtered(filters, filters.kind).options(joinedload(enterprise)).limit(200))
    )
    return Queue(items=items, counts=counts, total=counts[filters.kind])


def history(object_type: str, object_id: Any) -> list[AuditEvent]:
    """The audit rows of one object, oldest first."""
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
            .order_by(AuditEvent.id)
        )
    )
