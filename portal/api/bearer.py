"""Who may call an operation: the bearer-token checks every API module uses.

The token itself is looked up by portal.accounts.sessions (Flask-Login asks it for each request); the
endpoints that issue and revoke tokens are in portal.api.auth.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import request
from flask_babel import gettext as _
from flask_login import current_user

from portal.core.errors import Forbidden, Unauthorized
from portal.core.permissions import Role

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


# Instrument PCs send `Authorization: Device <key>`; the usage-events endpoint checks that itself.
DEVICE_SCHEME = "device"


def reject_bad_credentials() -> None:
    """A request that sends credentials which do not work is refused, not treated as anonymous."""
    header = request.headers.get("Authorization", "")
    if header.partition(" ")[0].lower() == DEVICE_SCHEME:
        return
    if header and not current_user.is_authenticated:
        raise Unauthorized(_("The bearer token is invalid or has expired."))


def token_required(*roles: Role) -> Callable:
    """Only callers with a valid token (and, if given, one of `roles`)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                raise Unauthorized(_("This needs a bearer token: POST /api/v1/tokens first."))
            if roles and current_user.role not in roles:
                raise Forbidden(_("Your role may not do this."))
            return view(*args, **kwargs)

        return wrapped

    return decorator


def bearer_token() -> str:
    """The token of this request's Authorization header (empty if there is none)."""
    return request.headers.get("Authorization", "").partition(" ")[2].strip()
