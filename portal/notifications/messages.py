"""What each kind of notification says: a subject and a body, in the recipient's language."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

# kind -> (subject, body); both are formatted with the notification's payload.
MESSAGES: dict[str, tuple[Any, Any]] = {
    "booking.requested": (
        _l("New booking request: %(instrument)s"),
        _l(
            "%(enterprise)s asks for %(instrument)s (%(when)s). Please confirm or decline it. "
            "Contact: %(requester)s."
        ),
    ),
    "booking.confirmed": (
        _l("Booking confirmed: %(instrument)s"),
        _l(
            "Your booking of %(instrument)s (%(when)s) is confirmed by %(institution)s. "
            "For any change, call the operator: %(operator)s."
        ),
    ),
    "booking.rejected": (
        _l("Booking declined: %(instrument)s"),
        _l("Your booking of %(instrument)s (%(when)s) was declined: %(reason)s"),
    ),
    "booking.cancelled": (
        _l("Booking cancelled: %(instrument)s"),
        _l("The booking of %(instrument)s (%(when)s) was cancelled. %(reason)s"),
    ),
    "booking.expired": (
        _l("Booking request expired: %(instrument)s"),
        _l("Your request for %(instrument)s (%(when)s) expired without an answer. Please book another time."),
    ),
    "booking.reminder": (
        _l("Reminder: %(instrument)s, %(when)s"),
        _l(
            "Your booking of %(instrument)s begins %(when)s at %(place)s. "
            "If you cannot come, call the operator: %(operator)s."
        ),
    ),
    "instrument.unavailable": (
        _l("Instrument out of service: %(instrument)s"),
        _l(
            "%(instrument)s of %(institution)s is now “%(status)s”, so your confirmed booking (%(when)s) may "
            "not take place. Please call the operator %(operator)s on %(phone)s to arrange it."
        ),
    ),
    "service.recorded": (
        _l("Please confirm and rate the service: %(instrument)s"),
        _l("%(institution)s recorded the service (fee %(fee)s). Please confirm it and rate it."),
    ),
    "verification.verified": (
        _l("Your enterprise is verified"),
        _l("The bureau verified %(enterprise)s. You can now apply for an innovation voucher."),
    ),
    "verification.rejected": (
        _l("Verification not passed"),
        _l("The bureau did not verify %(enterprise)s: %(reason)s"),
    ),
    "bank_account.submitted": (
        _l("Bank account entered: account ending %(last_digits)s"),
        _l(
            "%(by)s entered a bank account for your enterprise's subsidies: %(account_name)s, "
            "%(bank_name)s, account ending %(last_digits)s. It takes effect once the bureau verifies it; "
            "until then payments go to the account in effect. If nobody at your enterprise made this "
            "change, tell the bureau at once."
        ),
    ),
    "bank_account.verified": (
        _l("Bank account verified: account ending %(last_digits)s"),
        _l(
            "The bureau verified the bank account %(account_name)s, %(bank_name)s, account ending "
            "%(last_digits)s. Your subsidies are paid into it from now on."
        ),
    ),
    "bank_account.rejected": (
        _l("Bank account not verified: account ending %(last_digits)s"),
        _l(
            "The bureau did not verify the bank account ending %(last_digits)s (%(bank_name)s): "
            "%(reason)s. Payments still go to the account in effect, if there is one."
        ),
    ),
    "bank_account.missing": (
        _l("A subsidy waits for your bank account"),
        _l(
            "%(amount)s of subsidy is payable to %(enterprise)s, but the bureau cannot pay it without a "
            "verified bank account. Your account holder enters it under Innovation vouchers, Bank account."
        ),
    ),
    "application.approved": (
        _l("Innovation voucher approved"),
        _l("Your voucher %(code)s of %(amount)s is issued, valid until %(valid_until)s."),
    ),
    "application.rejected": (
        _l("Voucher application rejected"),
        _l("Your voucher application was rejected: %(reason)s"),
    ),
    "application.returned": (
        _l("Voucher application returned"),
        _l("Your voucher application was returned for correction: %(reason)s"),
    ),
    "claim.approved": (
        _l("Subsidy approved: %(amount)s"),
        _l("Claim #%(claim)s is approved for %(amount)s and in public notice until %(notice_ends_on)s."),
    ),
    "claim.rejected": (
        _l("Subsidy claim rejected"),
        _l("Claim #%(claim)s was rejected: %(reason)s"),
    ),
    "claim.returned": (
        _l("Subsidy claim returned"),
        _l("Claim #%(claim)s was returned for correction: %(reason)s"),
    ),
    "voucher_application.second_review": (
        _l("A voucher application needs a second reviewer"),
        _l(
            "Voucher application #%(application)s for %(amount)s was approved once and needs a second review."
        ),
    ),
    "claim.second_review": (
        _l("A claim needs a second reviewer"),
        _l("Claim #%(claim)s of %(amount)s was approved once and needs a second reviewer."),
    ),
    "claim.payable": (
        _l("Subsidy payable: %(amount)s"),
        _l("The public notice of claim #%(claim)s has ended; %(amount)s will be paid with the next batch."),
    ),
    "claim.paid": (
        _l("Subsidy paid: %(amount)s"),
        _l("Claim #%(claim)s has been paid: %(amount)s (bank reference %(reference)s)."),
    ),
}


class _Defaults(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(kind: str, payload: dict[str, Any]) -> tuple[str, str]:
    """Subject and body for a notification (call inside the recipient's locale)."""
    subject, body = MESSAGES[kind]
    values = _Defaults(payload)
    return str(subject) % values, str(body) % values


def describe(kind: str, payload: dict[str, Any]) -> tuple[str, str]:
    """Like render(), but a kind this version no longer knows is shown by its name, never a crash."""
    try:
        return render(kind, payload)
    except KeyError:
        return kind, ""
