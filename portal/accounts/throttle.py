"""The slow per-username limit of sign-in (the form and POST /api/v1/tokens): it delays, never locks.

The request limits (per visitor's address, per username from one address) are Flask-Limiter's
decorators on the two views. This one counts the failed sign-ins of a username from every address.
Past LOGIN_USER_FAILURE_LIMIT the username is slowed: the addresses that have failed for it share one
attempt per LOGIN_SLOW_DELAY_SECONDS, and are told how long to wait; an address that has not failed
for it is not slowed. So guesses spread over many addresses are throttled (each new address gets one),
while the owner, signing in from their own address, is not locked out by someone else's failures.

The counters live in the rate-limit store (Redis in production); when it cannot answer, an in-process
store with the same limits takes over, never no limit.
"""

from __future__ import annotations

import math
import time

from flask import current_app, request
from flask_babel import gettext as _
from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, RateLimiter

from portal.accounts.models import User
from portal.accounts.services import authenticate
from portal.core.errors import ServiceError
from portal.extensions import limiter

_NAMESPACE = "sign-in"


class SignInDelayed(ServiceError):
    """Too many failures for this username: try again after `retry_after` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            _(
                "There were too many failed sign-ins for this username. Try again in %(seconds)d seconds.",
                seconds=retry_after,
            ),
            {"retry_after": retry_after},
        )


def client_address() -> str:
    """The visitor's address, as the request limits see it (behind TRUSTED_PROXIES, the forwarded one)."""
    return request.remote_addr or "unknown"


def _strategy() -> RateLimiter:
    return limiter.limiter


def _fallback() -> RateLimiter:
    """The application's in-process limiter, for when the shared store fails (each process counts alone)."""
    return current_app.extensions.setdefault("sign_in_fallback", FixedWindowRateLimiter(MemoryStorage()))


def _call(method: str, item: RateLimitItem, *identifiers: str):
    """Ask the shared store; if it cannot answer, the in-process one (same limit, counted here)."""
    try:
        return getattr(_strategy(), method)(item, _NAMESPACE, *identifiers)
    except Exception as error:  # the store is down or full: fall back, never let everything through
        current_app.logger.warning("sign-in limit store unreachable, counting in process: %s", error)
        return getattr(_fallback(), method)(item, _NAMESPACE, *identifiers)


def _enabled() -> bool:
    return bool(current_app.config.get("RATELIMIT_ENABLED", True))


def _normal(username: str | None) -> str:
    return (username or "").strip().lower()


def _failures_item() -> RateLimitItem:
    return parse(current_app.config["LOGIN_USER_FAILURE_LIMIT"])


def _failed_from_item() -> RateLimitItem:
    # "This address has failed for this username" lasts as long as the failure count's window.
    return RateLimitItemPerSecond(1, _failures_item().get_expiry())


def check_sign_in(username: str | None, address: str | None) -> None:
    """Raise SignInDelayed if the username is slowed and this address must wait (call before the
    password is checked: a delayed attempt costs no hash)."""
    if not _enabled():
        return
    user, client = _normal(username), address or "unknown"
    slowed = not _call("test", _failures_item(), "failures", user)
    if not slowed or _call("test", _failed_from_item(), "failed-from", user, client):
        return  # not slowed, or this address has not failed for the username
    gate = RateLimitItemPerSecond(1, max(1, current_app.config["LOGIN_SLOW_DELAY_SECONDS"]))
    if _call("hit", gate, "gate", user):
        return
    reset_at = _call("get_window_stats", gate, "gate", user).reset_time
    raise SignInDelayed(max(1, math.ceil(reset_at - time.time())))


def sign_in(username: str | None, password: str | None, address: str | None) -> User | None:
    """The user these credentials belong to, or None; slowed usernames first (SignInDelayed), then
    services.authenticate (which may raise AccountDisabled), then the failure counted."""
    check_sign_in(username, address)
    user = authenticate(username or "", password or "")
    if user is None:
        record_failure(username, address)
    return user


def record_failure(username: str | None, address: str | None) -> None:
    """Count a failed sign-in (wrong password or unknown username) for the username and the address."""
    if not _enabled():
        return
    user, client = _normal(username), address or "unknown"
    _call("hit", _failures_item(), "failures", user)
    _call("hit", _failed_from_item(), "failed-from", user, client)
