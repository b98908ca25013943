"""The disbursement batch's state machine: BATCH_TRANSITIONS and one function per transition.

Building gathers the payable claims into a DRAFT batch; exporting writes the bank file (DRAFT →
EXPORTED, and again from EXPORTED); marking paid (EXPORTED → PAID) pays every claim of the batch by
the claim's own PAYABLE → PAID transition. Each function checks the user's permission, changes the
state by a conditional UPDATE, writes the audit row with the state it found and queues the
notifications, in one transaction, taking its locks in the order of `portal.core.locks`.
`can_<action>(user, batch)` says whether a user may do it now; the pages ask them.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts.models import PAYEE_PROVIDER, User
from portal.core import audit, clock, exports
from portal.core.database import serialized_write
from portal.core.errors import InvalidTransition, NotFound, ValidationFailed
from portal.core.locks import Rank, lock_ids, lock_one, lock_where
from portal.core.money import fen_to_yuan
from portal.extensions import db
from portal.finance.models import BATCH_STATE_LABELS, BATCH_TRANSITIONS, BatchState, DisbursementBatch
from portal.finance.services import (
    BANK_FILE_FORMATS,
    FINANCE_ROLES,
    LOCK_TALLY,
    MONEY_FORMAT,
    ask_for_account,
    bank_file_headers,
    check_month,
    held_back_payees,
    month_of,
    payee_of,
    payments,
    queue_tally,
    refuse_closed,
    require_finance,
)
from portal.vouchers.claims import pay_claim
from portal.vouchers.models import Claim, ClaimState, Fund, Voucher
from portal.vouchers.services import transition


def _is_finance(user: User) -> bool:
    return user.is_authenticated and user.role in FINANCE_ROLES


def _allowed(batch: DisbursementBatch, action: str) -> bool:
    return (batch.state, action) in BATCH_TRANSITIONS


def can_build_batch(user: User) -> bool:
    return _is_finance(user)


def can_export_batch(user: User, batch: DisbursementBatch) -> bool:
    return _is_finance(user) and _allowed(batch, "export")


def can_mark_batch_paid(user: User, batch: DisbursementBatch) -> bool:
    return _is_finance(user) and _allowed(batch, "pay")


def get_batch(user: User, batch_id: int) -> DisbursementBatch | None:
    """A batch for its page, for bureau finance; None if there is no such batch."""
    require_finance(user)
    return db.session.get(DisbursementBatch, batch_id)


def _transition(
    batch: DisbursementBatch,
    action: str,
    user: User,
    *,
    after: dict[str, Any],
    reason: str | None = None,
    **values,
) -> BatchState:
    """Move a locked batch along the table (the vouchers' shared `transition`), with its audit row;
    returns the state it was in."""
    before = transition(
        batch,
        BATCH_TRANSITIONS,
        action,
        _("A batch that is %(state)s cannot be changed this way.", state=BATCH_STATE_LABELS[batch.state]),
        {"state": batch.state.value, "action": action},
        lost=_("Someone else changed this batch a moment ago; reload the page."),
        **values,
    )
    audit.record(
        f"batch.{batch.state.value}",
        "batch",
        batch.id,
        before={"state": before.value},
        after={"state": batch.state.value, **after},
        reason=reason,
        actor_id=user.id,
    )
    return before


def build_batch(user: User, month: str) -> DisbursementBatch:
    """Gather every payable claim not yet in a batch into a new DRAFT batch of the month.

    A claim's payee is its enterprise, or its provider for a claim redeemed at payment. A payee
    without a verified bank account is refused: its claims stay payable and out of the batch, the
    batch names it, and its users are told what is missing.
    """
    require_finance(user)
    check_month(month)
    with serialized_write((LOCK_TALLY, 0)):
        refuse_closed(month)
        claims = lock_where(Rank.CLAIMS, Claim, Claim.state == ClaimState.PAYABLE, Claim.batch_id.is_(None))
        if not claims:
            raise InvalidTransition(_("No payable claim is waiting for a batch."))
        accounts = banking.verified_payee_accounts(payee_of(c) for c in claims)
        ready = [c for c in claims if payee_of(c) in accounts]
        held_back = held_back_payees([c for c in claims if payee_of(c) not in accounts])
        if not ready:
            raise InvalidTransition(
                _(
                    "No payee of the payable claims has a verified bank account: %(payees)s.",
                    payees=", ".join(p["name"] for p in held_back),
                ),
                {"held_back": held_back},
            )
        batch = DisbursementBatch(
            month=month,
            state=BatchState.DRAFT,
            fund_amounts=_fund_amounts(ready),
            claims=len(ready),
            created_by_id=user.id,
            held_back=held_back,
        )
        db.session.add(batch)
        db.session.flush()
        for claim in ready:
            claim.batch_id = batch.id
        for payee in held_back:
            ask_for_account(batch, payee)
        audit.record(
            "batch.built",
            "batch",
            batch.id,
            after={
                "state": BatchState.DRAFT.value,
                "month": month,
                "claims": len(ready),
                "total_fen": batch.total_fen,
                "held_back": [p["enterprise_id"] for p in held_back if p["payee_kind"] != PAYEE_PROVIDER],
                "held_back_providers": [
                    p["institution_id"] for p in held_back if p["payee_kind"] == PAYEE_PROVIDER
                ],
            },
            actor_id=user.id,
        )
        db.session.commit()
    return batch


def _fund_amounts(claims: list[Claim]) -> dict[str, int]:
    """What the claims take from each fund, by name, in the order the claims' funds come."""
    amounts: dict[str, int] = {}
    for claim in claims:
        for name, amount in claim.fund_amounts().items():
            amounts[name] = amounts.get(name, 0) + amount
    return amounts


def export_batch(user: User, batch_id: int, fmt: str = "csv") -> str | bytes:
    """The batch as a file for the bank (CSV or XLSX, codes and account numbers as text, a totals row),
    into each payee's verified account; the batch is marked exported and the accounts used recorded."""
    require_finance(user)
    if fmt not in BANK_FILE_FORMATS:
        raise ValidationFailed(_("Unknown format."), {"format": _("CSV or XLSX.")})
    with serialized_write():
        batch = lock_one(Rank.BATCH, DisbursementBatch, batch_id)
        if batch is None:
            raise NotFound(_("No such batch."))
        if not _allowed(batch, "export"):
            raise InvalidTransition(
                _("This batch is already paid."), {"state": batch.state.value, "action": "export"}
            )
        lines = payments(batch)
        missing = [p.payee.name for p in lines if p.account is None]
        if missing:
            raise InvalidTransition(
                _("No verified bank account for: %(payees)s.", payees=", ".join(missing)),
                {"payees": missing},
            )
        rows = [
            bank_file_headers(),
            *(p.cells() for p in lines),
            [_("Total"), "", "", "", "", fen_to_yuan(batch.total_fen), "", ""],
        ]
        body: str | bytes = (
            exports.csv_text(rows)
            if fmt == "csv"
            else exports.xlsx_bytes(_("Payments"), rows, {5: MONEY_FORMAT})
        )
        values: dict[str, Any] = {"exported_at": clock.utcnow()} if batch.state is BatchState.DRAFT else {}
        _transition(
            batch,
            "export",
            user,
            # Which version of each payee's account went to the bank: enterprises' and providers'.
            # (Every line has an account: a missing one was refused above.)
            after={"format": fmt, **_accounts_used(lines)},
            **values,
        )
        db.session.commit()
    return body


def _accounts_used(lines) -> dict[str, dict[str, int]]:
    """The account version of each line, per payee kind: {"accounts": {enterprise id: account id},
    "provider_accounts": {institution id: account id}}."""
    used: dict[str, dict[str, int]] = {"accounts": {}, "provider_accounts": {}}
    for line in lines:
        if line.account is not None:
            group = "provider_accounts" if line.payee_kind == PAYEE_PROVIDER else "accounts"
            used[group][str(line.payee.id)] = line.account.id
    return used


def mark_batch_paid(user: User, batch_id: int, reference: str) -> DisbursementBatch:
    """The bank has paid: every claim of the batch is paid, funds and vouchers record it, payees hear."""
    require_finance(user)
    reference = (reference or "").strip()
    if not reference:
        raise ValidationFailed(_("Give the bank's payment reference."), {"reference": _("Required.")})
    now = clock.utcnow()
    month = month_of(now)
    with serialized_write((LOCK_TALLY, 0)):
        # The lock order of portal.core.locks: batch, its claims, their schemes' funds, their vouchers.
        batch = lock_one(Rank.BATCH, DisbursementBatch, batch_id)
        if batch is None:
            raise NotFound(_("No such batch."))
        if not _allowed(batch, "pay"):
            raise InvalidTransition(
                _("Export the batch for the bank before marking it paid."),
                {"state": batch.state.value, "action": "pay"},
            )
        refuse_closed(batch.month)
        refuse_closed(month)
        claims = lock_where(Rank.CLAIMS, Claim, Claim.batch_id == batch.id)
        voucher_ids = {c.voucher_id for c in claims}
        # A voucher never changes scheme: its scheme id is read unlocked, before the funds are locked.
        scheme_ids = set(db.session.scalars(select(Voucher.scheme_id).where(Voucher.id.in_(voucher_ids))))
        funds: dict[int, dict[str, Fund]] = {scheme_id: {} for scheme_id in scheme_ids}
        for fund in lock_where(Rank.FUNDS, Fund, Fund.scheme_id.in_(scheme_ids)):
            funds[fund.scheme_id][fund.name] = fund
        vouchers = lock_ids(Rank.VOUCHERS, Voucher, voucher_ids)
        for claim in claims:
            voucher = vouchers[claim.voucher_id]
            pay_claim(user, claim, voucher, funds[voucher.scheme_id], reference=reference, month=month)
        _transition(
            batch, "pay", user, after={}, reason=reference, paid_at=now, paid_reference=reference[:80]
        )
        queue_tally(month)
        db.session.commit()
    return batch
