"""Refusing PDFs that can act on their own: JavaScript, actions run on opening, embedded files, launches.

Evidence PDFs (contracts, invoices, certificates) are opened by reviewers and finance staff; none of
them needs a script or an attachment. Two checks, both must pass:

- a byte scan, outside stream data, for the names that start such content (`/JS`, `/JavaScript`,
  `/AA`, `/EmbeddedFiles`, `/EmbeddedFile`, `/Launch`), with `#xx` escapes undone: cheap, and it
  sees objects that the cross-reference table leaves out (which a viewer repairing the file may
  still find);
- pypdf reads the file, and every object (those in compressed object streams too) is looked at for
  the same keys, for actions of type JavaScript or Launch (an `/OpenAction` among them) and for files
  embedded through `/EF`. A PDF that pypdf cannot read is refused as damaged: what cannot be checked
  is not kept.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from flask_babel import gettext as _

from portal.core.errors import ValidationFailed

# A PDF name: a slash, then anything up to whitespace or a delimiter (PDF 32000-1, 7.3.5).
NAME = re.compile(rb"/([^\s()<>\[\]{}/%]*)")
HEX_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
# Stream data is left out of the byte scan: compressed bytes hold "/JS " by chance now and then.
STREAM_DATA = re.compile(rb"stream\r?\n.*?endstream", re.DOTALL)
ACTIVE_NAMES = frozenset({b"JS", b"JavaScript", b"AA", b"EmbeddedFiles", b"EmbeddedFile", b"Launch"})
# Dictionary keys that hold scripts, automatic actions or embedded files.
ACTIVE_KEYS = frozenset({"/JS", "/JavaScript", "/AA", "/EmbeddedFiles", "/EF", "/Launch"})
# Values of /S (an action's type) and /Type that mean the same.
ACTIVE_VALUES = frozenset({"/JavaScript", "/Launch", "/EmbeddedFile"})
MAX_DEPTH = 64


class PdfRefused(ValidationFailed):
    """A PDF with active content or one that cannot be checked."""


def _refuse(message: str) -> PdfRefused:
    return PdfRefused(message, {"file": message})


def active_message() -> str:
    return _(
        "This PDF contains JavaScript, automatic actions or embedded files, which are not accepted. "
        "Print it to a new PDF (or scan it) and upload that."
    )


def malformed_message() -> str:
    return _("This PDF is damaged and cannot be checked. Save or print it to a new PDF and upload that.")


def locked_message() -> str:
    return _("This PDF needs a password to be opened, so it cannot be checked. Upload a copy without one.")


def names_in(data: bytes) -> set[bytes]:
    """Every PDF name outside stream data, with `#xx` escapes undone (`/J#61vaScript` is `/JavaScript`)."""
    text = STREAM_DATA.sub(b" ", data)
    return {HEX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), m.group(1)) for m in NAME.finditer(text)}


def _active(value: Any, depth: int = 0) -> bool:
    """True if a pypdf object (not following references: every object is visited anyway) is active."""
    # pypdf is imported at first use: it takes ~0.1 s and ~5 MB to load, and only PDF uploads need it.
    from pypdf.generic import ArrayObject, DictionaryObject

    if depth > MAX_DEPTH:
        return True  # nesting no real document has
    if isinstance(value, DictionaryObject):
        for key, item in value.items():
            if key in ACTIVE_KEYS:
                return True
            if key in ("/S", "/Type") and str(item) in ACTIVE_VALUES:
                return True
            if _active(item, depth + 1):
                return True
    elif isinstance(value, ArrayObject):
        return any(_active(item, depth + 1) for item in value)
    return False


def _parsed_active(path: Path) -> bool:
    """Whether any object pypdf reads is active; raises if pypdf cannot read the file."""
    from pypdf import PdfReader  # at first use, as in _active
    from pypdf.generic import IndirectObject

    reader = PdfReader(path, strict=False)
    if reader.is_encrypted:
        # Many issued invoices are encrypted only against editing, with an empty password to open
        # them; one that needs a password to be read cannot be checked (and raises below).
        from pypdf import PasswordType

        if reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise _refuse(locked_message())
    if _active(reader.trailer):
        return True
    numbers = {(number, generation) for generation, table in reader.xref.items() for number in table}
    numbers.update((number, 0) for number in reader.xref_objStm)
    for number, generation in sorted(numbers):
        if number == 0:
            continue
        if _active(reader.get_object(IndirectObject(number, generation, reader))):
            return True
    return False


def check_pdf(path: Path) -> None:
    """Refuse (PdfRefused, with a message for the form) a stored PDF with active content or unreadable."""
    data = path.read_bytes()
    if names_in(data) & ACTIVE_NAMES:
        raise _refuse(active_message())
    # pypdf complains about every repair it makes through logging; the refusal says enough.
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        active = _parsed_active(path)
    except PdfRefused:
        raise
    except Exception:  # any failure to parse (pypdf raises many kinds) means the file cannot be checked
        raise _refuse(malformed_message()) from None
    finally:
        logger.setLevel(level)
    if active:
        raise _refuse(active_message())
