"""Roles and the decorators that keep each page to the roles it belongs to."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any

from flask import abort
from flask_login import current_user, login_required


class Role(StrEnum):
    ENTERPRISE = "enterprise"
    PROVIDER = "provider"
    REVIEWER = "reviewer"
    FINANCE = "finance"
    ADMIN = "admin"


BUREAU_ROLES = frozenset({Role.REVIEWER, Role.FINANCE, Role.ADMIN})


def role_required(*roles: Role) -> Callable:
    """Logged-in users of one of `roles` only: anonymous visitors go to the login page, others get 403."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator
