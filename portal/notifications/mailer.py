"""One SMTP connection per worker process (per thread), reused from one mail to the next.

Opening a connection (TCP, greeting, EHLO, STARTTLS, login, QUIT) cost more than sending the mail over
it. So each process keeps its connection open between mails and between tasks, opens a new one when
the server's address or credentials change (another app in the same process) or the process was
forked from the one that opened it, and QUITs it when the worker process shuts down (the Celery
signals in `tasks.py`).

A connection the server closed meanwhile (idle timeout, a limit of messages per connection, a restart)
shows at the next message's MAIL command, before anything of the message was transmitted: that message
then goes over a fresh connection at once, at no cost of an attempt. Once DATA has begun the server may
have accepted the message, so a failure from then on is the caller's to record and retry (the
Message-ID, fixed per notification, marks a repeat as the same mail).
"""

from __future__ import annotations

import os
import smtplib
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Replies that refuse one message; the connection itself is fine and stays open.
_REFUSALS = (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused, smtplib.SMTPNotSupportedError)


@dataclass(frozen=True)
class Mail:
    """A message as it goes out: the envelope's addresses and the message itself (CRLF line ends)."""

    sender: str
    recipient: str
    message_id: str
    data: bytes
    international: bool = False  # an address is not ASCII: the server must offer SMTPUTF8


_local = threading.local()
# Every holder of this process (one per thread that sent mail), to close them all at shutdown.
_holders: weakref.WeakSet[Connection] = weakref.WeakSet()
_holders_lock = threading.Lock()


class _Session(smtplib.SMTP):
    """smtplib's client, noting whether the message in flight has reached the DATA command."""

    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


class ServerUnavailable(Exception):
    """No session could be opened: the server did not answer, refused the connection, the greeting,
    STARTTLS or the login. Every message would fail the same way for now."""


class _ClosedBeforeData(Exception):
    """The kept connection was found closed before the message began: send it over a fresh one."""


def _settings(config: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a connection depends on: a change of any of these needs a new one."""
    return tuple(
        config.get(name)
        for name in (
            "MAIL_SERVER",
            "MAIL_PORT",
            "MAIL_TIMEOUT",
            "MAIL_USE_TLS",
            "MAIL_USERNAME",
            "MAIL_PASSWORD",
        )
    )


class Connection:
    """The SMTP session of one thread; opened on first use, kept until it fails or is closed."""

    def __init__(self) -> None:
        self.session: _Session | None = None
        self.settings: tuple[Any, ...] | None = None
        self.pid = os.getpid()
        self.opened = 0  # sessions opened by this holder, for the logs and the tests

    def send(self, mail: Mail, config: Mapping[str, Any]) -> None:
        """Send over the kept session; over a fresh one if there is none or it was found closed."""
        if self.pid != os.getpid():
            # Forked: the session belongs to the parent, which may still use it; never QUIT it here.
            self.session, self.settings, self.pid = None, None, os.getpid()
        settings = _settings(config)
        if self.session is not None and self.settings != settings:
            self.close()
        if self.session is not None:
            try:
                self._transmit(self.session, mail, reused=True)
                return
            except _ClosedBeforeData:
                pass
        self._transmit(self._open(config, settings), mail, reused=False)

    def _open(self, config: Mapping[str, Any], settings: tuple[Any, ...]) -> _Session:
        session: _Session | None = None
        try:
            session = _Session(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=config["MAIL_TIMEOUT"])
            if config.get("MAIL_USE_TLS"):
                session.starttls()
            if config.get("MAIL_USERNAME"):
                session.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"] or "")
        except Exception as error:
            if session is not None:
                session.close()
            raise ServerUnavailable(f"{type(error).__name__}: {error}") from error
        self.session, self.settings = session, settings
        self.opened += 1
        return session

    def _transmit(self, session: _Session, mail: Mail, *, reused: bool) -> None:
        session.data_started = False
        try:
            options: tuple[str, ...] = ()
            if mail.international:
                session.ehlo_or_helo_if_needed()
                if not session.has_extn("smtputf8"):
                    raise smtplib.SMTPNotSupportedError(
                        "an address of this mail is not ASCII and the server does not offer SMTPUTF8"
                    )
                options = ("SMTPUTF8", "BODY=8BITMIME")
            session.sendmail(mail.sender, [mail.recipient], mail.data, mail_options=options)
        except Exception as error:
            # A refusal leaves the session usable (smtplib has reset it); anything else may have left
            # it mid-command (or hung: no QUIT then), so it is dropped. smtplib closes it itself on a
            # 421 or a lost connection.
            if session.sock is None or not isinstance(error, _REFUSALS):
                session.close()
                self.session, self.settings = None, None
                if reused and not session.data_started:
                    raise _ClosedBeforeData from error
            raise

    def close(self) -> None:
        """QUIT if the server still listens; forget the session either way."""
        session, self.session, self.settings = self.session, None, None
        if session is None or session.sock is None:
            return
        try:
            session.quit()
        except (smtplib.SMTPException, OSError):
            session.close()


def connection() -> Connection:
    """This thread's holder (a prefork pool process has one thread: one connection per process)."""
    held: Connection | None = getattr(_local, "connection", None)
    if held is None:
        held = _local.connection = Connection()
        with _holders_lock:
            _holders.add(held)
    return held


def send(mail: Mail, config: Mapping[str, Any]) -> None:
    """Send `mail` to the configured server over this thread's kept connection."""
    connection().send(mail, config)


def close_current() -> None:
    """Close this thread's connection (mail sent in-process, outside a worker, is not kept open)."""
    held: Connection | None = getattr(_local, "connection", None)
    if held is not None and held.pid == os.getpid():
        held.close()


def close_all() -> None:
    """QUIT every connection of this process: at worker (process) shutdown."""
    with _holders_lock:
        held = [each for each in _holders if each.pid == os.getpid()]
    for each in held:
        each.close()
