"""What the qualification notifications say (added to the notification centre's catalogue)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from portal.notifications.messages import MESSAGES

MESSAGES.update(
    {
        "qualification.granted": (
            _l("Qualification granted: %(instrument)s"),
            _l(
                "%(institution)s qualified you to run %(instrument)s yourself until %(valid_until)s. "
                "You can now book self-operated time."
            ),
        ),
        "qualification.revoked": (
            _l("Qualification revoked: %(instrument)s"),
            _l(
                "%(institution)s revoked your qualification on %(instrument)s. %(reason)s "
                "You can still book staff-operated time or send samples."
            ),
        ),
        "qualification.expiring": (
            _l("Qualification expires soon: %(instrument)s"),
            _l(
                "Your qualification on %(instrument)s expires on %(valid_until)s (in %(days)s days). "
                "Ask %(institution)s about a refresher training to keep booking self-operated time."
            ),
        ),
    }
)
