"""What the voucher modules share: who may decide, who sees what, and how a state changes.

The subjects live in their own modules: `schemes`, `verification`, `applications`, `wallet` (the
vouchers themselves), `checks`, `subsidy`, `claims`, `notice`, `review` and `hints`. Each state
machine is one table, `(state, action) -> new state`, beside one function per transition; every
transition goes through `transition` below.

Money moves only inside `serialized_write` transactions that lock what they spend from through
`portal.core.locks`, in the one order written there for every money path, so concurrent reviewers
and finance can never overspend a voucher, a cap or a fund, approve a claim twice, nor deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import update

from portal.accounts.members import users_of_enterprise, users_with_role
from portal.accounts.models import Enterprise, User
from portal.accounts.models import VerificationState as EnterpriseState
from portal.core.database import changed_rows
from portal.core.errors import Forbidden, InvalidTransition, ValidationFailed
from portal.core.permissions import BUREAU_ROLES, Role
from portal.extensions import db
from portal.notifications.services import notify

REVIEW_ROLES = (Role.REVIEWER, Role.ADMIN)
# A transition table: (state, action) -> the state it leads to (None: the row is thrown away).
Table = Mapping[tuple[Any, str], Any]


# --- state machines -----------------------------------------------------------------------------


def transition(
    row: Any,
    table: Table,
    action: str,
    refusal: str,
    details: dict[str, Any] | None = None,
    *,
    lost: str | None = None,
    **values: Any,
) -> Any:
    """Move `row` by `action` along `table`; returns the state it left.

    The state changes by a conditional UPDATE (WHERE the state is still the one read), so of two
    concurrent changes only one can succeed even where nothing locked the row; the loser is refused
    with `lost` if given (a message alone), otherwise with `refusal` (and `details`), as is an action
    the table does not allow from the current state. `values` are written in the same UPDATE.
    """
    model, before = type(row), row.state
    refused = InvalidTransition(refusal, {"state": before.value} if details is None else details)
    if (before, action) not in table:
        raise refused
    changed = changed_rows(
        update(model)
        .where(model.id == row.id, model.state == before)
        .values(state=table[(before, action)], **values)
        .execution_options(synchronize_session="fetch")
    )
    if changed != 1:
        raise refused if lost is None else InvalidTransition(lost)
    return before


def states_allowing(table: Table, action: str) -> tuple[Any, ...]:
    """The states from which `action` is allowed, in the enum's order (e.g. what waits for a decision)."""
    states = {state for state, allowed in table if allowed == action}
    return tuple(state for state in type(next(iter(states))) if state in states) if states else ()


def open_states(table: Table) -> tuple[Any, ...]:
    """The states something can still happen in (every state the table leads out of)."""
    states = {state for state, _action in table}
    return tuple(state for state in type(next(iter(states))) if state in states)


# --- who may do what ----------------------------------------------------------------------------


def is_reviewer(user: User) -> bool:
    return user.is_authenticated and user.role in REVIEW_ROLES


def require_reviewer(user: User) -> None:
    if not is_reviewer(user):
        raise Forbidden(_("Only bureau reviewers can decide this."))


def can_view_enterprise_object(user: User, enterprise_id: int) -> bool:
    """Vouchers, applications and claims are the enterprise's own business and the bureau's."""
    if not user.is_authenticated:
        return False
    if user.role is Role.ENTERPRISE:
        return user.enterprise_id == enterprise_id
    return user.role in BUREAU_ROLES


def is_enterprise_user(user: User, enterprise_id: int) -> bool:
    return user.is_authenticated and user.role is Role.ENTERPRISE and user.enterprise_id == enterprise_id


def require_verified_enterprise(user: User) -> Enterprise:
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts can do this."))
    enterprise = db.session.get_one(Enterprise, user.enterprise_id)
    if enterprise.verification_state is not EnterpriseState.VERIFIED:
        raise Forbidden(_("Your enterprise must be verified by the bureau first."))
    return enterprise


def approved_once_by(user: User, item: Any) -> bool:
    """Whether the user gave the first of the two approvals this item waits for (four eyes)."""
    return item.state.value == "pending_second" and item.first_reviewer_id == user.id


def refuse_own_approval(user: User, item: Any) -> None:
    if approved_once_by(user, item):
        raise Forbidden(_("A second reviewer must confirm this: you cannot approve your own approval."))


def four_eyes(threshold_fen: int, amount_fen: int) -> bool:
    """Whether an amount needs a second reviewer's approval."""
    return amount_fen > threshold_fen


def required_reason(text: str | None, field: str) -> str:
    """A rejection or a return says why."""
    reason = (text or "").strip()
    if not reason:
        raise ValidationFailed(_("Please give a reason."), {field: _("Required.")})
    return reason


# --- who is told ---------------------------------------------------------------------------------


def tell_enterprise(enterprise_id: int, kind: str, key: str, link: str, **payload: Any) -> None:
    notify(users_of_enterprise(enterprise_id), kind, key, payload=payload, link=link)


def tell_other_reviewers(reviewer: User, kind: str, key: str, link: str, **payload: Any) -> None:
    """The reviewers other than the one who approved first learn that a second approval waits for them."""
    notify(
        [u for u in users_with_role(Role.REVIEWER) if u.id != reviewer.id],
        kind,
        key,
        payload=payload,
        link=link,
    )
