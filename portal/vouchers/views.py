"""Voucher pages: the enterprise's vouchers, verification, applications, claims; the public notice.

The bureau's review desk is in `review_views`."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

from portal.accounts import banking
from portal.accounts import services as account_services
from portal.accounts.models import (
    BANK_ACCOUNT_STATE_LABELS,
    ENTERPRISE_KIND_LABELS,
    PAYEE_KIND_LABELS,
    EnterpriseKind,
)
from portal.booking.models import FILE_KIND_LABELS, FileKind
from portal.core import held_uploads
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import entered, filled, options, show_service_errors
from portal.core.money import fen_to_yuan, yuan_to_fen
from portal.core.permissions import BUREAU_ROLES, Role, role_required
from portal.vouchers import applications as application_services
from portal.vouchers import checks as claim_checks
from portal.vouchers import claims as claim_services
from portal.vouchers import notice as public_notice
from portal.vouchers import province, redemptions, schemes, wallet
from portal.vouchers import review as desk
from portal.vouchers import services as voucher_services
from portal.vouchers import verification as verification_services
from portal.vouchers.forms import (
    ApplicationForm,
    BankAccountForm,
    ClaimForm,
    ClaimRevisionForm,
    DecisionForm,
    VerificationForm,
    WithdrawForm,
)
from portal.vouchers.labels import (
    APPLICATION_STATE_LABELS,
    CLAIM_STATE_LABELS,
    LEDGER_LABELS,
    LIMIT_LABELS,
    REDEMPTION_MODE_LABELS,
    RELATION_LABELS,
    REQUEST_STATE_LABELS,
)
from portal.vouchers.models import RelationKind

bp = Blueprint("vouchers", __name__, url_prefix="/vouchers")

LABELS = {
    "claim_states": CLAIM_STATE_LABELS,
    "application_states": APPLICATION_STATE_LABELS,
    "request_states": REQUEST_STATE_LABELS,
    "ledger_labels": LEDGER_LABELS,
    "mode_labels": REDEMPTION_MODE_LABELS,
    "file_labels": FILE_KIND_LABELS,
    "relation_labels": RELATION_LABELS,
    "kind_labels": ENTERPRISE_KIND_LABELS,
    "limit_labels": LIMIT_LABELS,
    "bank_account_states": BANK_ACCOUNT_STATE_LABELS,
    "payee_kinds": PAYEE_KIND_LABELS,
}
# What a page may offer its user: templates ask these (the services' rules) rather than re-derive them.
PERMISSIONS = {
    "can_submit_claim": claim_services.can_submit_claim,
    "can_revise_claim": claim_services.can_revise_claim,
    "can_delete_claim": claim_services.can_delete_claim,
    "can_decide_claim": desk.can_decide_claim,
    "can_approve_claim": desk.can_approve_claim,
    "can_decide_application": application_services.can_decide_application,
    "can_approve_application": application_services.can_approve_application,
    "can_decide_verification": verification_services.can_decide_verification,
    "can_resubmit_application": application_services.can_resubmit_application,
    "can_claim_from": wallet.can_claim_from,
    "waits_for_submission": claim_services.waits_for_submission,
    "can_decide_bank_account": banking.can_decide_bank_account,
    "can_submit_redemption": redemptions.can_submit_redemption,
    "can_withdraw_redemption": redemptions.can_withdraw_redemption,
}

# A decision form's button -> the transition it asks for.
CLAIM_DECISIONS = {"approve": desk.approve_claim, "reject": desk.reject_claim, "return": desk.return_claim}


@bp.context_processor
def page_permissions() -> dict:
    return PERMISSIONS | {"check_message": claim_checks.check_message}


def institution_choices(blank: bool = True) -> list:
    rows = account_services.institutions()
    return options(([("", _("None"))] if blank else []) + [(i, name) for i, name in rows])


# --- the enterprise's side ----------------------------------------------------------------------


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    """The enterprise's voucher desk: verification, application, voucher and ledger, claims."""
    if current_user.role in BUREAU_ROLES:
        return redirect(url_for("review.queue"))
    if current_user.role is not Role.ENTERPRISE:
        abort(403)
    enterprise = account_services.enterprise_of(current_user)
    scheme = schemes.current_scheme()
    verification = verification_services.latest_request(current_user)
    application = application_services.latest_application(current_user, scheme) if scheme else None
    return render_template(
        "vouchers/index.html",
        enterprise=enterprise,
        scheme=scheme,
        verification=verification,
        application=application,
        vouchers=wallet.vouchers_for(current_user),
        claims=claim_services.claims_for(current_user),
        bank=banking.overview(current_user),
        **LABELS,
    )


@bp.route("/verification", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def verification() -> ResponseReturnValue:
    """Ask the bureau to verify the enterprise: type, evidence and actual controller."""
    form = VerificationForm()
    form.related_institution.choices = institution_choices()
    valid = form.validate_on_submit()
    held = held_uploads.receive_form(form, ("certificate",), "verification") if form.is_submitted() else None
    if valid and held is not None and not held.errors:  # (a valid form was submitted: held is set)
        try:
            verification_services.submit_verification(
                current_user,
                verification_services.VerificationData(
                    kind=EnterpriseKind(form.kind.data),
                    actual_controller=filled(form.actual_controller),
                    tech_sme_number=form.tech_sme_number.data,
                    related_institution_id=int(form.related_institution.data)
                    if form.related_institution.data
                    else None,
                    relation_kind=RelationKind(form.relation_kind.data)
                    if form.related_institution.data
                    else None,
                ),
                stored=held.files.get("certificate"),
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Submitted. The bureau will verify your enterprise."), "success")
            return redirect(url_for("vouchers.index"))
    return render_template("vouchers/verification.html", form=form, held=held)


@bp.route("/bank-account", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def bank_account() -> ResponseReturnValue:
    """The account subsidies are paid into: the one in effect, a change waiting for the bureau, every
    version; the account holder enters a new one."""
    return _bank_account_page("vouchers.bank_account")


@bp.route("/provider/bank-account", methods=["GET", "POST"])
@role_required(Role.PROVIDER)
def provider_bank_account() -> ResponseReturnValue:
    """The provider institution's own account, into which its redemptions at payment are paid: the
    same page as the enterprise's, for the user's institution only."""
    return _bank_account_page("vouchers.provider_bank_account")


def _bank_account_page(endpoint: str) -> ResponseReturnValue:
    form = BankAccountForm()
    if current_user.role is Role.PROVIDER:
        form.account_name.description = _("Exactly as the bank holds it: normally your institution's name.")
    if form.validate_on_submit():
        try:
            banking.record_bank_account(
                current_user,
                banking.BankAccountData(
                    filled(form.account_name), filled(form.bank_name), filled(form.account_number)
                ),
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(
                _(
                    "Sent to the bureau: the account takes effect once a reviewer verifies it. Every user "
                    "of your enterprise has been told by mail."
                )
                if current_user.role is Role.ENTERPRISE
                else _(
                    "Sent to the bureau: the account takes effect once a reviewer verifies it. Every "
                    "provider user of your institution has been told by mail."
                ),
                "success",
            )
            return redirect(url_for(endpoint))
    overview = banking.overview(current_user)
    if not form.is_submitted() and overview.current is None and overview.pending is None:
        form.account_name.data = overview.payee.name
    return render_template("vouchers/bank_account.html", form=form, overview=overview, **LABELS)


@bp.route("/apply", methods=["GET", "POST"])
@bp.route("/applications/<int:application_id>/resubmit", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def apply(application_id: int | None = None) -> ResponseReturnValue:
    """Apply for this year's voucher, or correct a returned application."""
    scheme = schemes.current_scheme()
    application = (
        application_services.get_application(current_user, application_id) if application_id else None
    )
    form = ApplicationForm()
    if application and not form.is_submitted():
        form.amount.data, form.plan.data = fen_to_yuan(application.amount_fen), application.plan
    if form.validate_on_submit():
        try:
            amount = yuan_to_fen(entered(form.amount))
            if application:
                application_services.resubmit_application(
                    current_user, application.id, amount, filled(form.plan)
                )
            else:
                application_services.apply_for_voucher(current_user, amount, filled(form.plan))
        except ValidationFailed as error:
            show_service_errors(form, error)
            if "amount_fen" in error.fields:
                form.amount.errors = [*form.amount.errors, error.fields["amount_fen"]]
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Your application has been sent to the bureau."), "success")
            return redirect(url_for("vouchers.index"))
    return render_template("vouchers/apply.html", form=form, scheme=scheme, application=application)


@bp.route("/voucher/<int:voucher_id>")
@login_required
def voucher(voucher_id: int) -> ResponseReturnValue:
    """A voucher with its ledger: every commitment, release and payment."""
    return render_template(
        "vouchers/voucher.html", voucher=wallet.get_voucher(current_user, voucher_id), **LABELS
    )


@bp.route("/claims/new", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def new_claim() -> ResponseReturnValue:
    """Pick completed services, see the subsidy per fund and every limit, then save a draft."""
    vouchers = [v for v in wallet.vouchers_for(current_user) if wallet.can_claim_from(v)]
    candidates = claim_checks.claimable_services(current_user, vouchers[0] if vouchers else None)
    form = ClaimForm()
    form.records.choices = options((c.record.id, c.record.id) for c in candidates)
    preview = None
    if vouchers and not form.is_submitted():
        form.voucher_id.data = vouchers[0].id
    if form.validate_on_submit():
        try:
            preview = _claim_draft(form)
        except ServiceError as error:
            form.form_errors.append(error.message)
            if isinstance(error, ValidationFailed) and "justification" in error.fields:
                form.justification.errors = [*form.justification.errors, error.fields["justification"]]
        if isinstance(preview, int):
            flash(_("Draft saved. Check it, then submit it to the bureau."), "success")
            return redirect(url_for("vouchers.claim", claim_id=preview))
    return render_template(
        "vouchers/new_claim.html",
        form=form,
        candidates=candidates,
        vouchers=vouchers,
        preview=preview,
        alternatives=province.alternatives_for(preview.records)
        if isinstance(preview, claim_services.Preview)
        else None,
        out_of_province_offered=any(
            not c.record.booking.instrument.institution.in_province for c in candidates
        ),
        **LABELS,
    )


def _claim_draft(form: ClaimForm) -> claim_services.Preview | int:
    """The chosen services' preview or, when asked to save them, the new draft's id. Services of a
    provider outside Shandong are saved only with the enterprise's written justification."""
    chosen = (current_user, entered(form.voucher_id), entered(form.records))
    preview = claim_services.preview_claim(*chosen, form.justification.data)
    if not form.create.data:
        return preview
    if preview.out_of_province and len(preview.justification or "") < claim_checks.MIN_JUSTIFICATION:
        message = _(
            "Required for a provider outside Shandong: at least %(count)d characters.",
            count=claim_checks.MIN_JUSTIFICATION,
        )
        form.justification.errors = [*form.justification.errors, message]
        return preview
    return claim_services.create_claim(*chosen, form.justification.data).id


@bp.route("/claims/<int:claim_id>", methods=["GET", "POST"])
@login_required
def claim(claim_id: int) -> ResponseReturnValue:
    """A claim: services, amounts per fund, checks, history; the enterprise submits, the bureau decides."""
    claim = claim_services.get_claim(current_user, claim_id)
    form = DecisionForm()
    if form.validate_on_submit():
        action = request.form.get("claim_action") or form.action()
        try:
            if action == "submit":
                claim_services.submit_claim(current_user, claim_id)
                flash(_("Claim submitted to the bureau."), "success")
            elif action == "delete":
                claim_services.delete_draft(current_user, claim_id)
                flash(_("Draft deleted."), "success")
                return redirect(url_for("vouchers.index"))
            elif action in CLAIM_DECISIONS:
                CLAIM_DECISIONS[action](current_user, claim_id, form.comment.data)
                flash(_("Decision recorded."), "success")
            else:
                abort(400)
        except ServiceError as error:
            flash(error.message, "danger")
        return redirect(url_for("vouchers.claim", claim_id=claim_id))
    return render_template(
        "vouchers/claim.html",
        claim=claim,
        form=form,
        history=desk.history("claim", claim.id),
        withdraw_form=WithdrawForm(formdata=None),
        reviewer=voucher_services.is_reviewer(current_user),
        owner=current_user.role is Role.ENTERPRISE and current_user.enterprise_id == claim.enterprise_id,
        # Before it is submitted, the checks as submitting would run them now; afterwards, as stored.
        checks=claim_checks.current_checks(claim)
        if claim_services.waits_for_submission(claim)
        else claim.checks,
        four_eyes=voucher_services.four_eyes(claim.voucher.scheme.four_eyes_threshold_fen, claim.total_fen),
        enterprise_history=desk.enterprise_history(claim.enterprise_id)
        if current_user.role in BUREAU_ROLES
        else None,
        alternatives=province.alternatives_for(item.service_record for item in claim.items)
        if claim.out_of_province
        else None,
        **LABELS,
    )


@bp.route("/claims/<int:claim_id>/revise", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def revise_claim(claim_id: int) -> ResponseReturnValue:
    """Correct a returned claim: reply to the reviewer, replace an evidence file, submit it again."""
    claim = claim_services.get_claim(current_user, claim_id)
    form = ClaimRevisionForm()
    form.record.choices = options(
        (item.service_record_id, f"#{item.service_record_id} {item.service_record.booking.instrument.name}")
        for item in claim.items
    )
    if not form.is_submitted():
        form.reply.data = claim.reply
    if form.validate_on_submit():
        upload = form.file.data if form.file.data and form.file.data.filename else None
        try:
            claim_services.revise_claim(
                current_user,
                claim_id,
                form.reply.data,
                claim_services.Replacement(
                    int(form.record.data), FileKind(form.kind.data), upload.stream, upload.filename
                )
                if upload
                else None,
                resubmit=bool(form.resubmit.data),
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Claim submitted to the bureau.") if form.resubmit.data else _("Saved."), "success")
            return redirect(url_for("vouchers.claim", claim_id=claim_id))
        if upload:
            # A browser never re-sends a file: say so rather than let it look kept.
            form.file.errors = [*form.file.errors, _("The file was not saved: choose it again.")]
    return render_template(
        "vouchers/revise_claim.html",
        claim=claim,
        form=form,
        checks=claim_checks.current_checks(claim),
        **LABELS,
    )


@bp.route("/notices")
def notices() -> ResponseReturnValue:
    """The public notice board (公示): approved subsidies during their notice period."""
    return render_template("vouchers/notices.html", claims=public_notice.claims_in_notice())
