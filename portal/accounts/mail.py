"""The accounts area's messages, queued in the outbox of portal.notifications with the change itself.

The outbox is a higher area (it knows users): the messages go to it by signal (portal.accounts.signals).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from portal.accounts import signals, tokens
from portal.accounts.models import AccountToken, Invitation, User


def tell(users: Iterable[User], kind: str, key: str, *, link: str | None = None, **payload: Any) -> None:
    """A notification to users (in-app, and by mail as they chose), in the current transaction."""
    signals.send(signals.message_for_users, users=list(users), kind=kind, key=key, payload=payload, link=link)


def mail_to(
    address: str,
    kind: str,
    key: str,
    *,
    link: str | None = None,
    recipient: User | None = None,
    **payload: Any,
) -> None:
    """A mail to this address only, whatever the recipient's preferences, in the current transaction."""
    signals.send(
        signals.message_for_address,
        address=address,
        kind=kind,
        key=key,
        payload=payload,
        link=link,
        recipient=recipient,
    )


def mail_link(
    address: str,
    kind: str,
    row: AccountToken | Invitation,
    path: str,
    *,
    recipient: User | None = None,
    **payload: Any,
) -> None:
    """A mail with the one-time link of `row` (`path` followed by its secret, derived when it is sent)."""
    name = tokens.kind_of(row)
    mail_to(
        address,
        kind,
        f"{name}:{row.id}",
        link=path + tokens.SECRET_PLACEHOLDER,
        recipient=recipient,
        **payload,
        **tokens.secret_reference(name, row),
    )


def address_of(user: User) -> str:
    """The account's address, for a mail that cannot go without one (the link that sets a password)."""
    if user.email is None:
        raise ValueError(f"user {user.id} has no e-mail address")
    return user.email


def mask_email(address: str) -> str:
    """An address as a notice may show it to someone else: w***@example.cn."""
    local, _sep, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_name(name: str) -> str:
    """A person's name as a stranger may see it: 王** (the family name only)."""
    name = name.strip()
    return name[:1] + "*" * max(len(name) - 1, 1) if name else ""
