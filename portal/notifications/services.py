"""Notifications: the outbox written with each change, exactly-once e-mail delivery, the in-app centre.

`notify()` adds rows to the session of the change itself, so a notification exists exactly when its
change was committed. The delivery task is queued only after that commit; if the broker is down the
row simply waits for the periodic sweep. Delivery claims a notification with a conditional update
before sending, so two workers (or a retry and a sweep) never both send it, and every mail carries a
Message-ID fixed per notification.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterable
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import force_locale
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from portal.accounts.models import User
from portal.accounts.tokens import SECRET_PLACEHOLDER, mail_secret
from portal.core import clock
from portal.core.database import after_commit, changed_rows, insert_ignore
from portal.core.errors import Forbidden
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications.messages import render
from portal.notifications.models import EmailState, Notification

PENDING_KEYS = "notification_keys"
DELIVER_TASK = "notifications.deliver"


def notify(
    recipients: Iterable[User], kind: str, key: str, *, payload: dict[str, Any], link: str | None = None
) -> None:
    """Queue a notification for each recipient, in the current transaction (call before its commit).

    `key` names the event (e.g. "booking:12:confirmed"); with the recipient it makes the dedup key, so
    calling twice for the same event never notifies twice.
    """
    session = db.session()
    now = clock.utcnow()
    for user in {u.id: u for u in recipients}.values():
        dedup_key = f"{key}:{user.id}"
        wants_mail = bool(user.email) and user.email_notifications
        insert_ignore(
            Notification,
            {
                "recipient_id": user.id,
                "kind": kind,
                "payload": payload,
                "link": link,
                "dedup_key": dedup_key,
                "created_at": now,
                "email_state": (EmailState.PENDING if wants_mail else EmailState.SKIPPED).value,
                "email_attempts": 0,
                "urgent": False,
            },
        )
        if wants_mail:
            _deliver_after_commit(session, dedup_key)


def notify_address(
    address: str,
    kind: str,
    key: str,
    *,
    payload: dict[str, Any],
    link: str | None = None,
    recipient: User | None = None,
) -> None:
    """Queue a mail to an explicit address, in the current transaction; it is a mail only (see Notification).

    For mail the person must get whatever their preferences (one-time links, a notice to an address
    that is being replaced) or that goes where no account is yet (an invitation). `recipient`, when
    known, gives the language. A `link` may hold SECRET_PLACEHOLDER, filled in only when the mail is
    built, with payload["secret_of"] naming the one-time link (portal.accounts.tokens).
    """
    session = db.session()
    dedup_key = f"{key}:{address}"
    insert_ignore(
        Notification,
        {
            "recipient_id": recipient.id if recipient else None,
            "email_to": address,
            "kind": kind,
            "payload": payload,
            "link": link,
            "dedup_key": dedup_key,
            "created_at": clock.utcnow(),
            "email_state": EmailState.PENDING.value,
            "email_attempts": 0,
            "urgent": False,
        },
    )
    _deliver_after_commit(session, dedup_key)


def tell_users(
    _sender: object, *, users: list[User], kind: str, key: str, payload: dict, link: str | None
) -> None:
    """Receiver of portal.accounts.signals.message_for_users (connected by init_app)."""
    notify(users, kind, key, payload=payload, link=link)


def mail_address(
    _sender: object,
    *,
    address: str,
    kind: str,
    key: str,
    payload: dict,
    link: str | None,
    recipient: User | None,
) -> None:
    """Receiver of portal.accounts.signals.message_for_address (connected by init_app)."""
    notify_address(address, kind, key, payload=payload, link=link, recipient=recipient)


def _deliver_after_commit(session: Session, key: str) -> None:
    """Queue the delivery once the change commits; a rollback forgets it along with the row."""
    keys = session.info.get(PENDING_KEYS)
    if keys is None:
        keys = session.info[PENDING_KEYS] = []
        after_commit(lambda: queue_deliveries(session.info.pop(PENDING_KEYS, [])))
    keys.append(key)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(PENDING_KEYS, None)


def queue_deliveries(keys: list[str]) -> None:
    """Hand deliveries to Celery; when the broker cannot be reached the sweep will do it later."""
    if not keys:
        return
    # By name: the tasks module imports this one, never the other way round.
    deliver = current_app.extensions["celery"].tasks[DELIVER_TASK]
    for n, key in enumerate(keys):
        try:
            # A fresh app context: an eager task must not use the session that has just committed.
            with current_app.app_context():
                deliver.apply_async(args=(key,), retry=False)
        except BrokerUnavailable as error:
            # Down or not answering: the other keys would only wait for the same timeout, one after
            # the other, and the sweep queues every one of them anyway.
            current_app.logger.warning(
                "delivery of %s not queued (%s); the sweep will retry", ", ".join(keys[n:]), error
            )
            return
        except Exception as error:
            current_app.logger.warning("delivery of %s not queued (%s); the sweep will retry", key, error)


# --- delivery ------------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """The mail server did not accept the message this time.

    `retry_in`: seconds until the next attempt is due (the notification is held until then), or None
    when the attempts are used up and the notification is marked failed.
    """

    def __init__(self, message: str, retry_in: int | None) -> None:
        super().__init__(message)
        self.retry_in = retry_in


def _claim(key: str) -> Notification | None:
    """Take the notification for delivery, unless it is sent, given up, or held by another delivery."""
    now = clock.utcnow()
    hold = timedelta(seconds=current_app.config["NOTIFY_LOCK_SECONDS"])
    claimed = changed_rows(
        update(Notification)
        .where(
            Notification.dedup_key == key,
            Notification.email_state == EmailState.PENDING,
            (Notification.email_locked_until.is_(None)) | (Notification.email_locked_until < now),
        )
        .values(email_attempts=Notification.email_attempts + 1, email_locked_until=now + hold)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if claimed != 1:
        return None
    return db.session.scalar(select(Notification).where(Notification.dedup_key == key))


def deliver_email(key: str) -> str:
    """Send one notification's e-mail once: 'sent', 'skipped' (nothing to do) or raise DeliveryFailed."""
    notification = _claim(key)
    if notification is None:
        return "skipped"
    try:
        send_mail(build_message(notification))
    except Exception as error:
        # Refused, unreachable, or a message that cannot be built: each counts as an attempt, so a
        # notification never stays pending for ever; after the last it is listed to administrators.
        raise DeliveryFailed(str(error), _record_failure(notification, error)) from error
    db.session.execute(
        update(Notification)
        .where(Notification.id == notification.id)
        .values(
            email_state=EmailState.SENT,
            email_sent_at=clock.utcnow(),
            email_locked_until=None,
            email_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return "sent"


def _record_failure(notification: Notification, error: Exception) -> int | None:
    """Record a refused attempt; returns the seconds until the next one, None when it was the last.

    The attempts counted in the row (every claim is one) decide, whichever task or sweep made them. Until
    the retry is due the notification stays held, so that the sweep does not start another delivery in
    the meantime (which would use up the attempts without the backoff).
    """
    config = current_app.config
    attempts = notification.email_attempts
    retry_in = None
    if attempts < config["NOTIFY_MAX_ATTEMPTS"]:
        retry_in = config["NOTIFY_RETRY_BACKOFF_SECONDS"] * 2 ** max(attempts - 1, 0)
    db.session.execute(
        update(Notification)
        .where(Notification.id == notification.id)
        .values(
            email_state=EmailState.FAILED if retry_in is None else EmailState.PENDING,
            email_locked_until=None if retry_in is None else clock.utcnow() + timedelta(seconds=retry_in),
            email_error=f"{type(error).__name__}: {error}"[:1000],
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if retry_in is None:
        current_app.logger.error("notification %s failed for good: %s", notification.id, error)
    return retry_in


def build_message(notification: Notification) -> EmailMessage:
    """The mail in the recipient's language, with a Message-ID fixed per notification.

    To the notification's own address if it has one, else to the recipient's.
    """
    recipient = notification.recipient
    language = (recipient.language if recipient else None) or current_app.config["BABEL_DEFAULT_LOCALE"]
    with force_locale(language):
        subject, body = render(notification.kind, notification.payload)
        base = current_app.config["PORTAL_BASE_URL"].rstrip("/")
        if notification.link:
            body += f"\n\n{base}{_mail_link(notification)}"
    message = EmailMessage()
    # One line: a name with a line break in it (a catalogue cell can have one) would make the header
    # refuse the whole message.
    message["Subject"] = " ".join(subject.split())
    message["From"] = current_app.config["MAIL_DEFAULT_SENDER"]
    message["To"] = notification.email_to or (recipient.email if recipient else None)
    message["Message-ID"] = notification.message_id
    message["Date"] = formatdate(localtime=False)
    message.set_content(body)
    return message


def _mail_link(notification: Notification) -> str:
    """The notification's link, with a one-time secret derived now (it is stored nowhere)."""
    link = notification.link or ""  # called only for a notification with a link
    reference = notification.payload.get("secret_of")
    if not reference or SECRET_PLACEHOLDER not in link:
        return link
    return link.replace(SECRET_PLACEHOLDER, mail_secret(*reference))


def send_mail(message: EmailMessage) -> None:
    """Over SMTP when MAIL_SERVER is set; otherwise into instance/mail as .eml files (the demo)."""
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        folder = Path(config["MAIL_FILE_FOLDER"])
        folder.mkdir(parents=True, exist_ok=True)
        name = message["Message-ID"].strip("<>").split("@")[0]
        (folder / f"{name}.eml").write_bytes(bytes(message))
        return
    with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=config["MAIL_TIMEOUT"]) as smtp:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls()
        if config.get("MAIL_USERNAME"):
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
        smtp.send_message(message)


def sweep(older_than_seconds: int | None = None) -> int:
    """Queue every pending e-mail nobody is delivering (after a broker outage or a lost worker)."""
    now = clock.utcnow()
    grace = timedelta(
        seconds=current_app.config["NOTIFY_SWEEP_GRACE_SECONDS"]
        if older_than_seconds is None
        else older_than_seconds
    )
    keys = list(
        db.session.scalars(
            select(Notification.dedup_key).where(
                Notification.email_state == EmailState.PENDING,
                Notification.created_at <= now - grace,
                (Notification.email_locked_until.is_(None)) | (Notification.email_locked_until < now),
            )
        )
    )
    db.session.commit()
    queue_deliveries(keys)
    return len(keys)


def retry_failed(user: User, notification_id: int) -> None:
    """An administrator sends a failed notification again."""
    if user.role is not Role.ADMIN:
        raise Forbidden("Only administrators retry deliveries.")
    notification = db.session.get(Notification, notification_id)
    if notification is None or notification.email_state is not EmailState.FAILED:
        return
    notification.email_state, notification.email_attempts, notification.email_locked_until = (
        EmailState.PENDING,
        0,
        None,
    )
    _deliver_after_commit(db.session(), notification.dedup_key)
    db.session.commit()


# --- the in-app centre ---------------------------------------------------------------------------


def unread_count(user: User) -> int:
    return db.session.execute(
        select(func.count())
        .select_from(Notification)
        .where(
            Notification.recipient_id == user.id,
            Notification.email_to.is_(None),
            Notification.read_at.is_(None),
        )
    ).scalar_one()


def inbox(user: User, limit: int = 100) -> list[Notification]:
    return list(
        db.session.scalars(
            select(Notification)
            .where(Notification.recipient_id == user.id, Notification.email_to.is_(None))
            .order_by(Notification.read_at.is_not(None), Notification.id.desc())
            .limit(limit)
        )
    )


def mark_read(user: User, notification_id: int | None = None) -> int:
    """Mark one (or, without an id, every) notification of the user as read."""
    stmt = update(Notification).where(Notification.recipient_id == user.id, Notification.read_at.is_(None))
    if notification_id is not None:
        stmt = stmt.where(Notification.id == notification_id)
    count = changed_rows(stmt.values(read_at=clock.utcnow()).execution_options(synchronize_session=False))
    db.session.commit()
    return count


def failed_deliveries(limit: int = 200) -> list[Notification]:
    return list(
        db.session.scalars(
            select(Notification)
            .where(Notification.email_state == EmailState.FAILED)
            .order_by(Notification.id.desc())
            .limit(limit)
        )
    )
