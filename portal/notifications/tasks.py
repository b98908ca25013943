"""Celery tasks of the notifications area: delivery (exactly once, with bounded retries) and the sweep."""

from __future__ import annotations

from celery import shared_task

from portal.notifications import services


@shared_task(name="notifications.deliver", bind=True, acks_late=True, max_retries=None)
def deliver(self, key: str) -> str:
    """Send one notification's e-mail; retried with backoff until the attempts allowed are used up."""
    try:
        return services.deliver_email(key)
    except services.DeliveryFailed as error:
        # The notification's own attempt count decides (a sweep or a lost worker may have used some).
        if error.retry_in is None:
            return "failed"
        raise self.retry(exc=error, countdown=error.retry_in) from error


@shared_task(name="notifications.sweep")
def sweep() -> int:
    """Queue pending e-mails nobody is delivering; returns how many."""
    return services.sweep()
