"""Self-registration that does not reveal which usernames, e-mail addresses or credit codes exist.

The form checks only what anyone may be told (the fields' format, the credit code's check character,
the county, the password policy), then every valid submission gets the same page: "check your mail".
What happened is said by mail to the address typed, after the answer has been sent (so its time does
not tell either):
- the address has an account: "you have an account, sign in or reset the password" (or, when that
  account still waits for its link, a new link);
- the credit code is registered: how to ask the enterprise's account holder for an invitation;
- the username is taken: register again with another one;
- otherwise the enterprise and its user are made, usable only once the link in the mail is opened
  (which proves the address is the registrant's).
"""

from __future__ import annotations

import secrets

from flask_babel import gettext as _
from sqlalchemy import select
from stdnum.cn import uscc as stdnum_uscc

from portal.accounts import mail, tokens
from portal.accounts.models import AccountToken, Enterprise, TokenPurpose, User
from portal.accounts.services import (
    USERNAME_PATTERN,
    Registration,
    holder_of,
    normalize_email,
    register_enterprise,
    registration_problems,
    send_registration_link,
    username_taken,
)
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import NotFound, ValidationFailed
from portal.extensions import db


def check_registration(data: Registration) -> None:
    """Every reason the submission is refused that reveals nothing about other accounts (no lookups)."""
    fields, _uscc, _checksum_ok = registration_problems(data)
    if not USERNAME_PATTERN.match(data.username or ""):
        fields["username"] = _("3 to 40 letters, digits, dots, dashes or underscores.")
    if not data.email:
        fields["email"] = _("Required: the link that activates the account is sent there.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)


def process_registration(data: Registration, *, again: bool = True) -> str:
    """Do what the submission asks and tell the address by mail; returns what happened (for the log).

    Called after the answer was sent, for a submission check_registration accepted.
    """
    address = normalize_email(data.email)
    existing = db.session.scalar(select(User).where(User.email == address))
    if existing is not None:
        if existing.awaiting_confirmation:
            send_registration_link(existing)
            db.session.commit()
            return "link_again"
        _tell(address, "account.registration_existing", recipient=existing, username=existing.username)
        return "existing_account"
    enterprise = db.session.scalar(
        select(Enterprise).where(Enterprise.uscc == stdnum_uscc.compact(data.uscc))
    )
    if enterprise is not None:
        holder = holder_of(enterprise.id)
        name = mail.mask_name(holder.full_name) if holder and holder.full_name else "—"
        _tell(address, "account.registration_enterprise_exists", uscc=enterprise.uscc, holder=name)
        return "enterprise_registered"
    if username_taken(data.username):
        _tell(
            address, "account.registration_username_taken", username=data.username.strip(), link="/register"
        )
        return "username_taken"
    try:
        register_enterprise(data, awaiting_confirmation=True)
    except ValidationFailed:  # another registration took the address, code or username a moment ago
        db.session.rollback()
        if again:
            return process_registration(data, again=False)
        raise
    return "created"


def _tell(address: str, kind: str, *, recipient: User | None = None, link: str = "/login", **payload) -> None:
    # Every attempt is a mail of its own (the limits of the form bound how many).
    mail.mail_to(
        address, kind, f"registration:{secrets.token_hex(8)}", link=link, recipient=recipient, **payload
    )
    db.session.commit()


def registration_link(secret: str | None) -> AccountToken:
    """The unused, unexpired registration link of an account still waiting for it, or NotFound."""
    row = tokens.find(AccountToken, secret)
    if (
        row is None
        or row.purpose is not TokenPurpose.REGISTRATION
        or row.used_at is not None
        or row.expires_at <= clock.utcnow()
        or not row.user.awaiting_confirmation
    ):
        raise NotFound(_("This link does not work: it has expired or has been used already."))
    return row


def confirm_registration(secret: str) -> User:
    """Open the link (once): the address is confirmed and the account can be used."""
    with serialized_write():
        row = registration_link(secret)
        if not tokens.use(row, "used_at", clock.utcnow()):
            raise NotFound(_("This link does not work: it has expired or has been used already."))
        user = row.user
        user.awaiting_confirmation = False
        audit.record(
            "user.registration_confirmed", "user", user.id, after={"email": user.email}, actor_id=user.id
        )
        db.session.commit()
    return user
