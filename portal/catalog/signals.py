"""What the catalogue asks the areas above it without importing them (blinker).

Lower layers never import higher ones (docs/architecture.md): booking connects to these signals when
the app is set up; the catalogue only sends.
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace

from portal.catalog.models import Instrument

_signals = Namespace()

instrument_shown = _signals.signal(
    "instrument-shown",
    doc="""An instrument's record page is being rendered. Sender: the instrument. A receiver returns a
    dict of values for the page's template (booking: `bookable`, `policy`, `next_free`), or None.""",
)

# What the record page shows when no area answers: nothing to book.
RECORD_DEFAULTS: dict[str, Any] = {"bookable": False, "policy": None, "next_free": None}


def record_extras(instrument: Instrument) -> dict[str, Any]:
    """The values the connected areas add to an instrument's record page."""
    extras = dict(RECORD_DEFAULTS)
    for _receiver, answer in instrument_shown.send(instrument):
        extras.update(answer or {})
    return extras
