"""Celery tasks of the notifications area: delivery (exactly once, with bounded retries) and the sweep."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_shutdown, worker_shutdown

from portal.notifications import mailer, services


@shared_task(name="notifications.deliver_batch", bind=True, acks_late=True)
def deliver_batch(self: Task, keys: list[str]) -> dict[str, int]:
    """Send the due notifications among `keys` over this process's SMTP connection; each failure is
    queued again for when its backoff ends (or, its attempts used up, marked failed)."""
    try:
        outcome = services.deliver_batch(keys)
    finally:
        if self.request.is_eager:
            # Sent in-process (the demo, a web request without a broker): no connection is kept there.
            mailer.close_current()
    services.queue_retries(outcome)
    return outcome.counts()


@shared_task(name="notifications.deliver", bind=True, acks_late=True, max_retries=None)
def deliver(self: Task, key: str) -> str:
    """Send one notification's e-mail (tasks of this name queued before batches came, and still
    accepted); retried with backoff until the attempts allowed are used up."""
    try:
        return services.deliver_email(key)
    except services.DeliveryFailed as error:
        # The notification's own attempt count decides (a sweep or a lost worker may have used some).
        if error.retry_in is None:
            return "failed"
        raise self.retry(exc=error, countdown=error.retry_in) from error
    finally:
        if self.request.is_eager:
            mailer.close_current()


@shared_task(name="notifications.sweep")
def sweep() -> int:
    """Queue pending e-mails nobody is delivering; returns how many."""
    return services.sweep()


@worker_process_shutdown.connect
@worker_shutdown.connect
def close_mail_connections(**_signal: Any) -> None:
    """QUIT the SMTP connection(s) of this process as it ends: a prefork pool process sends
    worker_process_shutdown; the solo and threads pools run tasks in the worker itself (worker_shutdown)."""
    mailer.close_all()
