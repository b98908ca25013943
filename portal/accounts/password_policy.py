"""The password policy: long enough, not a common or breached password, not made from the username or
e-mail address.

Applied wherever a password is chosen: registration, a password change or reset, an invitation's
acceptance, an account made by an administrator or `flask users create`. Every reason is reported at
once, as the message of the `password` field.
"""

from __future__ import annotations

import gzip
import re
from functools import cache
from pathlib import Path

from flask_babel import gettext as _

from portal.core.errors import ValidationFailed

MIN_PASSWORD_LENGTH = 10
# Django's list of 19,640 common and breached passwords, lower case (data/README.md says where from).
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common-passwords.txt.gz"
# Parts of a name shorter than this are too common in passwords to refuse ("li", "wu", "cn").
MIN_PART_LENGTH = 4


@cache
def common_passwords() -> frozenset[str]:
    """The bundled list, read once per process."""
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def is_common(password: str) -> bool:
    """Whether the password (in any case, without surrounding spaces) is on the bundled list."""
    return password.strip().lower() in common_passwords()


def _parts(username: str, email: str) -> set[str]:
    """What a password must not contain: the username, the e-mail address and its local part, and the
    words of the username and the local part (split at dots, dashes, underscores and digits; not the
    mail domain's, which many share), all in lower case."""
    username, email = (username or "").strip().lower(), (email or "").strip().lower()
    local = email.partition("@")[0]
    words = {word for value in (username, local) for word in re.split(r"[^a-z]+", value)}
    return {part for part in {username, email, local} | words if len(part) >= MIN_PART_LENGTH}


def derived_from(password: str, username: str = "", email: str = "") -> bool:
    """Whether the password contains the username or e-mail address (or a word of them), forwards or
    reversed, in any case."""
    lowered = password.lower()
    return any(part in lowered or part[::-1] in lowered for part in _parts(username, email))


def password_problems(password: str, username: str = "", email: str = "") -> list[str]:
    """Every reason the password is refused (none: it is accepted)."""
    problems = []
    if len(password or "") < MIN_PASSWORD_LENGTH:
        problems.append(_("Use at least %(n)d characters.", n=MIN_PASSWORD_LENGTH))
    if password and is_common(password):
        problems.append(
            _("This password is one of the most common ones, which are tried first: choose another.")
        )
    if password and derived_from(password, username, email):
        problems.append(_("The password must not contain your username or e-mail address."))
    return problems


def check_password(password: str, username: str = "", email: str = "") -> None:
    """Raise ValidationFailed, with the reasons as the `password` field's message, unless it is accepted."""
    problems = password_problems(password, username, email)
    if problems:
        message = " ".join(problems)
        raise ValidationFailed(message, {"password": message})
