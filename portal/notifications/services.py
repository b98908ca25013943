"""Notifications: the outbox written with each change, exactly-once e-mail delivery, the in-app centre.

`notify()` adds rows to the session of the change itself, so a notification exists exactly when its
change was committed. The delivery task is queued only after that commit; if the broker is down the
row simply waits for the periodic sweep. The deliveries go to Celery in batches (NOTIFY_BATCH_SIZE keys
a task); a delivery claims its due notifications with one conditional update before sending, so two
workers (or a retry and a sweep) never both send one, sends them over the worker process's one SMTP
connection (`mailer`) and marks each sent as soon as the server accepted it. Every mail carries a
Message-ID fixed per notification.
"""

from __future__ import annotations

import email.policy
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import Any

from flask import current_app
from flask_babel import force_locale
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy import Update, bindparam, event, func, select, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, joinedload

from portal.accounts.models import User
from portal.accounts.tokens import SECRET_PLACEHOLDER, mail_secret
from portal.core import clock
from portal.core.database import after_commit, changed_rows, insert_ignore, table_of
from portal.core.errors import Forbidden
from portal.core.permissions import Role
from portal.extensions import db
from portal.notifications import mailer
from portal.notifications.messages import render
from portal.notifications.models import EmailState, Notification

PENDING_KEYS = "notification_keys"
DELIVER_TASK = "notifications.deliver_batch"


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


def queue_deliveries(keys: list[str], countdown: int | None = None) -> None:
    """Hand deliveries to Celery, NOTIFY_BATCH_SIZE keys a task (after `countdown` seconds, if given);
    when the broker cannot be reached the sweep will do it later."""
    if not keys:
        return
    # By name: the tasks module imports this one, never the other way round.
    deliver = current_app.extensions["celery"].tasks[DELIVER_TASK]
    size = max(1, current_app.config["NOTIFY_BATCH_SIZE"])
    for start in range(0, len(keys), size):
        batch = keys[start : start + size]
        try:
            # A fresh app context: an eager task must not use the session that has just committed.
            with current_app.app_context():
                deliver.apply_async(args=(batch,), countdown=countdown, retry=False)
        except BrokerUnavailable as error:
            # Down or not answering: the other keys would only wait for the same timeout, one after
            # the other, and the sweep queues every one of them anyway.
            current_app.logger.warning(
                "delivery of %s not queued (%s); the sweep will retry", ", ".join(keys[start:]), error
            )
            return
        except Exception as error:
            current_app.logger.warning(
                "delivery of %s not queued (%s); the sweep will retry", ", ".join(batch), error
            )


# --- delivery ------------------------------------------------------------------------------------


class DeliveryFailed(Exception):
    """The mail server did not accept the message this time.

    `retry_in`: seconds until the next attempt is due (the notification is held until then), or None
    when the attempts are used up and the notification is marked failed.
    """

    def __init__(self, message: str, retry_in: int | None) -> None:
        super().__init__(message)
        self.retry_in = retry_in


@dataclass
class Failure:
    """A notification whose mail was not accepted this time; `retry_in` as in DeliveryFailed."""

    key: str
    error: str
    retry_in: int | None


@dataclass
class Outcome:
    """What one delivery (a batch of keys) did. Keys in neither list were not due: sent already, given
    up, or held by another delivery."""

    sent: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"sent": len(self.sent), "failed": len(self.failed)}


@dataclass
class _Claimed:
    """A notification this delivery holds, as plain values: ORM objects would be read again after every
    commit, and might by then show another delivery's claim."""

    id: int
    key: str
    attempts: int  # this claim counted; (id, attempts) identifies the claim
    mail: mailer.Mail | None = None
    problem: Exception | None = None  # why the mail could not be composed


_NOTIFICATIONS = table_of(Notification)
# Run once per mail: a Core statement built once (the ORM's UPDATE, built and keyed afresh for every
# mail, doubled the processor time of recording one).
_MARK_SENT = (
    update(_NOTIFICATIONS)
    .where(_NOTIFICATIONS.c.id == bindparam("notification_id"))
    .values(
        email_state=EmailState.SENT,
        email_sent_at=bindparam("sent_at"),
        email_locked_until=None,
        email_error=None,
    )
)


def _claim_statement(skip_locked: bool) -> Update:
    """The claim, built once per backend with its values as parameters (building and keying a statement
    costs more processor time than running it)."""
    column = _NOTIFICATIONS.c
    due = (
        column.dedup_key.in_(bindparam("keys", expanding=True)),
        column.email_state == EmailState.PENDING,
        column.email_locked_until.is_(None) | (column.email_locked_until < bindparam("now")),
    )
    chosen = select(column.id).where(*due)
    if skip_locked:
        chosen = chosen.with_for_update(skip_locked=True)
    return (
        update(_NOTIFICATIONS)
        .where(column.id.in_(chosen), *due)
        .values(email_attempts=column.email_attempts + 1, email_locked_until=bindparam("until"))
        .returning(column.id, column.dedup_key, column.email_attempts)
    )


# By whether the backend skips locked rows (PostgreSQL does; SQLite has no row locks to skip).
_CLAIM = {True: _claim_statement(skip_locked=True), False: _claim_statement(skip_locked=False)}
_CLAIMED = (
    select(Notification)
    .options(joinedload(Notification.recipient))
    .where(Notification.id.in_(bindparam("ids", expanding=True)))
    .execution_options(populate_existing=True)
)


def _claim(connection: Connection, keys: list[str]) -> list[_Claimed]:
    """Take the due notifications among `keys` for delivery, in id order, with their messages built.

    Each gets one attempt more and is held for NOTIFY_LOCK_SECONDS, in one conditional UPDATE: sent,
    given-up and held notifications are left alone, and so (SKIP LOCKED, PostgreSQL) are rows another
    delivery is claiming at this very moment, instead of waiting for its commit or deadlocking with a
    batch that overlaps. On SQLite the database lock serialises the claims.
    """
    now = clock.utcnow()
    until = now + timedelta(seconds=current_app.config["NOTIFY_LOCK_SECONDS"])
    rows = connection.execute(
        _CLAIM[connection.dialect.name == "postgresql"], {"keys": keys, "now": now, "until": until}
    ).all()
    connection.commit()
    claimed = {row.id: _Claimed(row.id, row.dedup_key, row.email_attempts) for row in rows}
    if not claimed:
        return []
    for notification in db.session.scalars(_CLAIMED, {"ids": list(claimed)}).unique():
        try:
            claimed[notification.id].mail = compose(notification)
        except Exception as error:  # recorded as this notification's failed attempt
            claimed[notification.id].problem = error
    db.session.commit()
    return [claimed[i] for i in sorted(claimed)]


def deliver_batch(keys: list[str]) -> Outcome:
    """Send the e-mails of the due notifications among `keys`, each once, one after the other over this
    process's SMTP connection.

    Each is marked sent (and committed) as soon as the server accepted it, so a worker lost mid-batch
    leaves only the mail in flight to be sent again, recognisably (its Message-ID), as a single delivery
    did. A refusal fails that mail alone; a server that cannot be reached fails the rest of the batch
    (each an attempt, as each would have been in a task of its own). Failures are held until their retry.
    The batch's writes go over one database connection of their own (`_writing_connection`).
    """
    outcome = Outcome()
    with _writing_connection() as connection:
        claimed = _claim(connection, keys)
        mine = {item.id for item in claimed}
        held_since = time.monotonic()
        for index, item in enumerate(claimed):
            if time.monotonic() - held_since > current_app.config["NOTIFY_LOCK_SECONDS"] / 4:
                # A slow server: hold the rest afresh, so that every mail starts with most of its hold
                # ahead and the sweep cannot hand it to another worker while this one is sending it.
                mine = _renew(connection, [each for each in claimed[index:] if each.id in mine])
                held_since = time.monotonic()
            if item.id not in mine:
                continue  # its hold had lapsed and another delivery claimed it: that one sends it
            try:
                if item.mail is None:
                    raise item.problem or LookupError(f"notification {item.id} is gone")
                send_mail(item.mail)
            except mailer.ServerUnavailable as error:
                rest = [each for each in claimed[index:] if each.id in mine]
                outcome.failed.extend(_record_failure(connection, each, error) for each in rest)
                break
            except Exception as error:
                # Refused, or a message that cannot be built: each counts as an attempt, so a
                # notification never stays pending for ever; after the last it is listed to administrators.
                outcome.failed.append(_record_failure(connection, item, error))
                continue
            connection.execute(_MARK_SENT, {"notification_id": item.id, "sent_at": clock.utcnow()})
            connection.commit()  # at once: no later failure of the batch makes an accepted mail look unsent
            outcome.sent.append(item.key)
    return outcome


def _writing_connection() -> Connection:
    """A connection for one batch's writes. The session would hand its connection back to the pool at
    every commit and check it (a round trip) at the next statement. On PostgreSQL it runs in autocommit:
    each of the batch's writes is one statement, a transaction by itself, so recording a mail takes one
    round trip instead of three (BEGIN, UPDATE, COMMIT); as durable, and nothing else changes."""
    connection = db.engine.connect()
    if connection.dialect.name == "postgresql":
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def deliver_email(key: str) -> str:
    """Send one notification's e-mail once: 'sent', 'skipped' (nothing to do) or raise DeliveryFailed."""
    outcome = deliver_batch([key])
    if outcome.failed:
        raise DeliveryFailed(outcome.failed[0].error, outcome.failed[0].retry_in)
    return "sent" if outcome.sent else "skipped"


def queue_retries(outcome: Outcome) -> None:
    """Queue the next attempt of each failed notification for when its hold ends (the sweep would find
    it as well, but up to a minute later than its backoff says)."""
    waits: dict[int, list[str]] = {}
    for failure in outcome.failed:
        if failure.retry_in is not None:
            waits.setdefault(failure.retry_in, []).append(failure.key)
    for wait, keys in sorted(waits.items()):
        queue_deliveries(keys, countdown=wait)


def _renew(connection: Connection, items: list[_Claimed]) -> set[int]:
    """Hold `items` for NOTIFY_LOCK_SECONDS from now, those still this delivery's (same attempt count,
    still pending); returns their ids. One whose hold had lapsed and that another delivery claimed
    meanwhile is that delivery's to send."""
    if not items:
        return set()
    column = _NOTIFICATIONS.c
    kept = connection.scalars(
        update(_NOTIFICATIONS)
        .where(
            tuple_(column.id, column.email_attempts).in_([(i.id, i.attempts) for i in items]),
            column.email_state == EmailState.PENDING,
        )
        .values(
            email_locked_until=clock.utcnow() + timedelta(seconds=current_app.config["NOTIFY_LOCK_SECONDS"])
        )
        .returning(column.id)
    ).all()
    connection.commit()
    return set(kept)


def _record_failure(connection: Connection, item: _Claimed, error: Exception) -> Failure:
    """Record a refused attempt; the Failure's retry_in is the seconds until the next one, None when it
    was the last.

    The attempts counted in the row (every claim is one) decide, whichever task or sweep made them. Until
    the retry is due the notification stays held, so that the sweep does not start another delivery in
    the meantime (which would use up the attempts without the backoff). Written only while the row is
    still this claim's: a later claim's delivery records its own outcome.
    """
    config = current_app.config
    retry_in = None
    if item.attempts < config["NOTIFY_MAX_ATTEMPTS"]:
        retry_in = config["NOTIFY_RETRY_BACKOFF_SECONDS"] * 2 ** max(item.attempts - 1, 0)
    column = _NOTIFICATIONS.c
    connection.execute(
        update(_NOTIFICATIONS)
        .where(
            column.id == item.id,
            column.email_attempts == item.attempts,
            column.email_state == EmailState.PENDING,
        )
        .values(
            email_state=EmailState.FAILED if retry_in is None else EmailState.PENDING,
            email_locked_until=None if retry_in is None else clock.utcnow() + timedelta(seconds=retry_in),
            email_error=f"{type(error).__name__}: {error}"[:1000],
        )
    )
    connection.commit()
    if retry_in is None:
        current_app.logger.error("notification %s failed for good: %s", item.id, error)
    return Failure(item.key, str(error), retry_in)


# The message as sent: compat32's MIMEText and Header write a message in a tenth of the processor time
# EmailMessage takes to parse, check and refold its headers (a third of a mail's cost in a worker).
# The body is base64, 7-bit clean whatever the server offers; the subject RFC 2047 words when not ASCII.
_WIRE = email.policy.compat32.clone(linesep="\r\n")


def compose(notification: Notification) -> mailer.Mail:
    """The notification's mail, ready to send: in the recipient's language, with a Message-ID fixed per
    notification, to the notification's own address if it has one, else to the recipient's."""
    recipient = notification.recipient
    language = (recipient.language if recipient else None) or current_app.config["BABEL_DEFAULT_LOCALE"]
    with force_locale(language):
        subject, body = render(notification.kind, notification.payload)
        base = current_app.config["PORTAL_BASE_URL"].rstrip("/")
        if notification.link:
            body += f"\n\n{base}{_mail_link(notification)}"
    sender_name, sender = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])
    to = notification.email_to or (recipient.email if recipient else None)
    if not to:
        raise ValueError(f"notification {notification.id} has no address to mail")
    headers = {
        # One line: a name with a line break in it (a catalogue cell can have one) must not break it.
        "Subject": " ".join(subject.split()),
        "From": formataddr((sender_name, sender), charset="utf-8"),
        "To": to,
        "Message-ID": notification.message_id,
        "Date": formatdate(localtime=False),
    }
    if any("\n" in value or "\r" in value for value in headers.values()):
        raise ValueError(f"a header of notification {notification.id}'s mail holds a line break")
    international = not (sender + to).isascii()
    data = _international_message(headers, body) if international else _plain_message(headers, body)
    return mailer.Mail(sender, to, notification.message_id, data, international=international)


def _plain_message(headers: dict[str, str], body: str) -> bytes:
    # Typed as taking str headers; compat32 takes a Header (encoded words) as well, and folds it.
    message: Message[Any, Any] = MIMEText(body, "plain", "utf-8")
    for name, value in headers.items():
        message[name] = value if value.isascii() else Header(value, "utf-8", header_name=name)
    return message.as_bytes(policy=_WIRE)


def _international_message(headers: dict[str, str], body: str) -> bytes:
    """For an address that is not ASCII (RFC 6531): its headers go as UTF-8, as SMTPUTF8 allows."""
    message = EmailMessage()
    for name, value in headers.items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes(policy=email.policy.SMTPUTF8)


def build_message(notification: Notification) -> EmailMessage:
    """The mail compose() sends, read back as a message (for whoever reads rather than sends it)."""
    return email.message_from_bytes(compose(notification).data, policy=email.policy.default)


def _mail_link(notification: Notification) -> str:
    """The notification's link, with a one-time secret derived now (it is stored nowhere)."""
    link = notification.link or ""  # called only for a notification with a link
    reference = notification.payload.get("secret_of")
    if not reference or SECRET_PLACEHOLDER not in link:
        return link
    return link.replace(SECRET_PLACEHOLDER, mail_secret(*reference))


def send_mail(mail: mailer.Mail) -> None:
    """Over SMTP when MAIL_SERVER is set (this process's kept connection, see mailer); otherwise into
    instance/mail as .eml files (the demo)."""
    config = current_app.config
    if not config.get("MAIL_SERVER"):
        folder = Path(config["MAIL_FILE_FOLDER"])
        folder.mkdir(parents=True, exist_ok=True)
        name = mail.message_id.strip("<>").split("@")[0]
        (folder / f"{name}.eml").write_bytes(mail.data)
        return
    mailer.send(mail, config)


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
