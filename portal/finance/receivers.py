"""Finance's answers to the voucher area's signals (connected once the app is set up)."""

from __future__ import annotations

from typing import Any

from portal.finance.services import queue_tally, refuse_closed
from portal.vouchers import signals


def refuse_closed_month(_claim: Any, *, month: str) -> None:
    """A closed month's numbers no longer change: no claim is approved into it."""
    refuse_closed(month)


def tally_approval(_claim: Any, *, month: str) -> None:
    """The month's tally counts the newly committed money once the approval commits."""
    queue_tally(month)


def connect() -> None:
    # Plain functions of a module: blinker holds them weakly, but the module keeps them alive, and
    # connecting one again (one app per test) does not add it twice.
    signals.claim_approving.connect(refuse_closed_month)
    signals.claim_approved.connect(tally_approval)
