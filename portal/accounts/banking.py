"""Payees' bank accounts: in effect only once a reviewer verifies them.

A payee is an enterprise (its subsidies, claimed back) or a provider institution (the subsidised part
of the services it redeemed at payment). An enterprise's account holder enters the enterprise's
account; any provider user of an institution enters the institution's.

Diverting a subsidy by changing the account is the classic fraud. So an account is never edited: each
change is a new version that waits for a reviewer, the version in effect stays in effect until then,
every version and decision is kept (who entered it, who verified or rejected it, when), each state
change writes an audit row, and every user of the payee is told by mail of each step. Finance
reads the verified version from here (accounts lies below both vouchers and finance).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.accounts import mail
from portal.accounts.members import users_of_enterprise, users_of_institution
from portal.accounts.models import (
    PAYEE_ENTERPRISE,
    PAYEE_PROVIDER,
    BankAccount,
    BankAccountState,
    Enterprise,
    Institution,
    User,
)
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
PROVIDER_LINK = "/vouchers/provider/bank-account"
# Per payee kind: the column naming the payee, its table, the page where its users keep the account,
# and the prefix of its notifications.
PAYEE_COLUMNS = {PAYEE_ENTERPRISE: BankAccount.enterprise_id, PAYEE_PROVIDER: BankAccount.institution_id}
PAYEE_MODELS: dict[str, type[Enterprise] | type[Institution]] = {
    PAYEE_ENTERPRISE: Enterprise,
    PAYEE_PROVIDER: Institution,
}


def _payee(kind: str, payee_id: int) -> Enterprise | Institution:
    """The enterprise or the institution a payee of `kind` is."""
    if kind == PAYEE_ENTERPRISE:
        return db.session.get_one(Enterprise, payee_id)
    return db.session.get_one(Institution, payee_id)


LINKS = {PAYEE_ENTERPRISE: LINK, PAYEE_PROVIDER: PROVIDER_LINK}
MESSAGE_PREFIX = {PAYEE_ENTERPRISE: "bank_account", PAYEE_PROVIDER: "provider_account"}


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


def name_matches(account: BankAccount, payee: Enterprise | Institution) -> bool:
    """Whether the account is in the payee's own registered name (width, case and spaces aside)."""
    return normalize(account.account_name).replace(" ", "") == normalize(payee.name).replace(" ", "")


# --- reading ------------------------------------------------------------------------------------


def verified_account(enterprise_id: int) -> BankAccount | None:
    """The account the enterprise's subsidies are paid into now, if a reviewer has verified one."""
    return verified_accounts([enterprise_id]).get(enterprise_id)


def verified_accounts(payee_ids, kind: str = PAYEE_ENTERPRISE) -> dict[int, BankAccount]:
    """The verified account of each of these enterprises (or institutions) that has one."""
    ids = sorted(set(payee_ids))
    if not ids:
        return {}
    column = PAYEE_COLUMNS[kind]
    rows = db.session.scalars(select(BankAccount).where(column.in_(ids), BankAccount.state == State.VERIFIED))
    return {row.payee_id: row for row in rows}


def verified_payee_accounts(payees) -> dict[tuple[str, int], BankAccount]:
    """The verified account of each (payee kind, id) that has one: enterprises and providers alike."""
    wanted = set(payees)
    found: dict[tuple[str, int], BankAccount] = {}
    for kind in PAYEE_COLUMNS:
        accounts = verified_accounts((i for k, i in wanted if k == kind), kind)
        found.update({(kind, payee_id): account for payee_id, account in accounts.items()})
    return found


def versions(payee_id: int, kind: str = PAYEE_ENTERPRISE) -> list[BankAccount]:
    """Every version of the payee's account, newest first, with who entered and decided it."""
    return list(
        db.session.scalars(
            select(BankAccount)
            .where(PAYEE_COLUMNS[kind] == payee_id)
            .options(joinedload(BankAccount.entered_by), joinedload(BankAccount.decided_by))
            .order_by(BankAccount.version.desc())
        )
    )


def payee_of_user(user: User) -> tuple[str, int]:
    """Whose account a user keeps: their enterprise's, or (a provider) their institution's."""
    if user.is_authenticated and user.role is Role.ENTERPRISE and user.enterprise_id is not None:
        return PAYEE_ENTERPRISE, user.enterprise_id
    if user.is_authenticated and user.role is Role.PROVIDER and user.institution_id is not None:
        return PAYEE_PROVIDER, user.institution_id
    raise Forbidden(_("Only enterprise and provider accounts have a bank account here."))


@dataclass
class Overview:
    """What the payee's bank account page shows."""

    kind: str
    payee: Enterprise | Institution
    current: BankAccount | None
    pending: BankAccount | None
    history: list[BankAccount]
    may_change: bool
    holder: User | None


def overview(user: User) -> Overview:
    """The payee's account in effect, the change waiting for a reviewer, and every version (the
    enterprise's for its users, the institution's for its providers)."""
    kind, payee_id = payee_of_user(user)
    history = versions(payee_id, kind)
    holder = (
        db.session.scalar(select(User).where(User.enterprise_id == payee_id, User.is_holder.is_(True)))
        if kind == PAYEE_ENTERPRISE
        else None
    )
    return Overview(
        kind=kind,
        payee=_payee(kind, payee_id),
        current=next((v for v in history if v.state is State.VERIFIED), None),
        pending=next((v for v in history if v.state is State.PENDING), None),
        history=history,
        may_change=can_change_bank_account(user),
        holder=holder,
    )


def get_for_review(user: User, account_id: int) -> BankAccount:
    """A version as a reviewer sees it (with the enterprise or institution)."""
    account = db.session.get(
        BankAccount,
        account_id,
        options=[joinedload(BankAccount.enterprise), joinedload(BankAccount.institution)],
    )
    if account is None or not user.is_authenticated or user.role not in REVIEW_ROLES:
        raise NotFound(_("No such bank account."))
    return account


def can_change_bank_account(user: User) -> bool:
    """The enterprise's account holder enters or changes its bank account; any provider user of an
    institution, the institution's."""
    if not user.is_authenticated:
        return False
    if user.role is Role.PROVIDER:
        return user.institution_id is not None
    return is_holder(user)


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
        after={"state": target.value, "version": account.version, **_payee_field(account)},
        reason=reason,
        actor_id=actor.id,
    )
    # Written at once: the one-per-enterprise indexes must see the old version leave its state first.
    db.session.flush()


def _payee_field(account: BankAccount) -> dict[str, int]:
    """How an audit row names the payee: {"enterprise": id} or {"institution": id}."""
    name = "institution" if account.payee_kind == PAYEE_PROVIDER else "enterprise"
    return {name: account.payee_id}


def _tell(account: BankAccount, event: str, **payload: Any) -> None:
    """Every user of the payee hears of the change, the last digits only (mail is not a vault)."""
    kind = f"{MESSAGE_PREFIX[account.payee_kind]}.{event}"
    users = (
        users_of_institution(account.payee_id)
        if account.payee_kind == PAYEE_PROVIDER
        else users_of_enterprise(account.payee_id)
    )
    details = {
        "account_name": account.account_name,
        "bank_name": account.bank_name,
        "last_digits": account.last_digits,
        "version": account.version,
        **payload,
    }
    mail.tell(users, kind, f"bank_account:{account.id}:{kind}", link=LINKS[account.payee_kind], **details)


def record_bank_account(user: User, data: BankAccountData) -> BankAccount:
    """The holder (of an enterprise) or a provider user (of an institution) enters a new or changed
    account; it waits for a reviewer, the old one stays in effect."""
    kind, payee_id = payee_of_user(user)
    if kind == PAYEE_ENTERPRISE:
        require_holder(user)
    entry = clean_account(data)
    with serialized_write():
        # One change at a time per payee (PostgreSQL: the row lock; SQLite: the write lock).
        locked(PAYEE_MODELS[kind], payee_id)
        history = versions(payee_id, kind)
        _refuse_same(history, entry)
        for waiting in (v for v in history if v.state is State.PENDING):
            _move(waiting, "withdraw", user, _("Replaced by a newer entry."))
        account = BankAccount(
            version=max((v.version for v in history), default=0) + 1,
            account_name=entry.account_name,
            bank_name=entry.bank_name,
            account_number=entry.account_number,
            state=State.PENDING,
            entered_by_id=user.id,
            entered_at=clock.utcnow(),
        )
        setattr(account, PAYEE_COLUMNS[kind].key, payee_id)
        db.session.add(account)
        db.session.flush()
        audit.record(
            "bank_account.submitted",
            "bank_account",
            account.id,
            after={"state": "pending", **_snapshot(account), **_payee_field(account)},
            actor_id=user.id,
        )
        _tell(account, "submitted", by=user.full_name or user.username)
        db.session.commit()
    return account


def _refuse_same(history: list[BankAccount], entry: BankAccountData) -> None:
    """The same account again, in effect or waiting, is refused."""
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
        owner = db.session.execute(
            select(BankAccount.enterprise_id, BankAccount.institution_id).where(BankAccount.id == account_id)
        ).first()
        if owner is None:
            raise NotFound(_("No such bank account."))
        kind = PAYEE_ENTERPRISE if owner.enterprise_id is not None else PAYEE_PROVIDER
        payee_id = owner.enterprise_id if kind == PAYEE_ENTERPRISE else owner.institution_id
        payee = locked(PAYEE_MODELS[kind], payee_id)
        account = locked(BankAccount, account_id)
        _target(account, action)
        if action == "reject" and not reason:
            raise ValidationFailed(_("Please give a reason."), {"reason": _("Required.")})
        if action == "verify" and not reason and not name_matches(account, payee):
            message = (
                _(
                    "The account name differs from the enterprise's registered name: verify only with a "
                    "recorded reason."
                )
                if kind == PAYEE_ENTERPRISE
                else _(
                    "The account name differs from the institution's registered name: verify only with "
                    "a recorded reason."
                )
            )
            raise ValidationFailed(message, {"reason": message})
        if action == "verify":
            for old in db.session.scalars(
                select(BankAccount).where(
                    PAYEE_COLUMNS[kind] == payee_id, BankAccount.state == State.VERIFIED
                )
            ):
                _move(old, "supersede", reviewer)
        _move(account, action, reviewer, reason)
        _tell(account, account.state.value, reason=reason or "")
        db.session.commit()
    return account
