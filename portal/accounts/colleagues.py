"""An enterprise's several staff: invitations by its account holder, and handing the holder role over.

The registrant holds the enterprise's account; they invite colleagues by e-mail (a single-use link
that expires), deactivate and reactivate them (portal.accounts.users.set_active), and may hand the
holder role to an active colleague. Every user of the enterprise books and sees its bookings,
vouchers and claims; only the holder applies for vouchers, submits claims and changes the bank
account (require_holder).

Invitation: pending → accepted | revoked | expired (by time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal.accounts import mail, tokens
from portal.accounts.models import Enterprise, Invitation, User
from portal.accounts.services import (
    EMAIL_PATTERN,
    USERNAME_PATTERN,
    check_password_strength,
    email_taken,
    hash_password,
    holder_of,
    normalize_email,
    require_holder,
    username_taken,
)
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.extensions import db


def colleagues(user: User) -> list[User]:
    """Everyone of the user's enterprise: the holder first, then the active, then by name."""
    if user.role is not Role.ENTERPRISE:
        raise Forbidden(_("Only enterprise accounts have colleagues here."))
    return list(
        db.session.scalars(
            select(User)
            .where(User.enterprise_id == user.enterprise_id)
            .order_by(User.is_holder.desc(), User.is_active_account.desc(), User.full_name, User.id)
        )
    )


def invitations(holder: User, limit: int = 50) -> list[Invitation]:
    """The enterprise's latest invitations (the holder's page)."""
    require_holder(holder)
    return list(
        db.session.scalars(
            select(Invitation)
            .where(Invitation.enterprise_id == holder.enterprise_id)
            .order_by(Invitation.id.desc())
            .limit(limit)
        )
    )


def invite(holder: User, address: str) -> Invitation:
    """The holder invites a colleague: a link to create an account of the enterprise, by e-mail."""
    require_holder(holder)
    address = normalize_email(address)
    if not EMAIL_PATTERN.match(address):
        raise ValidationFailed(
            _("Please correct the marked fields."), {"email": _("Enter a valid e-mail address.")}
        )
    if email_taken(address):
        message = _("This address already has an account; an account belongs to one enterprise.")
        raise ValidationFailed(message, {"email": message})
    now = clock.utcnow()
    with serialized_write():
        # A new invitation to the same address replaces the one still pending.
        db.session.execute(
            update(Invitation)
            .where(
                Invitation.enterprise_id == holder.enterprise_id,
                Invitation.email == address,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        row = Invitation(
            enterprise_id=holder.enterprise_id,
            email=address,
            invited_by_id=holder.id,
            created_at=now,
            expires_at=now + timedelta(seconds=current_app.config["INVITATION_TTL_SECONDS"]),
        )
        tokens.seal(row, "invitation")
        db.session.add(row)
        db.session.flush()
        audit.record(
            "invitation.sent",
            "invitation",
            row.id,
            after={"email": address, "enterprise_id": row.enterprise_id},
            actor_id=holder.id,
        )
        mail.mail_link(
            address,
            "enterprise.invitation",
            row,
            "/invitations/",
            inviter=holder.full_name or holder.username,
            enterprise=db.session.get_one(Enterprise, holder.enterprise_id).name,
            expires=clock.format_local(row.expires_at),
        )
        db.session.commit()
    return row


def revoke_invitation(holder: User, invitation_id: int) -> None:
    """The holder withdraws an invitation nobody has used yet."""
    require_holder(holder)
    with serialized_write():
        row = db.session.get(Invitation, invitation_id)
        if row is None or row.enterprise_id != holder.enterprise_id:
            raise NotFound(_("No such invitation."))
        if row.accepted_at is not None or row.revoked_at is not None:
            raise InvalidTransition(_("Only an invitation that has not been used can be withdrawn."))
        row.revoked_at = clock.utcnow()
        audit.record(
            "invitation.revoked", "invitation", row.id, before={"email": row.email}, actor_id=holder.id
        )
        db.session.commit()


def invitation_for(secret: str | None) -> Invitation:
    """The pending invitation of a link, or NotFound."""
    row = tokens.find(Invitation, secret)
    if row is None or row.state(clock.utcnow()).value != "pending":
        raise _bad_link()
    return row


def _bad_link() -> NotFound:
    return NotFound(
        _("This invitation does not work: it has expired, was withdrawn or has been used already.")
    )


@dataclass(frozen=True)
class Acceptance:
    username: str
    password: str
    full_name: str
    phone: str | None = None


def accept_invitation(secret: str, data: Acceptance) -> User:
    """The invitee creates their account, bound to the enterprise as staff; the link is then used up."""
    with serialized_write():
        row = invitation_for(secret)
        fields: dict[str, str] = {}
        if not USERNAME_PATTERN.match(data.username or ""):
            fields["username"] = _("3 to 40 letters, digits, dots, dashes or underscores.")
        elif username_taken(data.username):
            fields["username"] = _("This username is taken.")
        if not data.full_name.strip():
            fields["full_name"] = _("Required.")
        try:
            check_password_strength(data.password, data.username, row.email)
        except ValidationFailed as error:
            fields["password"] = error.message
        if email_taken(row.email):
            fields["email"] = _("This e-mail address is already registered.")
        if fields:
            raise ValidationFailed(_("Please correct the marked fields."), fields)
        now = clock.utcnow()
        if not tokens.use(row, "accepted_at", now):
            raise _bad_link()
        user = User(
            username=data.username.strip(),
            email=row.email,
            password_hash=hash_password(data.password),
            role=Role.ENTERPRISE,
            full_name=data.full_name.strip(),
            phone=data.phone or None,
            enterprise_id=row.enterprise_id,
            is_holder=False,
        )
        db.session.add(user)
        try:
            db.session.flush()
        except IntegrityError:  # the username or the address was taken at this very moment
            db.session.rollback()
            message = _("This username is taken.")
            raise ValidationFailed(_("Please correct the marked fields."), {"username": message}) from None
        row.user_id = user.id
        audit.record(
            "invitation.accepted",
            "invitation",
            row.id,
            after={"user_id": user.id, "username": user.username, "enterprise_id": row.enterprise_id},
            actor_id=user.id,
        )
        holder = holder_of(row.enterprise_id)
        if holder is not None:
            mail.tell(
                [holder],
                "enterprise.invitation_accepted",
                f"invitation:{row.id}:accepted",
                name=user.full_name,
                username=user.username,
                enterprise=row.enterprise.name,
            )
        db.session.commit()
    return user


def hand_over(actor: User, user_id: int) -> User:
    """Make an active colleague the enterprise's account holder, atomically: exactly one holder.

    By the holder (to a colleague of their enterprise) or by an administrator (for any enterprise,
    e.g. when the holder has left). The old and the new holder are both told.
    """
    with serialized_write():
        target = db.session.get(User, user_id)
        if actor.role is not Role.ADMIN:
            require_holder(actor)
            if target is None or target.enterprise_id != actor.enterprise_id:
                raise NotFound(_("No such colleague."))
        elif target is None or target.role is not Role.ENTERPRISE:
            raise NotFound(_("No such enterprise user."))
        # Every user of the enterprise, locked: a concurrent hand-over waits and then finds it done.
        staff = list(
            db.session.scalars(
                select(User)
                .where(User.enterprise_id == target.enterprise_id)
                .order_by(User.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        old = next((u for u in staff if u.is_holder), None)
        if target.is_holder:
            raise InvalidTransition(_("%(name)s is already the account holder.", name=_name(target)))
        if not target.is_active:
            raise InvalidTransition(_("Only an active colleague can become the account holder."))
        if actor.role is not Role.ADMIN and (old is None or old.id != actor.id):
            raise InvalidTransition(_("You are no longer the account holder."))
        if old is not None:
            old.is_holder = False
            db.session.flush()  # first: the unique index allows one holder at any moment
        target.is_holder = True
        db.session.flush()
        event = audit.record(
            "enterprise.holder_changed",
            "enterprise",
            target.enterprise_id,
            before={"holder_id": old.id if old else None},
            after={"holder_id": target.id},
            actor_id=actor.id,
        )
        db.session.flush()
        mail.tell(
            [u for u in (old, target) if u is not None],
            "enterprise.holder_changed",
            f"holder_changed:{event.id}",
            enterprise=db.session.get_one(Enterprise, target.enterprise_id).name,
            new_holder=_name(target),
            old_holder=_name(old) if old else "—",
        )
        db.session.commit()
    return target


def _name(user: User) -> str:
    return user.full_name or user.username
