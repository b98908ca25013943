"""Voucher pages: the enterprise's vouchers, verification, applications, claims; the review desk."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts.models import (
    BANK_ACCOUNT_STATE_LABELS,
    ENTERPRISE_KIND_LABELS,
    Enterprise,
    EnterpriseKind,
    Institution,
)
from portal.booking.models import FILE_KIND_LABELS, FileKind
from portal.core import clock, held_uploads, uploads
from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.core.errors import ServiceError, ValidationFailed
from portal.core.forms import options, show_service_errors
from portal.core.inputs import page_number
from portal.core.money import fen_to_yuan, yuan_to_fen
from portal.core.permissions import BUREAU_ROLES, Role, role_required
from portal.extensions import db
from portal.vouchers import audit_log as audit_log_search
from portal.vouchers import review as desk
from portal.vouchers import services
from portal.vouchers.forms import (
    ApplicationForm,
    AuditSearchForm,
    BankAccountDecisionForm,
    BankAccountForm,
    ClaimForm,
    ClaimRevisionForm,
    DecisionForm,
    RelationForm,
    SchemeForm,
    VerificationDecisionForm,
    VerificationForm,
)
from portal.vouchers.models import (
    APPLICATION_STATE_LABELS,
    CLAIM_STATE_LABELS,
    DEFAULT_RANKING_WEIGHTS,
    FUND_LABELS,
    LEDGER_LABELS,
    LIMIT_LABELS,
    RELATION_LABELS,
    REQUEST_STATE_LABELS,
    RelationKind,
    Scheme,
    VerificationRequest,
    VoucherApplication,
)

bp = Blueprint("vouchers", __name__, url_prefix="/vouchers")
review = Blueprint("review", __name__, url_prefix="/review")

LABELS = {
    "claim_states": CLAIM_STATE_LABELS,
    "application_states": APPLICATION_STATE_LABELS,
    "request_states": REQUEST_STATE_LABELS,
    "ledger_labels": LEDGER_LABELS,
    "fund_labels": FUND_LABELS,
    "file_labels": FILE_KIND_LABELS,
    "relation_labels": RELATION_LABELS,
    "kind_labels": ENTERPRISE_KIND_LABELS,
    "limit_labels": LIMIT_LABELS,
    "bank_account_states": BANK_ACCOUNT_STATE_LABELS,
}
# What a page may offer its user: templates ask these (the services' rules) rather than re-derive them.
PERMISSIONS = {
    "can_submit_claim": services.can_submit_claim,
    "can_revise_claim": services.can_revise_claim,
    "can_delete_claim": services.can_delete_claim,
    "can_decide_claim": services.can_decide_claim,
    "can_approve_claim": services.can_approve_claim,
    "can_decide_application": services.can_decide_application,
    "can_approve_application": services.can_approve_application,
    "can_decide_verification": services.can_decide_verification,
    "can_decide_bank_account": banking.can_decide_bank_account,
}


@bp.context_processor
@review.context_processor
def _permissions() -> dict:
    return PERMISSIONS | {"check_message": services.check_message}


def _institution_choices(blank: bool = True) -> list:
    rows = db.session.execute(select(Institution.id, Institution.name).order_by(Institution.name)).all()
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
    enterprise = db.session.get(Enterprise, current_user.enterprise_id)
    scheme = services.current_scheme()
    verification = db.session.scalar(
        select(VerificationRequest)
        .where(VerificationRequest.enterprise_id == enterprise.id)
        .order_by(VerificationRequest.id.desc())
    )
    application = None
    if scheme:
        application = db.session.scalar(
            select(VoucherApplication)
            .where(
                VoucherApplication.enterprise_id == enterprise.id, VoucherApplication.scheme_id == scheme.id
            )
            .order_by(VoucherApplication.id.desc())
        )
    return render_template(
        "vouchers/index.html",
        enterprise=enterprise,
        scheme=scheme,
        verification=verification,
        application=application,
        vouchers=services.vouchers_for(current_user),
        claims=services.claims_for(current_user),
        bank=banking.overview(current_user),
        **LABELS,
    )


@bp.route("/verification", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def verification() -> ResponseReturnValue:
    """Ask the bureau to verify the enterprise: type, evidence and actual controller."""
    form = VerificationForm()
    form.related_institution.choices = _institution_choices()
    valid = form.validate_on_submit()
    held = held_uploads.receive_form(form, ("certificate",), "verification") if form.is_submitted() else None
    if valid and not held.errors:
        try:
            services.submit_verification(
                current_user,
                services.VerificationData(
                    kind=EnterpriseKind(form.kind.data),
                    actual_controller=form.actual_controller.data,
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
    form = BankAccountForm()
    if form.validate_on_submit():
        try:
            banking.record_bank_account(
                current_user,
                banking.BankAccountData(
                    form.account_name.data, form.bank_name.data, form.account_number.data
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
                ),
                "success",
            )
            return redirect(url_for("vouchers.bank_account"))
    overview = banking.overview(current_user)
    if not form.is_submitted() and overview.current is None and overview.pending is None:
        form.account_name.data = overview.enterprise.name
    return render_template("vouchers/bank_account.html", form=form, overview=overview, **LABELS)


@bp.route("/apply", methods=["GET", "POST"])
@bp.route("/applications/<int:application_id>/resubmit", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def apply(application_id: int | None = None) -> ResponseReturnValue:
    """Apply for this year's voucher, or correct a returned application."""
    scheme = services.current_scheme()
    application = services.get_application(current_user, application_id) if application_id else None
    form = ApplicationForm()
    if application and not form.is_submitted():
        form.amount.data, form.plan.data = fen_to_yuan(application.amount_fen), application.plan
    if form.validate_on_submit():
        try:
            amount = yuan_to_fen(form.amount.data)
            if application:
                services.resubmit_application(current_user, application.id, amount, form.plan.data)
            else:
                services.apply_for_voucher(current_user, amount, form.plan.data)
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
        "vouchers/voucher.html", voucher=services.get_voucher(current_user, voucher_id), **LABELS
    )


@bp.route("/claims/new", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def new_claim() -> ResponseReturnValue:
    """Pick completed services, see the subsidy per fund and every limit, then save a draft."""
    vouchers = [v for v in services.vouchers_for(current_user) if v.state.value == "active"]
    candidates = services.claimable_services(current_user, vouchers[0] if vouchers else None)
    form = ClaimForm()
    form.records.choices = options((c.record.id, c.record.id) for c in candidates)
    preview = None
    if vouchers and not form.is_submitted():
        form.voucher_id.data = vouchers[0].id
    if form.validate_on_submit():
        try:
            if form.create.data:
                claim = services.create_claim(current_user, form.voucher_id.data, form.records.data)
                flash(_("Draft saved. Check it, then submit it to the bureau."), "success")
                return redirect(url_for("vouchers.claim", claim_id=claim.id))
            preview = services.preview_claim(current_user, form.voucher_id.data, form.records.data)
        except ServiceError as error:
            form.form_errors.append(error.message)
    return render_template(
        "vouchers/new_claim.html",
        form=form,
        candidates=candidates,
        vouchers=vouchers,
        preview=preview,
        **LABELS,
    )


@bp.route("/claims/<int:claim_id>", methods=["GET", "POST"])
@login_required
def claim(claim_id: int) -> ResponseReturnValue:
    """A claim: services, amounts per fund, checks, history; the enterprise submits, the bureau decides."""
    claim = services.get_claim(current_user, claim_id)
    form = DecisionForm()
    if form.validate_on_submit():
        action = request.form.get("claim_action") or form.action()
        try:
            if action == "submit":
                services.submit_claim(current_user, claim_id)
                flash(_("Claim submitted to the bureau."), "success")
            elif action == "delete":
                services.delete_draft(current_user, claim_id)
                flash(_("Draft deleted."), "success")
                return redirect(url_for("vouchers.index"))
            elif action in ("approve", "reject", "return"):
                services.decide_claim(current_user, claim_id, action, form.comment.data)
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
        reviewer=current_user.role in services.REVIEW_ROLES,
        owner=current_user.role is Role.ENTERPRISE and current_user.enterprise_id == claim.enterprise_id,
        # Before it is submitted, the checks as submitting would run them now; afterwards, as stored.
        checks=services.current_checks(claim)
        if (claim.state, "submit") in services.CLAIM_TRANSITIONS
        else claim.checks,
        four_eyes=claim.total_fen > claim.voucher.scheme.four_eyes_threshold_fen,
        enterprise_history=services.enterprise_history(claim.enterprise_id)
        if current_user.role in BUREAU_ROLES
        else None,
        **LABELS,
    )


@bp.route("/claims/<int:claim_id>/revise", methods=["GET", "POST"])
@role_required(Role.ENTERPRISE)
def revise_claim(claim_id: int) -> ResponseReturnValue:
    """Correct a returned claim: reply to the reviewer, replace an evidence file, submit it again."""
    claim = services.get_claim(current_user, claim_id)
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
            services.revise_claim(
                current_user,
                claim_id,
                form.reply.data,
                services.Replacement(
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
        checks=services.current_checks(claim),
        **LABELS,
    )


@bp.route("/notices")
def notices() -> ResponseReturnValue:
    """The public notice board (公示): approved subsidies during their notice period."""
    return render_template("vouchers/notices.html", claims=services.claims_in_notice())


# --- the bureau's review desk --------------------------------------------------------------------


@review.route("/")
@role_required(Role.REVIEWER, Role.FINANCE, Role.ADMIN)
def queue() -> ResponseReturnValue:
    """Everything waiting for a decision, filtered by kind, county, amount and age, with counts."""
    filters = desk.QueueFilters.from_args(request.args)
    return render_template(
        "vouchers/review_queue.html",
        result=desk.queue(filters),
        filters=filters,
        scheme=services.current_scheme(),
        counties=current_app.config["COUNTIES"],
        **LABELS,
    )


@review.route("/verifications/<int:request_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.ADMIN)
def verification_detail(request_id: int) -> ResponseReturnValue:
    """A verification request with the evidence; verify or reject (legacy codes need an override)."""
    item = db.session.get(VerificationRequest, request_id)
    if item is None:
        abort(404)
    form = VerificationDecisionForm()
    relation_form = RelationForm(prefix="relation")
    relation_form.institution.choices = _institution_choices(blank=False)
    if relation_form.submit.data and relation_form.validate_on_submit():
        services.add_relation(
            current_user,
            item.enterprise_id,
            int(relation_form.institution.data),
            RelationKind(relation_form.kind.data),
        )
        flash(_("Relation recorded."), "success")
        return redirect(url_for("review.verification_detail", request_id=request_id))
    if (form.verify.data or form.reject.data) and form.validate_on_submit():
        try:
            services.decide_verification(
                current_user,
                request_id,
                verify=bool(form.verify.data),
                reason=form.reason.data,
                uscc_override=form.uscc_override.data,
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Decision recorded."), "success")
            return redirect(url_for("review.queue", kind="verification"))
    return render_template(
        "vouchers/review_verification.html",
        item=item,
        form=form,
        relation_form=relation_form,
        history=services.enterprise_history(item.enterprise_id),
        events=desk.history("enterprise", item.enterprise_id),
        **LABELS,
    )


@review.route("/verifications/<int:request_id>/certificate")
@role_required(Role.REVIEWER, Role.ADMIN)
def certificate(request_id: int) -> ResponseReturnValue:
    """The uploaded certificate, for reviewers only."""
    item = db.session.get(VerificationRequest, request_id)
    if item is None or not item.certificate_stored:
        abort(404)
    return uploads.send_stored(item.certificate_stored, item.certificate_type, item.certificate_name)


@review.route("/bank-accounts/<int:account_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.ADMIN)
def bank_account_detail(account_id: int) -> ResponseReturnValue:
    """A bank account entered by an enterprise, beside the one in effect: verify it or reject it."""
    account = banking.get_for_review(current_user, account_id)
    form = BankAccountDecisionForm()
    if (form.verify.data or form.reject.data) and form.validate_on_submit():
        try:
            banking.decide_bank_account(
                current_user, account_id, "verify" if form.verify.data else "reject", form.reason.data
            )
        except ValidationFailed as error:
            show_service_errors(form, error)
        except ServiceError as error:
            form.form_errors.append(error.message)
        else:
            flash(_("Decision recorded."), "success")
            return redirect(url_for("review.queue", kind="bank_account"))
    versions = banking.versions(account.enterprise_id)
    return render_template(
        "vouchers/review_bank_account.html",
        account=account,
        form=form,
        versions=versions,
        current=next((v for v in versions if v.state.value == "verified"), None),
        name_matches=banking.name_matches(account, account.enterprise),
        **LABELS,
    )


@review.route("/applications/<int:application_id>", methods=["GET", "POST"])
@role_required(Role.REVIEWER, Role.FINANCE, Role.ADMIN)
def application_detail(application_id: int) -> ResponseReturnValue:
    """A voucher application: approve an amount within caps and free budget, reject or return it."""
    application = services.get_application(current_user, application_id)
    form = DecisionForm()
    if not form.is_submitted():
        form.amount.data = fen_to_yuan(application.first_amount_fen or application.amount_fen)
    if form.validate_on_submit() and form.action():
        try:
            services.decide_application(
                current_user,
                application_id,
                form.action(),
                amount_fen=yuan_to_fen(form.amount.data) if form.amount.data is not None else None,
                comment=form.comment.data,
            )
        except ServiceError as error:
            flash(error.message, "danger")
        else:
            flash(_("Decision recorded."), "success")
        return redirect(url_for("review.application_detail", application_id=application_id))
    return render_template(
        "vouchers/review_application.html",
        application=application,
        form=form,
        scheme=application.scheme,
        history=services.enterprise_history(application.enterprise_id),
        events=desk.history("voucher_application", application.id),
        **LABELS,
    )


@review.route("/audit")
@role_required(Role.REVIEWER, Role.ADMIN)
def audit_log() -> ResponseReturnValue:
    """Search the audit log: who did what to which object, when, by people's and objects' names."""
    form = AuditSearchForm(request.args)
    form.choose_from(ACTION_LABELS, OBJECT_LABELS)
    form.validate()
    valid = {
        name: field.data if field.data and not field.errors else None for name, field in form._fields.items()
    }
    result = audit_log_search.search(
        audit_log_search.AuditQuery(
            action=valid["action"],
            object_type=valid["kind"],
            who=valid["who"],
            what=valid["object"],
            since=clock.local_datetime_to_utc(valid["since"], time.min) if valid["since"] else None,
            until=clock.local_datetime_to_utc(valid["until"] + timedelta(days=1), time.min)
            if valid["until"]
            else None,
            page=page_number(),
        )
    )
    return render_template(
        "vouchers/audit.html", form=form, result=result, changes=audit_log_search.readable_changes
    )


@review.route("/scheme", methods=["GET", "POST"])
@role_required(Role.ADMIN)
def scheme() -> ResponseReturnValue:
    """Set up or change a year's scheme: funds, rates, budgets, caps, validity, window, notice."""
    year = request.args.get("year", type=int)
    if year is None or not 2000 <= year <= 2100:  # a huge number would overflow the query
        year = clock.local_today().year
    current = db.session.scalar(select(Scheme).where(Scheme.year == year))
    form = SchemeForm()
    if current and not form.is_submitted():
        _fill_scheme_form(form, current)
    elif not form.is_submitted():
        form.year.data = year
        _fill_ranking_weights(form, dict(DEFAULT_RANKING_WEIGHTS))
    if form.validate_on_submit():
        try:
            services.save_scheme(current_user, *_scheme_values(form))
        except ValidationFailed as error:
            show_service_errors(form, _fund_errors_in_place(form, error))
        else:
            flash(_("Scheme saved."), "success")
            return redirect(url_for("review.scheme", year=form.year.data))
    return render_template("vouchers/scheme.html", form=form, scheme=current, **LABELS)


def _fund_errors_in_place(form: SchemeForm, error: ValidationFailed) -> ValidationFailed:
    """The service names a fund's field "<code>_rate" or "<code>_budget": shown at that fund's row."""
    rows = {(row.form.name.data or "").strip(): row.form for row in form.funds}
    rest = {}
    for key, message in error.fields.items():
        code, _sep, field = key.rpartition("_")
        if code in rows and field in ("rate", "budget"):
            target = getattr(rows[code], field)
            target.errors = [*target.errors, message]
        else:
            rest[key] = message
    return ValidationFailed(error.message, rest)


def _fill_scheme_form(form: SchemeForm, scheme: Scheme) -> None:
    form.year.data, form.name.data = scheme.year, scheme.name
    while len(form.funds):
        form.funds.pop_entry()
    for fund in scheme.funds:
        form.funds.append_entry(
            {
                "name": fund.name,
                "label": fund.label,
                "rate": fund.rate,
                "budget": fen_to_yuan(fund.budget_fen),
                "condition": fund.condition.value,
                "enterprise_capped": fund.enterprise_capped,
            }
        )
    form.funds.append_entry()  # a blank row to add a fund
    form.enterprise_cap.data = fen_to_yuan(scheme.enterprise_cap_fen)
    form.group_cap.data = fen_to_yuan(scheme.group_cap_fen)
    form.four_eyes_threshold.data = fen_to_yuan(scheme.four_eyes_threshold_fen)
    form.voucher_validity_days.data = scheme.voucher_validity_days
    form.service_window_start.data, form.service_window_end.data = (
        scheme.service_window_start,
        scheme.service_window_end,
    )
    form.public_notice_days.data = scheme.public_notice_days
    form.excluded_service_types.data = list(scheme.excluded_service_types or [])
    _fill_ranking_weights(form, scheme.ranking_weight_values)


def _fill_ranking_weights(form: SchemeForm, weights: dict[str, Decimal]) -> None:
    for key, name in form.WEIGHT_FIELDS.items():
        getattr(form, name).data = weights[key]


def _ranking_weights(form: SchemeForm) -> dict[str, str] | None:
    """The weights typed in, as decimal strings; a blank field is 0.

    None (keep what the scheme has) when all five are blank, as from a client that predates them.
    """
    typed = {key: getattr(form, name).data for key, name in form.WEIGHT_FIELDS.items()}
    if all(value is None for value in typed.values()):
        return None
    return {key: format(value if value is not None else 0, "f") for key, value in typed.items()}


def _scheme_values(form: SchemeForm) -> tuple[dict, list[services.FundSettings]]:
    values = {
        "year": form.year.data,
        "name": form.name.data,
        "enterprise_cap_fen": yuan_to_fen(form.enterprise_cap.data),
        "group_cap_fen": yuan_to_fen(form.group_cap.data),
        "four_eyes_threshold_fen": yuan_to_fen(form.four_eyes_threshold.data),
        "voucher_validity_days": form.voucher_validity_days.data,
        "service_window_start": form.service_window_start.data,
        "service_window_end": form.service_window_end.data,
        "public_notice_days": form.public_notice_days.data,
        "excluded_service_types": list(form.excluded_service_types.data or []),
    }
    weights = _ranking_weights(form)
    if weights is not None:
        values["ranking_weights"] = weights
    funds = [
        services.FundSettings(
            row.form.name.data.strip(),
            row.form.rate.data,
            row.form.condition.data,
            yuan_to_fen(row.form.budget.data),
            row.form.enterprise_capped.data,
            (row.form.label.data or "").strip(),
        )
        for row in form.funds
        if not row.form.is_blank()
    ]
    return values, funds
