"""The user's own profile: name, phone, language, mail preference, and a new e-mail address.

A new address takes effect only when the link mailed to it is opened by the account's owner (signed
in); until then mail keeps going to the old address, which is told of the request and of the change.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash

from portal.accounts import mail, tokens
from portal.accounts.models import AccountToken, TokenPurpose, User
from portal.accounts.services import EMAIL_PATTERN, email_taken, normalize_email, record_changes
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import NotFound, ValidationFailed
from portal.extensions import db

PHONE_MAX = 20


@dataclass(frozen=True)
class Profile:
    full_name: str
    phone: str | None
    language: str
    email_notifications: bool
    email: str | None
    # Needed only to change the e-mail address (whoever holds the address can reset the password).
    current_password: str = ""


def _editable(user: User) -> dict[str, object]:
    return {
        "full_name": user.full_name,
        "phone": user.phone,
        "language": user.language,
        "email_notifications": user.email_notifications,
    }


def update_profile(user: User, profile: Profile) -> AccountToken | None:
    """Save the profile; a new e-mail address is only requested (returns its pending link)."""
    fields: dict[str, str] = {}
    if not profile.full_name.strip():
        fields["full_name"] = _("Required.")
    if profile.language not in current_app.config["LANGUAGES"]:
        fields["language"] = _("Choose a language from the list.")
    if profile.phone and len(profile.phone) > PHONE_MAX:
        fields["phone"] = _("At most %(n)d characters.", n=PHONE_MAX)
    address = normalize_email(profile.email)
    new_address = address != (user.email or "")
    if new_address:
        fields.update(_check_new_address(user, address, profile.current_password))
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    before = _editable(user)
    user.full_name, user.phone = profile.full_name.strip(), profile.phone or None
    user.language, user.email_notifications = profile.language, profile.email_notifications
    record_changes("user.profile_updated", user, before, _editable(user), user.id)
    pending = _request_address_change(user, address) if new_address else None
    db.session.commit()
    return pending


def set_email_preference(user: User, wants_email: bool) -> None:
    """Only the mail preference (also the notification centre's switch)."""
    user.email_notifications = wants_email
    audit.record(
        "user.email_preference", "user", user.id, after={"email_notifications": wants_email}, actor_id=user.id
    )
    db.session.commit()


def _check_new_address(user: User, address: str, current_password: str) -> dict[str, str]:
    if not address:
        return {"email": _("Enter an e-mail address: links to reset your password are sent there.")}
    if not EMAIL_PATTERN.match(address):
        return {"email": _("Enter a valid e-mail address.")}
    if email_taken(address, except_user_id=user.id):
        return {"email": _("This e-mail address is already registered.")}
    if not check_password_hash(user.password_hash, current_password or ""):
        return {"current_password": _("Enter your current password to change the e-mail address.")}
    return {}


def _request_address_change(user: User, address: str) -> AccountToken:
    ttl = current_app.config["EMAIL_CHANGE_TTL_SECONDS"]
    row = tokens.issue_account_token(user, TokenPurpose.EMAIL_CHANGE, ttl, email=address)
    audit.record(
        "user.email_change_requested",
        "user",
        user.id,
        after={"email": address, "expires_at": clock.iso_utc(row.expires_at)},
        actor_id=user.id,
    )
    mail.mail_link(
        address,
        "account.email_confirm",
        row,
        "/account/email/",
        recipient=user,
        username=user.username,
        email=address,
        hours=ttl // 3600,
    )
    if user.email:
        mail.mail_to(
            user.email,
            "account.email_change_requested",
            f"account_token:{row.id}:old",
            recipient=user,
            username=user.username,
            new_email=mail.mask_email(address),
        )
    return row


def pending_address(user: User) -> AccountToken | None:
    """The new address waiting for its link to be opened, if any."""
    return db.session.scalar(
        select(AccountToken).where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == TokenPurpose.EMAIL_CHANGE,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > clock.utcnow(),
        )
    )


def address_link(user: User, secret: str | None) -> AccountToken:
    """The user's own unused, unexpired address link, or NotFound (another user's link is not found)."""
    row = tokens.find(AccountToken, secret)
    if (
        row is None
        or row.purpose is not TokenPurpose.EMAIL_CHANGE
        or row.user_id != user.id
        or row.used_at is not None
        or row.expires_at <= clock.utcnow()
    ):
        raise NotFound(_("This link does not work: it has expired or has been used already."))
    return row


def confirm_address(user: User, secret: str) -> str:
    """The link mailed to the new address was opened by the account's owner: the address is theirs."""
    with serialized_write():
        row = address_link(user, secret)
        new_email = row.email
        if new_email is None:  # every address-change link names the new address
            raise NotFound(_("This link does not work: it has expired or has been used already."))
        if email_taken(new_email, except_user_id=user.id):
            raise ValidationFailed(_("This e-mail address is already registered."))
        if not tokens.use(row, "used_at", clock.utcnow()):
            raise NotFound(_("This link does not work: it has expired or has been used already."))
        old, user.email = user.email, new_email
        audit.record("user.email_changed", "user", user.id, before={"email": old}, after={"email": new_email})
        if old:
            mail.mail_to(
                old,
                "account.email_changed",
                f"account_token:{row.id}:changed",
                recipient=user,
                username=user.username,
                new_email=mail.mask_email(new_email),
            )
        try:
            db.session.commit()
        except IntegrityError:  # another account took the address at this very moment
            db.session.rollback()
            raise ValidationFailed(_("This e-mail address is already registered.")) from None
    return new_email
