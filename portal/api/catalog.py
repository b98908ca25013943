"""Catalogue endpoints: instruments (list, detail, upkeep), categories and institutions.

Reading needs no token; changing an instrument needs one of its own institution's providers or an
administrator.
"""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask_login import current_user
from marshmallow import validate
from werkzeug.datastructures import MultiDict

from portal.accounts.models import InstitutionKind
from portal.admission import services as admission
from portal.admission.models import NO_ADMISSION, AdmissionState
from portal.api.bearer import BEARER, token_required
from portal.api.qualifications import PriceSchema, use_fields
from portal.api.schemas import (
    CONFIG_ENUM,
    ApiBlueprint,
    ErrorSchema,
    PageArgsSchema,
    page_body,
    page_of,
    paginate,
)
from portal.booking import upkeep
from portal.catalog import fastpath, prices, services
from portal.catalog.importer import COLUMN_OF, PHONE_PATTERN
from portal.catalog.models import ACQUISITIONS, STATUS_FILE_NAMES, InstrumentStatus, SharingMode
from portal.core.money import FEN_PER_WAN, FEN_PER_YUAN, MAX_AMOUNT
from portal.core.permissions import Role
from portal.core.web import revalidated

blp = ApiBlueprint("api_catalog", __name__, description="The instrument catalogue (public).")


class CategoryRefSchema(ma.Schema):
    code = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    name_en = ma.fields.String(required=True)
    parent_code = ma.fields.String(required=True, allow_none=True)


class InstitutionRefSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)


class InstrumentSchema(ma.Schema):
    code = ma.fields.String(required=True)
    name = ma.fields.String(required=True)
    name_en = ma.fields.String(required=True, allow_none=True)
    category = ma.fields.Nested(CategoryRefSchema, required=True)
    model = ma.fields.String(required=True, allow_none=True)
    manufacturer = ma.fields.String(required=True, allow_none=True)
    institution = ma.fields.Nested(InstitutionRefSchema, required=True)
    county = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in InstrumentStatus]))
    fee_per_hour_fen = ma.fields.Integer(required=True, allow_none=True)
    fee_per_sample_fen = ma.fields.Integer(required=True, allow_none=True)
    original_value_fen = ma.fields.Integer(required=True)
    operator_name = ma.fields.String(required=True, allow_none=True)
    thumbnail_url = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "The main photo's thumbnail (a path)"}
    )


class OpeningHoursSchema(ma.Schema):
    weekday = ma.fields.Integer(required=True, metadata={"description": "0 = Monday"})
    opens_at = ma.fields.String(required=True, metadata={"description": "HH:MM, Asia/Shanghai"})
    closes_at = ma.fields.String(required=True)


class PhotoSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    url = ma.fields.String(required=True, metadata={"description": "The photo (a path; at most 1600 px)"})
    thumbnail_url = ma.fields.String(required=True, metadata={"description": "320 × 240 px"})
    width = ma.fields.Integer(required=True)
    height = ma.fields.Integer(required=True)
    caption = ma.fields.String(required=True, allow_none=True)
    is_main = ma.fields.Boolean(required=True)


class InstrumentDetailSchema(InstrumentSchema):
    country_of_origin = ma.fields.String(required=True, allow_none=True)
    in_service_on = ma.fields.String(required=True, allow_none=True, metadata={"format": "date"})
    specs = ma.fields.String(required=True, allow_none=True)
    functions = ma.fields.String(required=True, allow_none=True)
    service_content = ma.fields.String(required=True, allow_none=True)
    sharing_mode = ma.fields.String(required=True, validate=validate.OneOf([s.value for s in SharingMode]))
    address = ma.fields.String(required=True, allow_none=True)
    operator_phone = ma.fields.String(
        required=True, allow_none=True, metadata={"description": "Only for authenticated callers"}
    )
    opening_hours = ma.fields.List(ma.fields.Nested(OpeningHoursSchema), required=True)
    photos = ma.fields.List(
        ma.fields.Nested(PhotoSchema), required=True, metadata={"description": "Main first"}
    )
    requires_qualification = ma.fields.Boolean(
        required=True, metadata={"description": "Self-operated time needs a qualification"}
    )
    prices = ma.fields.List(
        ma.fields.Nested(PriceSchema),
        required=True,
        metadata={"description": "The price table; without one, the two fees as the enterprise price"},
    )
    acquisition = ma.fields.String(
        required=True,
        allow_none=True,
        validate=validate.OneOf(ACQUISITIONS),
        metadata={"description": "instrSource"},
    )
    funding_source = ma.fields.String(required=True, allow_none=True)
    subject_area = ma.fields.String(required=True, allow_none=True)
    department = ma.fields.String(required=True, allow_none=True, metadata={"description": "insideDepart"})
    user_requirements = ma.fields.String(required=True, allow_none=True)
    specialised = ma.fields.Boolean(required=True, metadata={"description": "Held to the lower yearly norm"})
    customs_supervised = ma.fields.Boolean(required=True)
    customs_declaration_number = ma.fields.String(required=True, allow_none=True)
    customs_import_date = ma.fields.String(required=True, allow_none=True, metadata={"format": "date"})
    customs_item_number = ma.fields.String(required=True, allow_none=True)


# The rules are the catalogue import's (portal.catalog.importer) and are checked there, once: these
# fields only take the JSON types, and the document states the rules (lengths, formats, ranges).
def _text(attr: str, *, nullable: bool = True, **metadata) -> ma.fields.String:
    length = COLUMN_OF[attr].max_length
    return ma.fields.String(
        allow_none=nullable, metadata={**({"maxLength": length} if length else {}), **metadata}
    )


def _amount(*, per: int, nullable: bool = True, description: str) -> ma.fields.Integer:
    return ma.fields.Integer(
        strict=True,
        allow_none=nullable,
        metadata={
            "minimum": 0,
            "maximum": int(MAX_AMOUNT) * per - per // 100,
            "multipleOf": per // 100,
            "description": description,
        },
    )


class InstrumentPatchSchema(ma.Schema):
    """Any of these fields; the others stay as they are. Unknown fields are refused."""

    name = _text("name", nullable=False, minLength=1)
    name_en = _text("name_en")
    category = ma.fields.String(metadata={"pattern": r"^\d{2}(\d{2})?$", "description": "A category code"})
    model = _text("model")
    manufacturer = _text("manufacturer")
    country_of_origin = _text("country_of_origin")
    original_value_fen = _amount(
        per=FEN_PER_WAN, nullable=False, description="In fen; the catalogue keeps 万元 with two decimals"
    )
    in_service_on = ma.fields.String(
        allow_none=True, metadata={"format": "date", "description": "YYYY-MM-DD"}
    )
    county = ma.fields.String(
        metadata={"description": "One of the network's counties", CONFIG_ENUM: "COUNTIES"}
    )
    address = _text("address")
    status = ma.fields.String(
        metadata={
            "enum": [s.value for s in InstrumentStatus] + list(STATUS_FILE_NAMES.values()),
            "description": "As the record says it, or in the catalogue file's words (待修 …)",
        }
    )
    sharing_mode = ma.fields.String(metadata={"enum": [m.value for m in SharingMode]})
    fee_per_hour_fen = _amount(per=FEN_PER_YUAN, description="null: on request")
    fee_per_sample_fen = _amount(per=FEN_PER_YUAN, description="null: on request")
    specs = _text("specs")
    functions = _text("functions")
    service_content = _text("service_content")
    operator_name = _text("operator_name")
    operator_phone = ma.fields.String(allow_none=True, metadata={"pattern": PHONE_PATTERN.pattern})
    prices = ma.fields.List(
        ma.fields.Nested(PriceSchema), metadata={"description": "Replaces the whole price table"}
    )
    acquisition = ma.fields.String(allow_none=True, metadata={"enum": [*ACQUISITIONS, None]})
    funding_source = _text("funding_source")
    subject_area = _text("subject_area")
    department = _text("department")
    user_requirements = _text("user_requirements")
    specialised = ma.fields.Boolean()
    customs_supervised = ma.fields.Boolean()
    customs_declaration_number = _text("customs_declaration_number")
    customs_import_date = ma.fields.String(
        allow_none=True, metadata={"format": "date", "description": "YYYY-MM-DD"}
    )
    customs_item_number = _text("customs_item_number")


class InstrumentArgsSchema(PageArgsSchema):
    q = ma.fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata={
            "description": "Keywords, all of which must match: in the code, name, English name, model, "
            "manufacturer or host institution's name, in the pinyin or initials of the name or the host's "
            "name (zhipu, zp), or through the synonym table (扫描电镜, XRD). See docs/search.md."
        },
    )
    institution_id = ma.fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))
    category = ma.fields.String(
        load_default=None,
        validate=validate.Regexp(r"^\d{2}(\d{2})?$"),
        metadata={"description": "A first- or second-level code the catalogue has (422 otherwise)"},
    )
    status = ma.fields.String(load_default=None, validate=validate.OneOf([s.value for s in InstrumentStatus]))
    county = ma.fields.String(
        load_default=None,
        validate=validate.Length(max=20),
        metadata={"description": "One of the network's counties", CONFIG_ENUM: "COUNTIES"},
    )
    fee_min_fen = ma.fields.Integer(load_default=None, validate=validate.Range(min=0, max=10**12))
    fee_max_fen = ma.fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=10**12),
        metadata={"description": "Not below fee_min_fen when both are given (else 422 on this field)"},
    )
    fee_unit = ma.fields.String(
        load_default="hour",
        validate=validate.OneOf(list(services.FEE_UNITS)),
        metadata={
            "description": "The enterprise price fee_min_fen, fee_max_fen and the fee sorts use: "
            "fee_per_hour_fen or fee_per_sample_fen (instruments without it: filtered out, sorted last)"
        },
    )
    sort = ma.fields.String(load_default="relevance", validate=validate.OneOf(list(services.SORTS)))


class CategorySchema(CategoryRefSchema):
    children = ma.fields.List(ma.fields.Nested(CategoryRefSchema), required=True)


class InstitutionSchema(InstitutionRefSchema):
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in InstitutionKind]))
    county = ma.fields.String(required=True)
    instrument_count = ma.fields.Integer(required=True)
    in_province = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "In Shandong. false: a provider outside the province, whose services a voucher "
            "subsidises only on a reimbursement claim with the enterprise's written justification, at the "
            "scheme's out_of_province_rate and never with the city's fund"
        },
    )
    admission = ma.fields.String(
        required=True,
        validate=validate.OneOf([NO_ADMISSION, *(s.value for s in AdmissionState)]),
        metadata={
            "description": "Its admission to the voucher scheme as a service provider: none (never "
            "applied), submitted, returned, in_notice (approved, in public notice), admitted, suspended "
            "or rejected. Only admitted providers' services are eligible for vouchers."
        },
    )
    admission_notice_ends_on = ma.fields.Date(
        required=True,
        allow_none=True,
        metadata={
            "description": "The last day of the public notice of its current admission (in_notice, "
            "admitted or suspended after a notice); null otherwise"
        },
    )


InstrumentPageSchema = page_of(InstrumentSchema, "InstrumentPageSchema")
CategoryPageSchema = page_of(CategorySchema, "CategoryPageSchema")
InstitutionPageSchema = page_of(InstitutionSchema, "InstitutionPageSchema")


@blp.route("/instruments")
@blp.arguments(InstrumentArgsSchema, location="query", as_kwargs=False)
@blp.response(200, InstrumentPageSchema)
def list_instruments(args: dict):
    """Search instruments with the same filters as the catalogue page."""
    result = services.search_instruments(services.InstrumentQuery(**args))
    if not current_user.is_authenticated:
        fastpath.offer()  # the answer depends on the search only: the next visitor may get it as it is
    return revalidated(current_app.json.response(page_body(result)))


LIST_ARGUMENTS = frozenset(InstrumentArgsSchema().fields)


def list_arguments(args: MultiDict) -> dict[str, str] | None:
    """The instrument list's parameters for the fast path's key (portal.catalog.fastpath): each known
    one once, in one order; None for anything else (the full path answers, a 422 or an answer not kept)."""
    if any(name not in LIST_ARGUMENTS for name in args) or any(len(v) > 1 for v in args.listvalues()):
        return None
    return dict(sorted(args.items()))


@blp.route("/instruments/<code>")
@blp.response(200, InstrumentDetailSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No instrument has this code")
def get_instrument(code: str):
    """The full record of one instrument; the operator's phone only with a bearer token."""
    instrument = services.get_instrument(code)
    body = services.detail(instrument, with_contact=current_user.is_authenticated)
    body.update(use_fields(instrument))
    return revalidated(current_app.json.response(body))


@blp.route("/instruments/<code>", methods=["PATCH"])
@blp.arguments(InstrumentPatchSchema, required=False)  # no body, or {}: nothing changes
@blp.response(200, InstrumentDetailSchema)
@blp.doc(security=BEARER)
@blp.errors(401, 403, 404)
@token_required(Role.PROVIDER, Role.ADMIN)
def update_instrument(args: dict, code: str):
    """Change fields of an instrument (its institution's providers, administrators), by the import's rules.

    A status in which it cannot be booked tells the enterprises of its confirmed bookings still to
    come; the bookings stay confirmed. Answers the full record.
    """
    table = args.pop("prices", None)
    if table is not None:
        prices.check_rows(table)  # refused before anything is written
    upkeep.update_instrument(current_user, code, args, typed=True)
    if table is not None:
        prices.set_price_table(current_user, code, table)
    instrument = services.get_instrument(code)
    return {**services.detail(instrument, with_contact=True), **use_fields(instrument)}


@blp.route("/categories")
@blp.arguments(PageArgsSchema, location="query", as_kwargs=False)
@blp.response(200, CategoryPageSchema)
def list_categories(args: dict):
    """The two-level classification: first-level categories, each with its children."""
    return paginate(services.category_tree(), args)


@blp.route("/institutions")
@blp.arguments(PageArgsSchema, location="query", as_kwargs=False)
@blp.response(200, InstitutionPageSchema)
def list_institutions(args: dict):
    """Host institutions with the number of instruments each has networked and their admission to the
    voucher scheme as service providers."""
    page = paginate(services.institution_summaries(), args)
    states = admission.admission_states([item["id"] for item in page["items"]])
    page["items"] = [_with_admission(item, states) for item in page["items"]]
    return page


def _with_admission(item: dict, states: dict) -> dict:
    state, notice_ends_on = states.get(item["id"], (NO_ADMISSION, None))
    return {**item, "admission": state, "admission_notice_ends_on": notice_ends_on}
