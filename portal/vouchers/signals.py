"""What the voucher area tells the areas above it, without importing them (as Indico's signals do).

Receivers run inside the sender's transaction: what they write commits or rolls back with it, and a
receiver that raises refuses the change. Finance connects its receivers when the app is set up
(`portal.finance.receivers`).
"""

from __future__ import annotations

from typing import Any

from blinker import NamedSignal, Namespace

_signals = Namespace()

claim_approving = _signals.signal(
    "claim-approving",
    doc="""A reviewer is about to approve a claim (the claim is the sender) in the accounting month
    `month`; a receiver raises a ServiceError to refuse (finance: the month is closed).""",
)
claim_approved = _signals.signal(
    "claim-approved",
    doc="""A claim's money was committed (the claim is the sender) in the accounting month `month`:
    finance recomputes that month's tally once the transaction commits.""",
)


def send(signal: NamedSignal, sender: Any, **message: Any) -> None:
    """Send `signal`, which must be heard: a closed month not refused or a tally not queued would go
    unnoticed, so a signal nobody receives is an error."""
    if not signal.receivers:
        raise RuntimeError(f"nothing receives the signal {signal.name!r}: is portal.finance set up?")
    signal.send(sender, **message)
