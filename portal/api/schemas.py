"""Marshmallow schemas shared by the API's areas: errors, pagination."""

from __future__ import annotations

from typing import ClassVar

import marshmallow as ma
from flask_smorest import Blueprint
from marshmallow import validate
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import CombinedMultiDict

MAX_PER_PAGE = 100


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"description": "Stable machine-readable code"})
    message = ma.fields.String(required=True)
    details = ma.fields.Dict(required=True)


class ErrorSchema(ma.Schema):
    """Every non-2xx answer: {"error": {"code", "message", "details"}}."""

    error = ma.fields.Nested(ErrorBodySchema, required=True)


class PageArgsSchema(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


class PageSchema(ma.Schema):
    total = ma.fields.Integer(required=True)
    page = ma.fields.Integer(required=True)
    per_page = ma.fields.Integer(required=True)


def page_of(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A list answer: {"items": [...], "total", "page", "per_page"}."""
    return type(name, (PageSchema,), {"items": ma.fields.List(ma.fields.Nested(item_schema), required=True)})


class PortalParser(FlaskParser):
    """webargs' Flask parser plus a `multipart` location: form fields and files of one request."""

    __location_map__: ClassVar[dict] = dict(multipart="load_multipart", **FlaskParser.__location_map__)

    def load_multipart(self, req, schema: ma.Schema):
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class ApiBlueprint(Blueprint):
    """The blueprint every API area uses (multipart bodies documented as one request body)."""

    ARGUMENTS_PARSER = PortalParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }
