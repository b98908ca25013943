"""Files kept across a form that failed, so nobody has to choose them again.

Browsers cannot re-fill a file input. When a form with files is shown again after an error, every
file that passed its checks stays stored (`portal.core.uploads`) and is marked as held, and the page
carries a signed token for it; the next submission of the same form by the same user takes it back.
A held file becomes permanent when a row takes it (`settle`, before that row's commit); a file nobody
took is removed after a day, the next time any file is held.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flask import current_app, request
from flask_login import current_user
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.datastructures import FileStorage

from portal.core import uploads
from portal.core.errors import ValidationFailed

HELD_FOLDER = "held"
MAX_AGE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class HeldFile:
    """A checked, stored upload waiting for its form, and the token the page carries for it."""

    token: str
    file: uploads.StoredFile


@dataclass
class Received:
    """The files of one submission: held (new or from before) and the fields whose new file was refused."""

    held: dict[str, HeldFile] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> dict[str, uploads.StoredFile]:
        return {name: held.file for name, held in self.held.items()}

    def release(self) -> None:
        """Drop every held file (the form they were for cannot be completed any more)."""
        for held in self.held.values():
            release(held.file.stored_name)
        self.held.clear()


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="portal.held-upload")


def _marker(stored_name: str) -> Path:
    uploads.stored_path(stored_name)  # refuses a name that is not one of ours
    return uploads.upload_root() / HELD_FOLDER / stored_name


def hold(stored: uploads.StoredFile, scope: str, owner_id: int) -> HeldFile:
    """Mark a stored upload as held for `scope` (e.g. one booking's service form) and this user."""
    _purge()
    marker = _marker(stored.stored_name)
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    token = _serializer().dumps({"scope": scope, "owner": owner_id, "file": asdict(stored)})
    return HeldFile(token, stored)


def take(token: str, scope: str, owner_id: int) -> HeldFile | None:
    """The held file a token names, if it is genuine, recent, for this scope and user, and still held."""
    try:
        data = _serializer().loads(token, max_age=MAX_AGE_SECONDS)
        stored = uploads.StoredFile(**data["file"])
        if data["scope"] != scope or data["owner"] != owner_id:
            return None
        marker = _marker(stored.stored_name)
    except (BadSignature, TypeError, KeyError, ValueError):
        return None
    if not marker.exists() or not uploads.stored_path(stored.stored_name).exists():
        return None
    return HeldFile(token, stored)


def settle(stored_name: str) -> None:
    """A row now holds this file: it is no longer removed as forgotten."""
    _marker(stored_name).unlink(missing_ok=True)


def release(stored_name: str) -> None:
    """Remove a held file nobody will use."""
    uploads.discard(stored_name)
    settle(stored_name)


def _purge() -> None:
    folder = uploads.upload_root() / HELD_FOLDER
    if not folder.is_dir():
        return
    cutoff = time.time() - MAX_AGE_SECONDS
    for marker in folder.iterdir():
        try:
            if marker.stat().st_mtime < cutoff:
                release(marker.name)
        except (OSError, ValueError):
            continue  # removed meanwhile by another request, or not a name of ours


def receive(
    files: dict[str, FileStorage | None], tokens: dict[str, str], scope: str, owner_id: int
) -> Received:
    """Check and hold each newly chosen file; where none was chosen, take the one held from before.

    A refused file is reported under its field name (the one held before, if any, stays held).
    """
    received = Received()
    for name, storage in files.items():
        before = take(tokens[name], scope, owner_id) if tokens.get(name) else None
        if storage is not None and storage.filename:
            try:
                stored = uploads.store_upload(storage.stream, storage.filename)
            except ValidationFailed as error:
                received.errors[name] = error.message
            else:
                if before is not None:
                    release(before.file.stored_name)
                received.held[name] = hold(stored, scope, owner_id)
                continue
        if before is not None:
            received.held[name] = before
    return received


def receive_form(form: FlaskForm, names: tuple[str, ...], scope: str) -> Received:
    """The files of a submitted, validated form (held as `receive` does); a refused file's message goes
    to its field. Nothing is stored for a submission without a valid CSRF token."""
    if "csrf_token" in form and form.csrf_token.errors:
        return Received()
    received = receive(
        {name: form[name].data for name in names},
        {name: request.form.get(f"held-{name}", "") for name in names},
        scope,
        current_user.id,
    )
    for name, message in received.errors.items():
        form[name].errors = [*form[name].errors, message]
    return received
