"""National reports (issue 19): the NRII instrument and service records of a year, and the evaluation.

Items use the national platform's field names exactly (portal.reporting.nrii), plus `institution_id`.
Providers read their own institution's only (another's answers 403); reviewers and administrators
read every institution's, or one's with `institution_id`.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask_login import current_user
from marshmallow import validate

from portal.api.bearer import BEARER, token_required
from portal.api.schemas import ApiBlueprint, PageArgsSchema, page_body, page_of
from portal.core import clock
from portal.reporting import nrii, services

blp = ApiBlueprint(
    "api_reports",
    __name__,
    description="National reports: NRII instrument and service records, and the yearly evaluation.",
    error_descriptions={404: "No such institution"},
)

MAX_INSTITUTION_ID = 2**31 - 1


class ReportArgsSchema(PageArgsSchema):
    year = ma.fields.Integer(
        load_default=None,
        validate=validate.Range(min=2000, max=2099),
        metadata={"description": "The calendar year (Beijing time); this year when left out"},
    )
    institution_id = ma.fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=MAX_INSTITUTION_ID),
        metadata={"description": "One institution; a provider may name only their own"},
    )


def _text(**metadata: Any) -> ma.fields.String:
    return ma.fields.String(required=True, allow_none=True, metadata=metadata)


class NriiInstrumentSchema(ma.Schema):
    innerId = _text(description="Our instrument code")  # the national names, exactly
    cname = _text()
    ename = _text()
    instrCategory = _text(description="6-digit national category code")
    worth = _text(description="Original value in 万元, 2 decimals")
    beginDate = _text(format="date")
    instrVersion = _text(description="Model")
    manufacturer = _text()
    nation = _text(description="Country of origin")
    instrSource = _text(description="购置 / 研制 / 捐赠 / 其他")
    funds = _text(description="Main funding source")
    subject = _text(description="Subject area")
    insideDepart = _text(description="The owning department")
    address = _text()
    technical = _text()
    function = _text()
    serviceContent = _text()
    requirement = _text(description="User requirements (用户须知)")
    fee = _text(description="The fee schedule as text")
    serviceUrl = _text(description="The instrument's page on this portal")
    contacts = _text()
    phone = _text()
    image = _text(description="The main photo's address")
    instrSupervise = ma.fields.Integer(required=True, validate=validate.OneOf([0, 1]))
    declarationNumber = _text()
    importDate = _text(format="date")
    itemNumber = _text()
    runMachine = _text(description="Effective hours of the year, all use, 2 decimals")
    serviceMachine = _text(description="Effective hours serving others, 2 decimals")
    auditStatus = ma.fields.Integer(required=True, metadata={"description": "-1 draft, 0 final"})
    institution_id = ma.fields.Integer(required=True)


class NriiServiceSchema(ma.Schema):
    innerId = _text(description="The instrument's code")
    serviceId = ma.fields.Integer(required=True, metadata={"description": "Our service record id"})
    amount = _text(description="Yuan, 2 decimals")
    startTime = _text(description="YYYY-MM-DD HH, Beijing time")
    endTime = _text(description="YYYY-MM-DD HH, Beijing time")
    serviceWay = ma.fields.String(required=True, validate=validate.OneOf(nrii.SERVICE_WAYS))
    serviceType = ma.fields.String(required=True, validate=validate.OneOf(["120", "130"]))
    serviceDirection = ma.fields.String(
        required=True, validate=validate.OneOf(list(nrii.DIRECTIONS.values()))
    )
    serviceTime = _text(description="Hours, 2 decimals; null for samples without hours")
    sampleNum = ma.fields.Integer(required=True, allow_none=True)
    applicant = _text()
    applicantUnit = _text()
    rating = ma.fields.Integer(required=True, allow_none=True, validate=validate.Range(min=1, max=5))
    auditStatus = ma.fields.Integer(required=True)
    institution_id = ma.fields.Integer(required=True)


class EvaluationSchema(ma.Schema):
    instrument_code = ma.fields.String(required=True)
    institution_id = ma.fields.Integer(required=True)
    effective_hours = ma.fields.Float(required=True, metadata={"description": "service + internal use"})
    run_hours = ma.fields.Float(
        required=True, metadata={"description": "effective + unbooked use an instrument PC reported"}
    )
    service_hours = ma.fields.Float(required=True)
    external_service_hours = ma.fields.Float(required=True)
    sme_service_hours = ma.fields.Float(required=True)
    income_fen = ma.fields.Integer(required=True)
    users_served = ma.fields.Integer(required=True)
    rating_avg = ma.fields.Float(required=True, allow_none=True)
    norm_hours = ma.fields.Integer(required=True)
    below_norm = ma.fields.Boolean(required=True)
    measured_by = ma.fields.Dict(
        keys=ma.fields.String(validate=validate.OneOf(["metered", "service_records", "internal_use"])),
        values=ma.fields.Float(),
        required=True,
        metadata={"description": "Effective hours by how they were measured"},
    )


def _scope_and_year(args: dict) -> tuple[services.Scope, int]:
    return services.report_scope(current_user, args["institution_id"]), args[
        "year"
    ] or clock.local_today().year


@blp.route("/reports/nrii/instruments")
@blp.arguments(ReportArgsSchema, location="query", as_kwargs=False)
@blp.response(200, page_of(NriiInstrumentSchema, "NriiInstrumentPageSchema"))
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(*services.READERS)
def nrii_instruments(args: dict):
    """The instruments worth 500,000 yuan or more, as national records with the year's hours."""
    scope, year = _scope_and_year(args)
    return page_body(services.instrument_page(scope, year, args["page"], args["per_page"]))


@blp.route("/reports/nrii/service-records")
@blp.arguments(ReportArgsSchema, location="query", as_kwargs=False)
@blp.response(200, page_of(NriiServiceSchema, "NriiServicePageSchema"))
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(*services.READERS)
def nrii_service_records(args: dict):
    """The year's completed services of those instruments, as national service records."""
    scope, year = _scope_and_year(args)
    return page_body(services.service_page(scope, year, args["page"], args["per_page"]))


@blp.route("/reports/evaluation")
@blp.arguments(ReportArgsSchema, location="query", as_kwargs=False)
@blp.response(200, page_of(EvaluationSchema, "EvaluationPageSchema"))
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(*services.READERS)
def evaluation(args: dict):
    """Each instrument's effective hours of the year against its norm, with how they were measured."""
    scope, year = _scope_and_year(args)
    body = page_body(services.evaluation_page(scope, year, args["page"], args["per_page"]))
    return {**body, "items": [services.evaluation_item(s) for s in body["items"]]}
