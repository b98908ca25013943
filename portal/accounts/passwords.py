"""Passwords: change (the current one required), forgotten (a one-time link by e-mail) and reset.

A new password ends every other session and revokes every API token of the account; the account's
owner is told. A forgotten-password request answers the same whether or not the address has an
account: the view hands `request_password_reset` to after the response, and the per-account limit
is silent.
"""

from __future__ import annotations

from flask import current_app
from flask_babel import gettext as _
from limits import parse
from sqlalchemy import select
from werkzeug.security import check_password_hash

from portal.accounts import mail, tokens
from portal.accounts.models import AccountToken, TokenPurpose, User
from portal.accounts.services import (
    check_password_strength,
    end_every_session,
    hash_password,
    normalize_email,
)
from portal.core import audit, clock
from portal.core.database import serialized_write
from portal.core.errors import InvalidTransition, NotFound, ValidationFailed
from portal.extensions import db, limiter

# Links that set a password: a reset, or the first password of an account the bureau made.
PASSWORD_LINKS = (TokenPurpose.PASSWORD_RESET, TokenPurpose.WELCOME)


def change_password(user: User, current: str, new: str) -> None:
    """The user chooses a new password; their other sessions and API tokens end (the caller signs
    this browser in again)."""
    fields: dict[str, str] = {}
    if not check_password_hash(user.password_hash, current or ""):
        fields["current_password"] = _("This is not your current password.")
    try:
        check_password_strength(new, user.username, user.email)
    except ValidationFailed as error:
        fields["password"] = error.message
    if not fields and new == current:
        fields["password"] = _("Choose a password different from the current one.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    _set_password(user, new, "user.password_changed")
    db.session.commit()


def _set_password(user: User, new: str, action: str) -> None:
    user.password_hash = hash_password(new)
    revoked = end_every_session(user)
    # Links still in someone's mailbox must not set the password again.
    tokens.void_account_tokens(user, PASSWORD_LINKS, clock.utcnow())
    audit.record(action, "user", user.id, after={"api_tokens_revoked": revoked}, actor_id=user.id)
    mail.tell(
        [user],
        "account.password_changed",
        f"user:{user.id}:password:{user.session_version}",
        username=user.username,
        when=clock.format_local(clock.utcnow()),
    )


def request_password_reset(address: str, ip: str | None = None) -> None:
    """Mail a reset link to the active account with this address, if there is one and its limit allows.

    Nothing tells the caller which happened: the page answers the same either way.
    """
    user = db.session.scalar(select(User).where(User.email == normalize_email(address)))
    if user is None or not user.is_active or not _account_limit_allows(user):
        return
    send_reset_link(user, ip=ip)


def _account_limit_allows(user: User) -> bool:
    """Count a reset mail against the account's limit; a limit store that is down lets it through."""
    config = current_app.config
    if not config.get("RATELIMIT_ENABLED", True):
        return True
    try:
        return limiter.limiter.hit(
            parse(config["PASSWORD_RESET_ACCOUNT_RATE_LIMIT"]), "password-reset-account", str(user.id)
        )
    except Exception as error:  # the store is unreachable: fail open, as the request limits do
        current_app.logger.warning("password reset limit of user %s not checked: %s", user.id, error)
        return True


def send_reset_link(user: User, *, actor: User | None = None, ip: str | None = None) -> AccountToken:
    """A new reset link for the user, by e-mail (self-service, or an administrator's `actor`)."""
    if not user.email:
        raise ValidationFailed(
            _("This account has no e-mail address to send the link to."),
            {"email": _("Add an e-mail address first.")},
        )
    if not user.is_active:
        raise InvalidTransition(_("The account is deactivated: reactivate it first."))
    ttl = current_app.config["PASSWORD_RESET_TTL_SECONDS"]
    row = tokens.issue_account_token(user, TokenPurpose.PASSWORD_RESET, ttl)
    event = audit.record(
        "user.reset_link_sent",
        "user",
        user.id,
        after={"by": "administrator" if actor else "self", "expires_at": clock.iso_utc(row.expires_at)},
        actor_id=actor.id if actor else user.id,
    )
    if ip:
        event.ip = ip
    mail.mail_link(
        user.email,
        "account.password_reset",
        row,
        "/password/reset/",
        recipient=user,
        username=user.username,
        minutes=ttl // 60,
    )
    db.session.commit()
    return row


def password_link(secret: str | None) -> AccountToken:
    """The unused, unexpired password link of an active account, or NotFound (as for any bad link)."""
    row = tokens.find(AccountToken, secret)
    if (
        row is None
        or row.purpose not in PASSWORD_LINKS
        or row.used_at is not None
        or row.expires_at <= clock.utcnow()
        or not row.user.is_active
    ):
        raise NotFound(_("This link does not work: it has expired or has been used already."))
    return row


def reset_password(secret: str, new: str) -> User:
    """Set a new password with a link (once); every session and API token of the account ends."""
    with serialized_write():
        row = password_link(secret)
        user = row.user
        try:
            check_password_strength(new, user.username, user.email)
        except ValidationFailed as error:  # the link stays usable: nothing was written
            raise ValidationFailed(error.message, {"password": error.message}) from None
        if not tokens.use(row, "used_at", clock.utcnow()):
            raise NotFound(_("This link does not work: it has expired or has been used already."))
        _set_password(user, new, "user.password_reset")
        db.session.commit()
    return user
