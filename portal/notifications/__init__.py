"""Notifications: the outbox, e-mail delivery by Celery workers, and the in-app centre."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the notification centre; importing the tasks registers them with Celery."""
    from portal.notifications import tasks  # noqa: F401
    from portal.notifications.views import bp

    app.register_blueprint(bp)

    @app.context_processor
    def _unread() -> dict:
        from flask_login import current_user

        from portal.notifications.services import unread_count

        if current_user.is_authenticated:
            return {"unread_notifications": unread_count(current_user)}
        return {"unread_notifications": 0}
