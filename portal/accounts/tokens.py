"""One-time links sent by e-mail: password resets, first passwords, new addresses and invitations.

A link's secret is HMAC-SHA256(SECRET_KEY, kind + random salt); the row keeps the salt and the SHA-256
of the secret, never the secret. The mail goes through the notification outbox like any other, but
its stored link holds SECRET_PLACEHOLDER and `secret_of` names the row: the secret is derived again
only when the mail is built, so neither the token rows nor the outbox can give a working link to
someone who reads the database. Changing SECRET_KEY voids the links not yet sent or used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import select, update

from portal.accounts.models import AccountToken, Invitation, TokenPurpose, User
from portal.core import clock
from portal.core.database import changed_rows
from portal.extensions import db

# Stands in a notification's link for the secret, which is filled in when the mail is built.
SECRET_PLACEHOLDER = "{secret}"  # noqa: S105 - a placeholder, not a secret
MODELS: dict[str, type[AccountToken] | type[Invitation]] = {
    "account_token": AccountToken,
    "invitation": Invitation,
}
# A secret is 43 characters (32 bytes, base64url); anything much longer is not one of ours.
MAX_SECRET_LENGTH = 64


def derive_secret(kind: str, salt: str) -> str:
    """The link's secret: the same for the same row, unguessable without SECRET_KEY."""
    key = current_app.config["SECRET_KEY"]
    key = key if isinstance(key, bytes) else key.encode()
    mac = hmac.new(key, f"portal-one-time-link:{kind}:{salt}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def seal(row: AccountToken | Invitation, kind: str) -> None:
    """Give a new row its salt and the hash of its secret."""
    row.salt = secrets.token_hex(16)
    row.token_hash = digest(derive_secret(kind, row.salt))


def mail_secret(kind: str, row_id: int) -> str:
    """The secret of a row, for the mail that carries its link (called by the outbox when sending)."""
    # get() is typed by the join of the two models, which declares no salt.
    row = cast(AccountToken | Invitation, db.session.get_one(MODELS[kind], row_id))
    return derive_secret(kind, row.salt)


def kind_of(row: AccountToken | Invitation) -> str:
    return next(kind for kind, model in MODELS.items() if isinstance(row, model))


def secret_reference(kind: str, row: AccountToken | Invitation) -> dict[str, Any]:
    """The payload entry that tells the outbox which secret a mail's link needs."""
    return {"secret_of": [kind, row.id]}


def find(model: type[AccountToken] | type[Invitation], secret: str | None):
    """The row a secret belongs to, or None (used, expired or not: the caller decides)."""
    if not secret or len(secret) > MAX_SECRET_LENGTH:
        return None
    return db.session.scalar(select(model).where(model.token_hash == digest(secret)))


def issue_account_token(
    user: User, purpose: TokenPurpose, ttl_seconds: int, *, email: str | None = None
) -> AccountToken:
    """A new link of this purpose for the user (added to the session); older ones of it stop working."""
    now = clock.utcnow()
    void_account_tokens(user, (purpose,), now)
    row = AccountToken(
        user_id=user.id,
        purpose=purpose,
        email=email,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
    )
    seal(row, "account_token")
    db.session.add(row)
    db.session.flush()
    return row


def void_account_tokens(user: User, purposes: tuple[TokenPurpose, ...], now: datetime) -> None:
    db.session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose.in_(purposes),
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )


def use(row: AccountToken | Invitation, column: str, now: datetime) -> bool:
    """Mark a link used, once: False when it expired, was withdrawn or another request used it first.

    A conditional update, so that two requests with the same link cannot both succeed.
    """
    model = type(row)
    conditions = [model.id == row.id, model.expires_at > now, getattr(model, column).is_(None)]
    if model is Invitation:
        conditions.append(Invitation.revoked_at.is_(None))
    changed = changed_rows(
        update(model).where(*conditions).values({column: now}).execution_options(synchronize_session=False)
    )
    return changed == 1
