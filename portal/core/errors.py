"""Errors the services raise; the API turns them into JSON with a stable code, pages into messages."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refusal with a stable machine code, an HTTP status and a message a person can act on."""

    code = "error"
    status = 400

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationFailed(ServiceError):
    code = "validation_error"
    status = 422

    # A message per field; a few refusals add details for programs (a booking's "rules" is a list).
    def __init__(self, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message, {"fields": fields or {}})
        self.fields = fields or {}


class NotFound(ServiceError):
    code = "not_found"
    status = 404


class Forbidden(ServiceError):
    code = "forbidden"
    status = 403


class Unauthorized(ServiceError):
    code = "unauthorized"
    status = 401


class InvalidTransition(ServiceError):
    code = "invalid_transition"
    status = 409


class SlotConflict(ServiceError):
    code = "slot_conflict"
    status = 409


class LimitExceeded(ServiceError):
    code = "limit_exceeded"
    status = 409


class Suspended(ServiceError):
    """The enterprise's self-service booking is suspended (credit rules, issue 18); `until` in details."""

    code = "suspended"
    status = 409


class SlotOffered(ServiceError):
    """The time is held as a waitlist offer to another enterprise (issue 18) until the offer ends."""

    code = "slot_offered"
    status = 409


class SeriesConflicts(ServiceError):
    """Occurrences of a recurring booking (issue 18) cannot be booked, and the series was not to skip
    them (or none could be booked): nothing was booked. `details.conflicts` lists each refused one."""

    code = "series_conflicts"
    status = 409
