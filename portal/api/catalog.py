"""Catalogue endpoints: instruments (list, detail), categories and institutions. No token needed."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask_login import current_user
from marshmallow import validate

from portal.accounts.models import InstitutionKind
from portal.api.schemas import ApiBlueprint, ErrorSchema, PageArgsSchema, page_of, paginate
from portal.catalog import services
from portal.catalog.models import InstrumentStatus, SharingMode
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


class OpeningHoursSchema(ma.Schema):
    weekday = ma.fields.Integer(required=True, metadata={"description": "0 = Monday"})
    opens_at = ma.fields.String(required=True, metadata={"description": "HH:MM, Asia/Shanghai"})
    closes_at = ma.fields.String(required=True)


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


class InstrumentArgsSchema(PageArgsSchema):
    q = ma.fields.String(load_default="", validate=validate.Length(max=200))
    institution_id = ma.fields.Integer(load_default=None, validate=validate.Range(min=1, max=2**31 - 1))
    category = ma.fields.String(load_default=None, validate=validate.Regexp(r"^\d{2}(\d{2})?$"))
    status = ma.fields.String(load_default=None, validate=validate.OneOf([s.value for s in InstrumentStatus]))
    county = ma.fields.String(load_default=None, validate=validate.Length(max=20))
    fee_min_fen = ma.fields.Integer(load_default=None, validate=validate.Range(min=0, max=10**12))
    fee_max_fen = ma.fields.Integer(load_default=None, validate=validate.Range(min=0, max=10**12))
    sort = ma.fields.String(load_default="relevance", validate=validate.OneOf(list(services.SORTS)))


class CategorySchema(CategoryRefSchema):
    children = ma.fields.List(ma.fields.Nested(CategoryRefSchema), required=True)


class InstitutionSchema(InstitutionRefSchema):
    kind = ma.fields.String(required=True, validate=validate.OneOf([k.value for k in InstitutionKind]))
    county = ma.fields.String(required=True)
    instrument_count = ma.fields.Integer(required=True)


InstrumentPageSchema = page_of(InstrumentSchema, "InstrumentPageSchema")
CategoryPageSchema = page_of(CategorySchema, "CategoryPageSchema")
InstitutionPageSchema = page_of(InstitutionSchema, "InstitutionPageSchema")


@blp.route("/instruments")
@blp.arguments(InstrumentArgsSchema, location="query", as_kwargs=False)
@blp.response(200, InstrumentPageSchema)
def list_instruments(args: dict):
    """Search instruments with the same filters as the catalogue page."""
    result = services.search_instruments(services.InstrumentQuery(**args))
    body = {"items": result.items, "total": result.total, "page": result.page, "per_page": result.per_page}
    return revalidated(current_app.json.response(body))


@blp.route("/instruments/<code>")
@blp.response(200, InstrumentDetailSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No instrument has this code")
def get_instrument(code: str):
    """The full record of one instrument; the operator's phone only with a bearer token."""
    instrument = services.get_instrument(code)
    body = services.detail(instrument, with_contact=current_user.is_authenticated)
    return revalidated(current_app.json.response(body))


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
    """Host institutions with the number of instruments each has networked."""
    return paginate(services.institution_summaries(), args)
