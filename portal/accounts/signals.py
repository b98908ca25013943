"""What the accounts area asks of the areas above it, as blinker signals (Indico's way).

The outbox (portal.notifications) sits above accounts: it knows users, so accounts cannot import it.
Accounts sends these signals instead, and portal.notifications connects its receivers when the app is
set up (portal.notifications.init_app). A receiver runs at once, in the sender's transaction, so the
message is written with the change or not at all, exactly as a direct call would.
"""

from __future__ import annotations

from typing import Any

from blinker import NamedSignal, Namespace

_signals = Namespace()

message_for_users = _signals.signal(
    "message-for-users",
    doc="""Tell these users (in-app, and by mail as they chose).

    Keyword arguments: `users` (list of User), `kind`, `key` (names the event; with the recipient it
    makes the dedup key), `payload` (dict), `link` (str or None).""",
)

message_for_address = _signals.signal(
    "message-for-address",
    doc="""Mail this address only, whatever the recipient's preferences.

    Keyword arguments: `address`, `kind`, `key`, `payload` (dict), `link` (str or None; may hold the
    one-time link's placeholder), `recipient` (User or None: gives the language).""",
)


def send(signal: NamedSignal, **message: Any) -> None:
    """Send `signal`; a message nobody receives would be lost without a word, so that is an error."""
    if not signal.receivers:
        raise RuntimeError(f"nothing receives the signal {signal.name!r}: is portal.notifications set up?")
    signal.send(None, **message)
