"""Evidence uploads: PDF, JPEG or PNG, recognised by their content, size-limited, stored outside static/."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import current_app
from flask_babel import gettext as _

from portal.core.errors import ValidationFailed

# What each accepted type starts with. The file name and the browser's declared type are ignored:
# a renamed program stays a program.
SIGNATURES = (
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
)
CHUNK = 64 * 1024


@dataclass(frozen=True)
class StoredFile:
    stored_name: str
    content_type: str
    size: int
    sha256: str
    original_name: str


def upload_root() -> Path:
    root = Path(current_app.config["UPLOAD_FOLDER"])
    root.mkdir(parents=True, exist_ok=True)
    return root


def detect_type(head: bytes) -> tuple[str, str] | None:
    """(content type, extension) for an accepted file's first bytes, else None."""
    for magic, content_type, suffix in SIGNATURES:
        if head.startswith(magic):
            return content_type, suffix
    return None


def _clean_name(name: str | None) -> str:
    base = Path((name or "").replace("\\", "/")).name.strip()
    return "".join(ch for ch in base if ch.isprintable())[:200] or "upload"


def store_upload(stream: IO[bytes], filename: str | None) -> StoredFile:
    """Check and store an upload; raises ValidationFailed with a message saying what is wrong."""
    limit = current_app.config["UPLOAD_MAX_BYTES"]
    head = stream.read(16)
    detected = detect_type(head)
    if not head:
        raise ValidationFailed(_("The file is empty."), {"file": _("The file is empty.")})
    if detected is None:
        message = _("Only PDF, JPEG or PNG files are accepted, and this file is none of them.")
        raise ValidationFailed(message, {"file": message})
    content_type, suffix = detected
    stored_name = f"{uuid.uuid4().hex}{suffix}"
    target = upload_root() / stored_name
    digest = hashlib.sha256(head)
    size = len(head)
    try:
        with target.open("xb") as out:
            out.write(head)
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    message = _("The file is larger than %(mb)d MB.", mb=limit // (1024 * 1024))
                    raise ValidationFailed(message, {"file": message})
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return StoredFile(stored_name, content_type, size, digest.hexdigest(), _clean_name(filename))


def stored_path(stored_name: str) -> Path:
    """The path of a stored file; the name is ours (a UUID), never the uploader's."""
    path = (upload_root() / stored_name).resolve()
    if path.parent != upload_root().resolve():
        raise ValueError("stored file outside the upload folder")
    return path


def discard(stored_name: str) -> None:
    """Remove a stored file whose database row was not written."""
    stored_path(stored_name).unlink(missing_ok=True)


def store_checked(data: bytes, suffix: str, filename: str | None, content_type: str) -> StoredFile:
    """Store content a caller has already checked (a catalogue file), under a new name of ours."""
    stored_name = f"{uuid.uuid4().hex}{suffix}"
    target = upload_root() / stored_name
    with target.open("xb") as out:
        out.write(data)
    return StoredFile(
        stored_name, content_type, len(data), hashlib.sha256(data).hexdigest(), _clean_name(filename)
    )
