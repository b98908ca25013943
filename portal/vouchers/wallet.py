"""The vouchers themselves: who sees which, and their expiry (the unused balance returns to the budget)."""

from __future__ import annotations

from datetime import date

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.models import User
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import NotFound
from portal.core.locks import Rank, lock_one
from portal.core.permissions import BUREAU_ROLES, Role
from portal.extensions import db
from portal.vouchers.models import LedgerEntry, LedgerKind, Scheme, Voucher, VoucherState
from portal.vouchers.services import can_view_enterprise_object, states_allowing, transition

# The voucher's state machine: (state, action) -> new state. Approving an application issues it ACTIVE.
VOUCHER_TRANSITIONS: dict[tuple[VoucherState, str], VoucherState] = {
    (VoucherState.ACTIVE, "expire"): VoucherState.EXPIRED,
}


def vouchers_for(user: User) -> list[Voucher]:
    stmt = (
        select(Voucher)
        .options(joinedload(Voucher.scheme), selectinload(Voucher.ledger))
        .order_by(Voucher.id.desc())
    )
    if user.role is Role.ENTERPRISE:
        stmt = stmt.where(Voucher.enterprise_id == user.enterprise_id)
    elif user.role not in BUREAU_ROLES:
        return []
    return list(db.session.scalars(stmt))


def get_voucher(user: User, voucher_id: int) -> Voucher:
    voucher = db.session.get(
        Voucher, voucher_id, options=[selectinload(Voucher.ledger), joinedload(Voucher.scheme)]
    )
    if voucher is None or not can_view_enterprise_object(user, voucher.enterprise_id):
        raise NotFound(_("No such voucher."))
    return voucher


def can_claim_from(voucher: Voucher) -> bool:
    """Whether claims may be made against the voucher (a claim spends only an active one)."""
    return voucher.state is VoucherState.ACTIVE


def expire_vouchers(today: date | None = None) -> int:
    """Vouchers past their validity expire; their unused balance returns to the scheme's budget."""
    today = today or clock.local_today()
    due = db.session.scalars(
        select(Voucher.id).where(
            Voucher.state.in_(states_allowing(VOUCHER_TRANSITIONS, "expire")),
            Voucher.valid_until < today,
        )
    ).all()
    for voucher_id in due:
        expire_voucher(voucher_id)
    return len(due)


def expire_voucher(voucher_id: int) -> bool:
    """ACTIVE -> EXPIRED (the daily task, no one's decision): whether it expired now."""
    # A voucher never changes scheme: read it unlocked, so the scheme is locked before the voucher.
    scheme_id = db.session.scalar(select(Voucher.scheme_id).where(Voucher.id == voucher_id))
    with serialized_write():
        scheme = lock_one(Rank.SCHEME, Scheme, scheme_id)
        voucher = lock_one(Rank.VOUCHERS, Voucher, voucher_id)
        if (voucher.state, "expire") not in VOUCHER_TRANSITIONS:
            return False  # expired by an earlier run
        unused = voucher.balance_fen
        before = transition(
            voucher,
            VOUCHER_TRANSITIONS,
            "expire",
            _("This voucher has already expired."),
            balance_fen=0,
            released_fen=unused,
        )
        scheme.allocated_fen -= unused
        db.session.add(
            LedgerEntry(
                voucher_id=voucher.id, kind=LedgerKind.RELEASED, amount_fen=unused, balance_after_fen=0
            )
        )
        audit.record(
            "voucher.expired",
            "voucher",
            voucher.id,
            before={"state": before.value, "balance_fen": unused},
            after={"state": voucher.state.value, "released_fen": unused},
        )
        db.session.commit()
    return True
