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
    "booking.no_show": (
        _l("Recorded as a no-show: %(instrument)s"),
        _l(
            "Nobody checked in to your booking of %(instrument)s (%(when)s) within %(grace)s minutes of "
            "its start, so it was recorded as a no-show and the time was given back. No-shows count "
            "against your enterprise's booking credit. If this is wrong, call the operator: %(operator)s."
        ),
    ),
    "booking.no_show_provider": (
        _l("No-show: %(enterprise)s, %(instrument)s"),
        _l(
            "Nobody of %(enterprise)s checked in to the booking of %(instrument)s (%(when)s) within "
            "%(grace)s minutes of its start. It was recorded as a no-show and the rest of the time is "
            "free again. Contact: %(requester)s."
        ),
    ),
    # A recurring booking (issue 18): one message for the whole series, not one per occurrence.
    "series.requested": (
        _l("New recurring booking request: %(instrument)s"),
        _l(
            "%(enterprise)s asks for %(instrument)s %(count)s times, from %(first)s to %(last)s. Please "
            "confirm or decline the requests on the series' page (all at once, or each on its own). "
            "Contact: %(requester)s."
        ),
    ),
    "series.confirmed": (
        _l("Recurring booking confirmed: %(instrument)s"),
        _l(
            "%(institution)s confirmed %(count)s bookings of your recurring booking of %(instrument)s, "
            "from %(first)s to %(last)s."
        ),
    ),
    "series.cancelled": (
        _l("Recurring booking cancelled: %(instrument)s"),
        _l(
            "%(count)s bookings of the recurring booking of %(instrument)s by %(enterprise)s, from "
            "%(first)s to %(last)s, were cancelled. %(reason)s"
        ),
    ),
    "series.expired": (
        _l("Recurring booking requests expired: %(instrument)s"),
        _l(
            "%(count)s requests of your recurring booking of %(instrument)s, from %(first)s to %(last)s, "
            "expired without an answer. Please book other times."
        ),
    ),
    "waitlist.offered": (
        _l("Time offered from the waitlist: %(instrument)s"),
        _l(
            "%(instrument)s is free for you %(when)s. It is held for you until %(until)s: accept it to "
            "book it, or decline it so that the next in line can have it."
        ),
    ),
    "credit.suspended": (
        _l("Online booking suspended until %(until)s"),
        _l(
            "Because of repeated no-shows or late cancellations, your enterprise may not book "
            "instruments online until %(until)s. Your booking credit record shows each violation; "
            "if one is wrong, ask the instrument's provider or the bureau to waive it."
        ),
    ),
    "credit.waived": (
        _l("A booking violation was waived"),
        _l("The violation recorded for booking %(booking)s no longer counts against your credit: %(reason)s"),
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
    # A provider institution's account: it is paid the subsidised part of services redeemed at payment.
    "provider_account.submitted": (
        _l("Bank account entered: account ending %(last_digits)s"),
        _l(
            "%(by)s entered a bank account for your institution's voucher redemptions: %(account_name)s, "
            "%(bank_name)s, account ending %(last_digits)s. It takes effect once the bureau verifies it; "
            "until then payments go to the account in effect. If nobody at your institution made this "
            "change, tell the bureau at once."
        ),
    ),
    "provider_account.verified": (
        _l("Bank account verified: account ending %(last_digits)s"),
        _l(
            "The bureau verified the bank account %(account_name)s, %(bank_name)s, account ending "
            "%(last_digits)s. Your institution's voucher redemptions are paid into it from now on."
        ),
    ),
    "provider_account.rejected": (
        _l("Bank account not verified: account ending %(last_digits)s"),
        _l(
            "The bureau did not verify the bank account ending %(last_digits)s (%(bank_name)s): "
            "%(reason)s. Payments still go to the account in effect, if there is one."
        ),
    ),
    "provider_account.missing": (
        _l("A voucher redemption waits for your bank account"),
        _l(
            "%(amount)s of voucher redemptions is payable to %(institution)s, but the bureau cannot pay "
            "it without a verified bank account. Any provider user of your institution enters it: the "
            "menu under your name, Bank account."
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
    "claim.reserved": (
        _l("Voucher applied at payment: %(amount)s reserved"),
        _l(
            "For the service fee of %(fee)s, %(amount)s is reserved on the voucher (redemption #%(claim)s); "
            "the enterprise pays %(share)s. The provider submits the redemption with the evidence."
        ),
    ),
    "claim.released": (
        _l("Voucher reservation released: %(amount)s"),
        _l(
            "The %(amount)s reserved for redemption #%(claim)s is released (%(reason)s): the voucher is not "
            "applied, and the enterprise owes the provider the whole fee of %(fee)s, not only its share of "
            "%(share)s."
        ),
    ),
    "claim.paid": (
        _l("Subsidy paid: %(amount)s"),
        _l("Claim #%(claim)s has been paid: %(amount)s (bank reference %(reference)s)."),
    ),
    # Accounts (portal.accounts): links that work once are added to the mail when it is sent.
    "account.password_reset": (
        _l("Choose a new password"),
        _l(
            "Someone (we hope you) asked to reset the password of the account %(username)s. Open the link "
            "below within %(minutes)s minutes to choose a new one; it works once. If it was not you, ignore "
            "this mail: your password stays as it is."
        ),
    ),
    "account.welcome": (
        _l("Your account at the portal"),
        _l(
            "The bureau made the account %(username)s (%(role)s) for you. Open the link below within "
            "%(days)s days to choose your password; it works once."
        ),
    ),
    # Registration: the form answers the same for everyone; the mail says what happened.
    "account.registration_confirm": (
        _l("Confirm your registration"),
        _l(
            "Thank you for registering %(enterprise)s at the Liaocheng Instrument & Voucher Portal. Open the "
            "link below within %(days)s days to confirm this address and activate the account %(username)s; "
            "until then nobody can sign in with it. If you did not register, ignore this mail."
        ),
    ),
    "account.registration_existing": (
        _l("You already have an account at the portal"),
        _l(
            "Someone (we hope you) tried to register at the portal with this address, which already belongs "
            "to the account %(username)s. No new account was made. Sign in with it at the link below; if you "
            "have forgotten the password, choose “Forgotten password” on that page. If it was not you, "
            "ignore this mail."
        ),
    ),
    "account.registration_enterprise_exists": (
        _l("This enterprise is already registered at the portal"),
        _l(
            "Someone (we hope you) tried to register the enterprise with the credit code %(uscc)s, which "
            "already has an account at the portal. No new account was made. Its account holder "
            "(%(holder)s) can invite you: after signing in they choose “Colleagues” on their account page "
            "and send an invitation to this address; the invitation's link lets you create your own "
            "account of the enterprise."
        ),
    ),
    "account.registration_username_taken": (
        _l("Choose another username"),
        _l(
            "Someone (we hope you) tried to register at the portal with this address and the username "
            "%(username)s, which is taken. No account was made: register again with another username at "
            "the link below."
        ),
    ),
    "account.password_changed": (
        _l("Your password was changed"),
        _l(
            "The password of %(username)s was changed on %(when)s; every other session was signed out and "
            "the API tokens stopped working. If it was not you, ask for a password link at once and tell "
            "the bureau."
        ),
    ),
    "account.email_confirm": (
        _l("Confirm your new e-mail address"),
        _l(
            "Open the link below within %(hours)s hours, signed in as %(username)s, to receive the "
            "account's mail at %(email)s. Until then it goes to the old address."
        ),
    ),
    "account.email_change_requested": (
        _l("A new e-mail address was requested for your account"),
        _l(
            "Someone signed in as %(username)s asked to use %(new_email)s instead of this address. It takes "
            "effect only when the link sent there is opened. If it was not you, change your password now."
        ),
    ),
    "account.email_changed": (
        _l("Your e-mail address was changed"),
        _l("The account %(username)s now uses %(new_email)s; its mail no longer comes to this address."),
    ),
    "account.deactivated": (
        _l("Your account was deactivated"),
        _l("The account %(username)s was deactivated by %(by)s; it can no longer sign in."),
    ),
    "account.reactivated": (
        _l("Your account is active again"),
        _l("%(by)s reactivated your account; you can sign in again."),
    ),
    "enterprise.invitation": (
        _l("%(enterprise)s invites you to the instrument and voucher portal"),
        _l(
            "%(inviter)s invites you to join %(enterprise)s at the Liaocheng Instrument & Voucher Portal, "
            "to book instruments and follow vouchers and claims. Open the link below before %(expires)s to "
            "create your account; it works once."
        ),
    ),
    "enterprise.invitation_accepted": (
        _l("%(name)s joined %(enterprise)s"),
        _l("%(name)s (%(username)s) accepted your invitation and has an account of %(enterprise)s now."),
    ),
    "enterprise.holder_changed": (
        _l("New account holder of %(enterprise)s"),
        _l(
            "%(new_holder)s is now the account holder of %(enterprise)s (before: %(old_holder)s): only the "
            "holder applies for vouchers, submits claims and changes the bank account."
        ),
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
