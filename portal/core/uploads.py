"""Evidence uploads: PDF, JPEG or PNG, recognised by their content, size-limited, stored outside static/.

A stored file is named by us (a UUID) with the extension of its detected type, and it is handed out
under the uploader's name with that extension (`served_name`): a PDF named `report.html` downloads
as `report.pdf`. The uploader's name is kept for display only, without control or bidirectional
characters, so `invoice\u202efdp.exe` can never pose as a PDF. PDFs that carry JavaScript or embedded
files are refused (`portal.core.pdf_checks`).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import Response, current_app, send_file
from flask_babel import gettext as _

from portal.core import pdf_checks
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


# Unicode's bidirectional controls (embeddings, overrides, isolates, marks): they reorder what a
# reader sees, so `invoice\u202efdp.exe` shows as "invoiceexe.pdf". All are also unprintable (Cf);
# they are named here so that the rule does not rest on that.
BIDI_CHARACTERS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_name(name: str | None) -> str:
    """The uploader's file name fit to show: no folders, no control, invisible or bidirectional characters."""
    base = Path(BIDI_CHARACTERS.sub("", name or "").replace("\\", "/")).name
    return "".join(ch for ch in base if ch.isprintable()).strip()[:200] or "upload"


def served_name(original_name: str | None, stored_name: str) -> str:
    """The name a download carries: the uploader's name (cleaned) with the extension of the detected type."""
    stem = Path(clean_name(original_name)).stem.strip(" .") or "upload"
    return stem[:180] + Path(stored_name).suffix


def send_stored(stored_name: str, content_type: str | None, original_name: str | None) -> Response:
    """A stored upload as a download: always an attachment under its served name, never cached or sniffed."""
    response = send_file(
        stored_path(stored_name),
        mimetype=content_type,  # None: guessed from the served name
        as_attachment=True,
        download_name=served_name(original_name, stored_name),
    )
    private(response)
    return response


def private(response: Response) -> Response:
    """Headers every download of a person's or an enterprise's file carries."""
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


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
        if content_type == "application/pdf":
            pdf_checks.check_pdf(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return StoredFile(stored_name, content_type, size, digest.hexdigest(), clean_name(filename))


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
        stored_name, content_type, len(data), hashlib.sha256(data).hexdigest(), clean_name(filename)
    )
