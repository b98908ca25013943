"""Enterprises' bank accounts: entered by the account holder, in effect only once a reviewer verifies them.

Diverting a subsidy by changing the account is the classic fraud. So an account is never edited: each
change is a new version that waits for a reviewer, the version in effect stays in effect until then,
every version and decision is kept (who entered it, who verified or rejected it, when), each state
change writes an audit row, and every user of the enterprise is told by mail of each step. Finance
reads the verified version from here (accounts lies below both vouchers and finance).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from portal.accounts import mail
from portal.accounts.members import users_of_enterprise
from portal.accounts.models import BankAccount, BankAccountState, Enterprise, User
from portal.accounts.services import is_holder, require_holder
from portal.core import audit, clock
from portal.core.database import locked, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.core.text import normalize
from portal.extensions import db

State = BankAccountState
# The bank account's state machine, in one place: (state, action) -> new state.
TRANSITIONS: dict[tuple[BankAccountState, str], BankAccountState] = {
    (State.PENDING, "verify"): State.VERIFIED,
    (State.PENDING, "reject"): State.REJECTED,
    # The holder entered a newer version before a reviewer decided this one.
    (State.PENDING, "withdraw"): State.WITHDRAWN,
    # A newer version was verified: this one is no longer where the money goes.
    (State.VERIFIED, "supersede"): State.SUPERSEDED,
}
DECISIONS = ("verify", "reject")
REVIEW_ROLES = (Role.REVIEWER, Role.ADMIN)
# Chinese account numbers run from about 9 (some corporate accounts) to 19 (cards) or 25 digits.
MIN_DIGITS, MAX_DIGITS = 8, 32
_NUMBER = re.compile(r"[0-9 ]+")
LINK = "/vouchers/bank-account"


@dataclass(frozen=True)
class BankAccountData:
    account_name: str
    bank_name: str
    account_number: str


def clean_account(data: BankAccountData) -> BankAccountData:
    """The entry as stored (spaces collapsed, the number as bare digits), or every field's problem."""
    name = " ".join((data.account_name or "").split())
    bank = " ".join((data.bank_name or "").split())
    # NFKC: full-width digits and the ideographic space typed by a Chinese input method count too.
    number = unicodedata.normalize("NFKC", data.account_number or "").strip()
    fields: dict[str, str] = {}
    if len(name) < 2:
        fields["account_name"] = _("The account name, exactly as the bank holds it.")
    elif len(name) > 100:
        fields["account_name"] = _("At most 100 characters.")
    if len(bank) < 4:
        fields["bank_name"] = _(
            "The bank and its branch, e.g. Industrial and Commercial Bank of China, Liaocheng Branch."
        )
    elif len(bank) > 100:
        fields["bank_name"] = _("At most 100 characters.")
    digits = number.replace(" ", "")
    if not number or not _NUMBER.fullmatch(number):
        fields["account_number"] = _("Digits only; spaces between groups are fine.")
    elif not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        fields["account_number"] = _(
            "An account number has %(min)d to %(max)d digits.", min=MIN_DIGITS, max=MAX_DIGITS
        )
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    return BankAccountData(name, bank, digits)


def name_matches(account: BankAccount, enterprise: Enterprise) -> bool:
    """Whether the account is in the enterprise's own registered name (width, case and spaces aside)."""
    return normalize(account.account_name).replace(" ", "") == normalize(enterprise.name).replace(" ", "")


# --- reading ------------------------------------------------------------------------------------


def verified_account(enterprise_id: int) -> BankAccount | None:
    """The account the enterprise's subsidies are paid into now, if a reviewer has verified one."""
    return verified_accounts([enterprise_id]).get(enterprise_id)


def verified_accounts(enterprise_ids) -> dict[int, BankAccount]:
    """The verified account of each of these enterprises that has one."""
    ids = sorted(set(enterprise_ids))
    if not ids:
        return {}
    rows = db.session.scalars(
        select(BankAccount).where(BankAccount.enterprise_id.in_(ids), BankAccount.state == State.VERIFIED)
    )
    return {row.enterprise_id: row for row in rows}


def versions(enterprise_id: int) -> list[BankAccount]:
    """Every version of the enterprise's account, newest first, with who entered and decided it."""
    return list(
        db.session.scalars(
            select(BankAccount)
            .where(BankAccount.enterprise_id == enterprise_id)
            .options(joinedload(BankAccount.entered_by), joinedload(BankAccount.decided_by))
            .order_by(BankAccount.version.desc())
        )
    )


@dataclass
class Overview:
    """What the enterprise's bank account page shows."""

    enterprise: Enterprise
    current: BankAccount | None
    pending: BankAccount | None
    history: list[BankAccount]
    may_change: bool
    holder: User | None


def overview(user: User) -> Overview:
    """The enterprise's account in effect, the change waiting for a reviewer, and every version."""
    # (An enterprise account always has its enterprise: a check constraint; the test narrows the type.)
    if user.role is not Role.ENTERPRISE or user.enterprise_id is None:
        raise Forbidden(_("Only enterprise accounts have a bank account here."))
    history = versions(user.enterprise_id)
    holder = db.session.scalar(
        select(User).where(User.enterprise_id == user.enterprise_id, User.is_holder.is_(True))
    )
    return Overview(
        enterprise=db.session.get_one(Enterprise, user.enterprise_id),
        current=next((v for v in history if v.state is State.VERIFIED), None),
        pending=next((v for v in history if v.state is State.PENDING), None),
        history=history,
        may_change=can_change_bank_account(user),
        holder=holder,
    )


def get_for_review(user: User, account_id: int) -> BankAccount:
    """A version as a reviewer sees it (with the enterprise)."""
    account = db.session.get(BankAccount, account_id, options=[joinedload(BankAccount.enterprise)])
    if account is None or not user.is_authenticated or user.role not in REVIEW_ROLES:
        raise NotFound(_("No such bank account."))
    return account


def can_change_bank_account(user: User) -> bool:
    """Only the enterprise's account holder enters or changes its bank account."""
    return user.is_authenticated and is_holder(user)


def can_decide_bank_account(user: User, account: BankAccount) -> bool:
    """Reviewers verify or reject a version while it waits."""
    return user.is_authenticated and user.role in REVIEW_ROLES and (account.state, "verify") in TRANSITIONS


# --- the transitions ----------------------------------------------------------------------------


def _snapshot(account: BankAccount) -> dict[str, Any]:
    return {
        "version": account.version,
        "account_name": account.account_name,
        "bank_name": account.bank_name,
        "account_number": account.account_number,
    }


def _target(account: BankAccount, action: str) -> BankAccountState:
    """Where the action leads from the account's state, or the refusal."""
    target = TRANSITIONS.get((account.state, action))
    if target is None:
        raise InvalidTransition(
            _("This bank account has already been decided."), {"state": account.state.value}
        )
    return target


def _move(account: BankAccount, action: str, actor: User, reason: str | None = None) -> None:
    """Apply one transition of the table, with its audit row."""
    target = _target(account, action)
    before, now = account.state, clock.utcnow()
    account.state = target
    if target in (State.VERIFIED, State.REJECTED):
        account.decided_by_id, account.decided_at, account.reason = actor.id, now, reason
    else:
        account.ended_at = now
    audit.record(
        f"bank_account.{target.value}",
        "bank_account",
        account.id,
        before={"state": before.value},
        after={"state": target.value, "version": account.version, "enterprise": account.enterprise_id},
        reason=reason,
        actor_id=actor.id,
    )
    # Written at once: the one-per-enterprise indexes must see the old version leave its state first.
    db.session.flush()


def _tell(account: BankAccount, kind: str, **payload: Any) -> None:
    """Every user of the enterprise hears of the change, the last digits only (mail is not a vault)."""
    details = {
        "account_name": account.account_name,
        "bank_name": account.bank_name,
        "last_digits": account.last_digits,
        "version": account.version,
        **payload,
    }
    mail.tell(
        users_of_enterprise(account.enterprise_id),
        kind,
        f"bank_account:{account.id}:{kind}",
        link=LINK,
        **details,
    )


def record_bank_account(user: User, data: BankAccountData) -> BankAccount:
    """The holder enters a new or changed account; it waits for a reviewer, the old one stays in effect."""
    if not user.is_authenticated or user.role is not Role.ENTERPRISE or user.enterprise_id is None:
        raise Forbidden(_("Only enterprise accounts have a bank account here."))
    require_holder(user)
    entry = clean_account(data)
    with serialized_write():
        # One change at a time per enterprise (PostgreSQL: the row lock; SQLite: the write lock).
        locked(Enterprise, user.enterprise_id)
        history = versions(user.enterprise_id)
        same = {
            (v.account_name, v.bank_name, v.account_number): v
            for v in history
            if v.state in (State.PENDING, State.VERIFIED)
        }
        match = same.get((entry.account_name, entry.bank_name, entry.account_number))
        if match is not None:
            raise ValidationFailed(
                _("This account is already in effect.")
                if match.state is State.VERIFIED
                else _("This account is already waiting for verification.")
            )
        for waiting in (v for v in history if v.state is State.PENDING):
            _move(waiting, "withdraw", user, _("Replaced by a newer entry."))
        account = BankAccount(
            enterprise_id=user.enterprise_id,
            version=(
                db.session.scalar(
                    select(func.max(BankAccount.version)).where(
                        BankAccount.enterprise_id == user.enterprise_id
                    )
                )
                or 0
            )
            + 1,
            account_name=entry.account_name,
            bank_name=entry.bank_name,
            account_number=entry.account_number,
            state=State.PENDING,
            entered_by_id=user.id,
            entered_at=clock.utcnow(),
        )
        db.session.add(account)
        db.session.flush()
        audit.record(
            "bank_account.submitted",
            "bank_account",
            account.id,
            after={"state": "pending", **_snapshot(account), "enterprise": account.enterprise_id},
            actor_id=user.id,
        )
        _tell(account, "bank_account.submitted", by=user.full_name or user.username)
        db.session.commit()
    return account


def decide_bank_account(
    reviewer: User, account_id: int, action: str, reason: str | None = None
) -> BankAccount:
    """A reviewer verifies a waiting version (it takes effect, the old one is replaced) or rejects it."""
    if not reviewer.is_authenticated or reviewer.role not in REVIEW_ROLES:
        raise Forbidden(_("Only bureau reviewers can decide this."))
    if action not in DECISIONS:
        raise ValidationFailed(_("Unknown decision."), {"action": _("Unknown decision.")})
    reason = (reason or "").strip() or None
    with serialized_write():
        enterprise_id = db.session.scalar(
            select(BankAccount.enterprise_id).where(BankAccount.id == account_id)
        )
        if enterprise_id is None:
            raise NotFound(_("No such bank account."))
        enterprise = locked(Enterprise, enterprise_id)
        account = locked(BankAccount, account_id)
        _target(account, action)
        if action == "reject" and not reason:
            raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
        if action == "verify" and not reason and not name_matches(account, enterprise):
            message = _(
                "The account name differs from the enterprise's registered name: verify only with a "
                "recorded reason."
            )
            raise ValidationFailed(message, {"reason": message})
        if action == "verify":
            for old in db.session.scalars(
                select(BankAccount).where(
                    BankAccount.enterprise_id == enterprise_id, BankAccount.state == State.VERIFIED
                )
            ):
                _move(old, "supersede", reviewer)
        _move(account, action, reviewer, reason)
        _tell(account, f"bank_account.{account.state.value}", reason=reason or "")
        db.session.commit()
    return account
