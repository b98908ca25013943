"""Marshmallow schemas shared by the API's areas: errors, pagination."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

import marshmallow as ma
from flask_smorest import Blueprint
from marshmallow import validate
from webargs.flaskparser import FlaskParser, abort
from werkzeug.datastructures import CombinedMultiDict

from portal.api.bearer import BEARER, token_required
from portal.core.inputs import clean_json

MAX_PER_PAGE = 100
# Text the services take as given: at least one character that is neither a space nor a control
# character (they strip both before they check that a reason or comment is there).
NOT_BLANK = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
# Field metadata: the field's `enum` is this app setting (a list), filled in when the document is built.
CONFIG_ENUM = "x-config-enum"
# A time the calendars can hold (see portal.core.clock: years 2000 to 2099), as the document says it.
YEAR_2000_TO_2099 = r"^20[0-9]{2}-"
# The `details.fields` key of a body that is not JSON at all (marshmallow's key for the whole body).
MALFORMED_JSON_FIELD = "_schema"


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


def page_body(page: Any) -> dict[str, Any]:
    """A list answer from one page of a longer list (portal.core.paging.Page)."""
    return {"items": page.items, "total": page.total, "page": page.page, "per_page": page.per_page}


def paginate(items: list, args: dict) -> dict[str, Any]:
    """One page of a list that is small enough to hold whole (categories, institutions, vouchers)."""
    start = (args["page"] - 1) * args["per_page"]
    return {
        "items": items[start : start + args["per_page"]],
        "total": len(items),
        "page": args["page"],
        "per_page": args["per_page"],
    }


class PortalParser(FlaskParser):
    """webargs' Flask parser plus a `multipart` location: form fields and files of one request."""

    # webargs declares it an instance variable (not a ClassVar), so it is declared the same way here.
    __location_map__: dict[str, str | Callable] = dict(  # noqa: RUF012
        multipart="load_multipart", **FlaskParser.__location_map__
    )

    def load_multipart(self, req, schema: ma.Schema):
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)

    def _raw_load_json(self, req):
        # Like form fields and query parameters (portal.core.inputs): no control characters.
        return clean_json(super()._raw_load_json(req))

    def _handle_invalid_json_error(self, error: Exception, req, *args: Any, **kwargs: Any) -> NoReturn:
        # A body that is not JSON is invalid input like any other: 422 validation_error (webargs
        # answers 400), so clients handle one code and the document declares one answer.
        abort(422, exc=error, messages={"json": {MALFORMED_JSON_FIELD: ["Invalid JSON body."]}})


ERROR_DESCRIPTIONS = {
    401: "No or an invalid bearer token",
    403: "Your role or organisation may not do this",
    404: "No such object, or not one you may see",
    409: "The object's state or a limit does not allow this",
}


class ApiBlueprint(Blueprint):
    """The blueprint every API area uses (multipart bodies documented as one request body)."""

    def __init__(self, *args: Any, error_descriptions: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.error_descriptions = {**ERROR_DESCRIPTIONS, **(error_descriptions or {})}

    def errors(self, *codes: int) -> Callable:
        """Document these error answers (all in the one error shape)."""

        def decorator(view: Callable) -> Callable:
            for code in codes:
                view = self.alt_response(code, schema=ErrorSchema, description=self.error_descriptions[code])(
                    view
                )
            return view

        return decorator

    def action(
        self,
        rule: str,
        name: str,
        summary: str,
        *,
        guard: Callable[[int], Any],
        act: Callable[[int, dict], Any],
        respond: Callable[[int], Any],
        response_schema: type[ma.Schema],
        body: type[ma.Schema] | None = None,
        body_required: bool | None = None,
    ) -> None:
        """A POST endpoint for one state transition of the object {id}.

        `guard` loads the object as the caller may see it (someone else's is simply not found),
        `act` performs the transition with the request body, `respond` renders the object after it.
        The body is required if `body_required` says so, else if any of its fields is.
        """

        def view(*args: Any, id: int) -> Any:  # the path parameter is {id}, as API.md names it
            guard(id)
            act(id, args[0] if args else {})
            return respond(id)

        view.__name__, view.__doc__ = name, summary
        decorated = token_required()(view)
        decorated = self.errors(401, 403, 404, 409)(decorated)
        decorated = self.doc(security=BEARER)(decorated)
        decorated = self.response(200, response_schema)(decorated)
        if body is not None:
            if body_required is None:
                body_required = any(field.required for field in body().fields.values())
            decorated = self.arguments(body, required=body_required)(decorated)
        self.route(rule, methods=["POST"])(decorated)

    ARGUMENTS_PARSER = PortalParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }
