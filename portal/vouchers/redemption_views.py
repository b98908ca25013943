"""The provider's pages of vouchers at payment: the redemption panel of a booking's page, reserving,
submitting and withdrawing (the rules are in portal.vouchers.redemptions)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user

from portal.booking.models import Booking, ServiceRecord
from portal.catalog.ownership import owns
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import show_service_errors
from portal.core.money import fen_to_yuan, format_yuan, yuan_to_fen
from portal.core.permissions import Role, role_required
from portal.vouchers import claims as claim_services
from portal.vouchers import redemptions
from portal.vouchers.checks import check_message, current_checks
from portal.vouchers.forms import RedemptionForm, RedemptionSubmitForm, WithdrawForm
from portal.vouchers.labels import CLAIM_STATE_LABELS, LIMIT_LABELS
from portal.vouchers.models import RedemptionMode
from portal.vouchers.schemes import current_scheme

bp = Blueprint("redemptions", __name__, url_prefix="/vouchers/redemptions")


@bp.route("/")
@role_required(Role.PROVIDER)
def index() -> ResponseReturnValue:
    """The provider's redemptions at payment, newest first: what each holds, the enterprise's share,
    and what waits for the provider (submission before the reservation lapses)."""
    return render_template(
        "vouchers/redemptions.html",
        claims=claim_services.claims_for(current_user),
        claim_states=CLAIM_STATE_LABELS,
        can_submit_redemption=redemptions.can_submit_redemption,
    )


@bp.route("/records/<int:record_id>", methods=["GET", "POST"])
@role_required(Role.PROVIDER)
def reserve(record_id: int) -> ResponseReturnValue:
    """The provider applies the enterprise's voucher to a recorded service: a preview, then the
    subsidy reserved at once."""
    record = redemptions.owned_record(current_user, record_id)
    form = RedemptionForm()
    if not form.is_submitted() and record.booking.voucher_mode == RedemptionMode.AT_PAYMENT.value:
        # The enterprise chose to pay this booking at payment: its voucher is the one to apply.
        voucher = redemptions.voucher_of(record.booking.enterprise_id, current_scheme())
        form.voucher_code.data = voucher.code if voucher else None
    preview = None
    # A post is checked (an empty code is said so); a first visit previews the chosen voucher, if any.
    ready = form.validate_on_submit() if form.is_submitted() else bool(form.voucher_code.data)
    if ready:
        try:
            if form.reserve.data:
                claim = redemptions.create_redemption(current_user, record.id, form.voucher_code.data)
                flash(
                    _("%(amount)s reserved on the voucher.", amount=format_yuan(claim.total_fen)), "success"
                )
                return redirect(url_for("vouchers.claim", claim_id=claim.id))
            preview = redemptions.preview_redemption(current_user, record.id, form.voucher_code.data)
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
    return render_template(
        "vouchers/redemption.html",
        record=record,
        form=form,
        preview=preview,
        check_message=check_message,
        limit_labels=LIMIT_LABELS,
    )


@bp.route("/<int:claim_id>/submit", methods=["GET", "POST"])
@role_required(Role.PROVIDER)
def submit(claim_id: int) -> ResponseReturnValue:
    """The provider submits its redemption with what the enterprise paid of its share."""
    claim = claim_services.get_claim(current_user, claim_id)
    form = RedemptionSubmitForm()
    if not form.is_submitted():
        form.enterprise_paid.data = fen_to_yuan(claim.enterprise_share_fen)
    if form.validate_on_submit():
        try:
            paid = form.enterprise_paid.data  # required by the form: a Decimal here
            redemptions.submit_redemption(
                current_user, claim.id, yuan_to_fen(paid) if paid is not None else None
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Redemption submitted to the bureau."), "success")
            return redirect(url_for("vouchers.claim", claim_id=claim.id))
    return render_template(
        "vouchers/redemption_submit.html",
        claim=claim,
        form=form,
        # What submitting will check, but the payment it asks for here.
        checks=[c for c in current_checks(claim) if c.code != "share_paid"],
        check_message=check_message,
        claim_states=CLAIM_STATE_LABELS,
    )


@bp.route("/<int:claim_id>/withdraw", methods=["POST"])
@role_required(Role.PROVIDER)
def withdraw(claim_id: int) -> ResponseReturnValue:
    """The provider withdraws a reservation it has not submitted: what it held is released."""
    claim_services.get_claim(current_user, claim_id)  # another's claim is not found
    form = WithdrawForm()
    if form.validate_on_submit():
        try:
            redemptions.withdraw_redemption(current_user, claim_id, form.reason.data)
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(_("Reservation withdrawn; the voucher's balance is restored."), "success")
    return redirect(url_for("vouchers.claim", claim_id=claim_id))


# --- what other pages show --------------------------------------------------------------------------


def booking_panel(booking: Booking) -> dict[str, Any]:
    """The booking page's voucher-at-payment panel (connected to booking.signals.booking_shown): the
    redemption of its service, with the enterprise's share, to the provider and the enterprise; to
    the provider, a way to apply the voucher when none is reserved."""
    record: ServiceRecord | None = booking.service_record
    if record is None or not current_user.is_authenticated:
        return {}
    claim = redemptions.claim_of(record)
    if claim is not None and claim.at_payment and claim_services.can_view_claim(current_user, claim):
        return {
            "booking_panels": ["vouchers/_redemption_panel.html"],
            "redemption": claim,
            "redemption_states": CLAIM_STATE_LABELS,
        }
    scheme = current_scheme()
    offered = (
        claim is None
        and scheme is not None
        and scheme.offers(RedemptionMode.AT_PAYMENT)
        and booking.voucher_mode != RedemptionMode.REIMBURSEMENT.value
    )
    if offered and owns(current_user, booking.instrument):
        return {"booking_panels": ["vouchers/_redemption_panel.html"], "redemption": None}
    return {}
