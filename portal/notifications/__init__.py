"""Notifications: the outbox, e-mail delivery by Celery workers, and the in-app centre."""

from __future__ import annotations

from flask import Flask
from flask_login import current_user

from portal.accounts import signals


def init_app(app: Flask) -> None:
    """Register the notification centre, its tasks, and its receivers of the accounts area's messages."""
    # Imported here, not at the top: this module runs whenever any notifications module is imported,
    # and must not drag the pages and the tasks in with it.
    from portal.notifications import tasks  # noqa: F401 - importing the tasks registers them with Celery
    from portal.notifications.services import mail_address, tell_users, unread_count
    from portal.notifications.views import bp

    app.register_blueprint(bp)
    # The same functions each time, so a second app connects nothing twice (blinker keys by receiver).
    signals.message_for_users.connect(tell_users)
    signals.message_for_address.connect(mail_address)

    @app.context_processor
    def _unread() -> dict:
        if current_user.is_authenticated:
            return {"unread_notifications": unread_count(current_user)}
        return {"unread_notifications": 0}
