"""What the usage notifications say (added to the notification centre's catalogue)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from portal.notifications.messages import MESSAGES

MESSAGES.update(
    {
        "usage.unbooked": (
            _l("Unbooked use: %(instrument)s"),
            _l(
                "The PC of %(instrument)s (%(code)s) reports use by “%(username)s” from %(when)s, and "
                "nobody booked the instrument for that time. Please check who is using it."
            ),
        ),
    }
)
