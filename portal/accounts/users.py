"""Accounts as the bureau manages them, and deactivation.

Administrators search every account, create staff accounts (providers, reviewers, finance, admins),
change a staff account's role, institution and contact details, deactivate and reactivate accounts,
send reset links and make an enterprise user the account holder. An enterprise's holder deactivates
and reactivates their colleagues with the same function. A deactivated account cannot sign in, its
sessions end and its API tokens are revoked.

Account: active → deactivate → inactive → reactivate → active.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import or_, select

from portal.accounts import mail, tokens
from portal.accounts.models import AccountToken, Enterprise, Institution, TokenPurpose, User
from portal.accounts.passwords import send_reset_link
from portal.accounts.services import (
    EMAIL_PATTERN,
    create_user,
    email_taken,
    end_every_session,
    normalize_email,
    record_changes,
    require_holder,
)
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.core.text import like_escape
from portal.extensions import db

# Roles the console gives; enterprise accounts come from registration and invitations.
STAFF_ROLES = (Role.PROVIDER, Role.REVIEWER, Role.FINANCE, Role.ADMIN)
# (active now, action) -> (active afterwards, audit action)
TRANSITIONS = {
    (True, "deactivate"): (False, "user.deactivated"),
    (False, "reactivate"): (True, "user.reactivated"),
}
PAGE_SIZE = 50


def _require_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators manage accounts."))


def get_user(admin: User, user_id: int) -> User:
    _require_admin(admin)
    user = db.session.get(User, user_id)
    if user is None:
        raise NotFound(_("No such user."))
    return user


@dataclass(frozen=True)
class UserFilters:
    q: str = ""
    role: str = ""
    status: str = ""  # "active", "inactive" or "" (both)
    page: int = 1


def search_users(admin: User, filters: UserFilters) -> Pagination:
    """Accounts matching a text (username, name, e-mail, phone, enterprise or institution), by role."""
    _require_admin(admin)
    query = select(User).outerjoin(User.enterprise).outerjoin(User.institution)
    if filters.q.strip():
        pattern = f"%{like_escape(filters.q.strip().lower())}%"
        query = query.where(
            or_(
                *(
                    db.func.lower(column).like(pattern, escape="\\")
                    for column in (
                        User.username,
                        User.full_name,
                        User.email,
                        User.phone,
                        Enterprise.name,
                        Institution.name,
                    )
                )
            )
        )
    if filters.role in {r.value for r in Role}:
        query = query.where(User.role == Role(filters.role))
    if filters.status in ("active", "inactive"):
        query = query.where(User.is_active_account.is_(filters.status == "active"))
    return db.paginate(query.order_by(User.username), page=filters.page, per_page=PAGE_SIZE, error_out=False)


@dataclass(frozen=True)
class StaffAccount:
    full_name: str
    email: str | None
    phone: str | None
    role: Role
    institution_id: int | None


def create_staff(admin: User, username: str, account: StaffAccount) -> User:
    """A staff account; its owner chooses a password with the link mailed to them."""
    _require_admin(admin)
    _check_staff_role(account.role)
    return create_user(
        username,
        None,
        account.role,
        email=account.email,
        full_name=account.full_name,
        phone=account.phone,
        institution=_institution(account.institution_id),
        actor_id=admin.id,
    )


def _check_staff_role(role: Role) -> None:
    if role not in STAFF_ROLES:
        message = _("Enterprise accounts are made by registration or by their holder's invitation.")
        raise ValidationFailed(message, {"role": message})


def _institution(institution_id: int | None) -> Institution | None:
    if institution_id is None:
        return None
    institution = db.session.get(Institution, institution_id)
    if institution is None:
        raise ValidationFailed(_("No such institution."), {"institution_id": _("No such institution.")})
    return institution


def _snapshot(user: User) -> dict[str, object]:
    return {
        "full_name": user.full_name,
        "email": user.email,
        "phone": user.phone,
        "role": user.role.value,
        "institution_id": user.institution_id,
    }


def update_user(admin: User, user_id: int, account: StaffAccount) -> User:
    """Change an account's details; a staff account's role and institution too (never one's own role)."""
    user = get_user(admin, user_id)
    fields = _check_update(admin, user, account)
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    institution = _institution(account.institution_id) if account.role is Role.PROVIDER else None
    before = _snapshot(user)
    user.full_name, user.phone = account.full_name.strip(), account.phone or None
    user.email = normalize_email(account.email) or None
    if user.role is not Role.ENTERPRISE:
        user.role, user.institution = account.role, institution
    db.session.flush()  # the institution's id into institution_id, for the record
    changed = record_changes("user.updated", user, before, _snapshot(user), admin.id)
    if "email" in changed and before["email"]:
        mail.mail_to(
            str(before["email"]),
            "account.email_changed",
            f"user:{user.id}:email:{clock.utcnow().timestamp()}",
            recipient=user,
            username=user.username,
            new_email=mail.mask_email(user.email) if user.email else "—",
        )
    db.session.commit()
    return user


def _check_update(admin: User, user: User, account: StaffAccount) -> dict[str, str]:
    fields: dict[str, str] = {}
    if not account.full_name.strip():
        fields["full_name"] = _("Required.")
    address = normalize_email(account.email)
    if address and not EMAIL_PATTERN.match(address):
        fields["email"] = _("Enter a valid e-mail address.")
    elif address and email_taken(address, except_user_id=user.id):
        fields["email"] = _("This e-mail address is already registered.")
    if user.role is Role.ENTERPRISE:
        if account.role is not Role.ENTERPRISE:
            fields["role"] = _("An enterprise account stays an enterprise account.")
    elif account.role not in STAFF_ROLES:
        fields["role"] = _("Enterprise accounts are made by registration or by their holder's invitation.")
    elif user.id == admin.id and account.role is not user.role:
        fields["role"] = _("You cannot change your own role: ask another administrator.")
    elif account.role is Role.PROVIDER and account.institution_id is None:
        fields["institution_id"] = _("A provider account belongs to an institution.")
    return fields


def set_active(actor: User, user_id: int, action: str) -> User:
    """Deactivate or reactivate an account (administrators: any but their own; an enterprise's holder:
    their colleagues, except one the bureau deactivated)."""
    with serialized_write():
        user = _manageable(actor, user_id)
        transition = TRANSITIONS.get((user.is_active_account, action))
        if transition is None:
            raise InvalidTransition(
                _("The account is already active.")
                if user.is_active_account
                else _("The account is already deactivated.")
            )
        active, audit_action = transition
        if active and actor.role is not Role.ADMIN and _deactivated_by_bureau(user):
            raise Forbidden(_("The bureau deactivated this account: ask the bureau to reactivate it."))
        now = clock.utcnow()
        by = _("the bureau") if actor.role is Role.ADMIN else (actor.full_name or actor.username)
        if active:
            user.is_active_account, user.deactivated_at, user.deactivated_by_id = True, None, None
            mail.tell([user], "account.reactivated", f"user:{user.id}:active:{now.timestamp()}", by=by)
        else:
            user.is_active_account, user.deactivated_at, user.deactivated_by_id = False, now, actor.id
            end_every_session(user)
            tokens.void_account_tokens(user, tuple(TokenPurpose), now)
            if user.email:  # they cannot sign in to read it in the portal
                mail.mail_to(
                    user.email,
                    "account.deactivated",
                    f"user:{user.id}:inactive:{now.timestamp()}",
                    recipient=user,
                    username=user.username,
                    by=by,
                )
        audit.record(
            audit_action,
            "user",
            user.id,
            before={"active": not active},
            after={"active": active},
            actor_id=actor.id,
        )
        db.session.commit()
    return user


def _manageable(actor: User, user_id: int) -> User:
    user: User | None
    if actor.role is Role.ADMIN:
        user = get_user(actor, user_id)
        if user.id == actor.id:
            raise InvalidTransition(_("You cannot deactivate your own account: ask another administrator."))
        return user
    require_holder(actor)
    user = db.session.get(User, user_id)
    if user is None or user.enterprise_id != actor.enterprise_id:
        raise NotFound(_("No such colleague."))
    if user.id == actor.id:
        raise InvalidTransition(_("You hold the enterprise's account: hand the role to a colleague first."))
    return user


def _deactivated_by_bureau(user: User) -> bool:
    return user.deactivated_by is not None and user.deactivated_by.role is not Role.ENTERPRISE


def mail_reset_link(admin: User, user_id: int) -> AccountToken:
    """An administrator sends the account a password reset link (they never see the link)."""
    return send_reset_link(get_user(admin, user_id), actor=admin)


def pending_links(admin: User, user: User) -> list[AccountToken]:
    """The account's one-time links still usable (shown without their secrets)."""
    _require_admin(admin)
    return list(
        db.session.scalars(
            select(AccountToken)
            .where(
                AccountToken.user_id == user.id,
                AccountToken.used_at.is_(None),
                AccountToken.expires_at > clock.utcnow(),
            )
            .order_by(AccountToken.id.desc())
        )
    )
