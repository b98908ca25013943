"""What the OpenAPI document says beyond each view's own decorators.

The answers every operation can give (a bearer token that does not work: 401; a database outage:
503 with Retry-After; a body over MAX_CONTENT_LENGTH: 413), enums that are settings (the counties)
and the links between operations (a created booking → its detail and its transitions), which
clients and the stateful fuzz test follow.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api

from portal.api.schemas import CONFIG_ENUM

PREFIX = "/api/v1"
METHODS = ("get", "put", "post", "delete", "patch")
ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": ERROR_REF, **extra}


COMMON_ERRORS: dict[str, dict[str, Any]] = {
    # Any request whose Authorization header does not work, even where no token is needed.
    "401": _error("unauthorized: no bearer token, or one that is invalid or expired"),
    "503": _error(
        "service_unavailable: the database cannot be reached; try again after Retry-After seconds",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    ),
}
BODY_ERRORS = {"413": _error("payload_too_large: the request body is larger than the server takes")}
UNPROCESSABLE = (
    "validation_error: `details.fields` maps each refused field to a message. A body that is not "
    "JSON at all is refused the same way, under `_schema` (never 400)."
)


def _ref(method: str, path: str) -> str:
    """A JSON pointer to an operation of this document (OpenAPI link `operationRef`)."""
    return f"#/paths/{(PREFIX + path).replace('~', '~0').replace('/', '~1')}/{method}"


def _links(*targets: tuple[str, str, str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    return {
        name: {"operationRef": _ref(method, path), "parameters": parameters}
        for name, method, path, parameters in targets
    }


BOOKING_ID = {"id": "$response.body#/id"}
SERIES_ID = {"id": "$response.body#/id"}
APPLICATION_ID = {"id": "$response.body#/id"}
CLAIM_ID = {"id": "$response.body#/id"}
BOOKING_LINKS = _links(
    ("GetBooking", "get", "/bookings/{id}", BOOKING_ID),
    *(
        (f"Booking{action.title().replace('-', '')}", "post", f"/bookings/{{id}}/{action}", BOOKING_ID)
        for action in ("confirm", "reject", "cancel", "no-show", "complete", "rate", "check-in", "check-out")
    ),
)
# (method, path, status) of the answer → links from it.
LINKS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {
    # A new token is used as the bearer token of the next request.
    ("post", "/tokens", "201"): _links(
        ("ListBookings", "get", "/bookings", {"header.Authorization": "Bearer {$response.body#/token}"}),
        ("ListVouchers", "get", "/vouchers", {"header.Authorization": "Bearer {$response.body#/token}"}),
    ),
    ("get", "/instruments", "200"): _links(
        ("GetInstrument", "get", "/instruments/{code}", {"code": "$response.body#/items/0/code"}),
        (
            "GetAvailability",
            "get",
            "/instruments/{code}/availability",
            {"code": "$response.body#/items/0/code"},
        ),
    ),
    ("post", "/bookings", "201"): BOOKING_LINKS,
    ("get", "/bookings/{id}", "200"): {
        **BOOKING_LINKS,
        **_links(
            ("GetServiceRecord", "get", "/service-records/{id}", {"id": "$response.body#/service_record_id"})
        ),
    },
    ("post", "/booking-series", "201"): _links(
        ("GetSeries", "get", "/booking-series/{id}", SERIES_ID),
        ("SeriesCancel", "post", "/booking-series/{id}/cancel", SERIES_ID),
        ("SeriesConfirm", "post", "/booking-series/{id}/confirm", SERIES_ID),
    ),
    ("post", "/bookings/{id}/complete", "200"): _links(
        ("GetServiceRecord", "get", "/service-records/{id}", {"id": "$response.body#/service_record_id"}),
        ("RateService", "post", "/bookings/{id}/rate", {"id": "$response.body#/id"}),
    ),
    ("post", "/service-records/{id}/files", "201"): _links(
        (
            "DownloadFile",
            "get",
            "/service-records/{id}/files/{file_id}",
            {"id": "$request.path.id", "file_id": "$response.body#/id"},
        )
    ),
    ("post", "/voucher-applications", "201"): _links(
        ("GetApplication", "get", "/voucher-applications/{id}", APPLICATION_ID),
        *(
            (f"Application{action.title()}", "post", f"/voucher-applications/{{id}}/{action}", APPLICATION_ID)
            for action in ("approve", "reject", "return")
        ),
    ),
    ("post", "/voucher-applications/{id}/approve", "200"): _links(
        ("GetVoucher", "get", "/vouchers/{id}", {"id": "$response.body#/voucher_id"})
    ),
    ("post", "/claims", "201"): _links(
        ("GetClaim", "get", "/claims/{id}", CLAIM_ID),
        *(
            (f"Claim{action.title()}", "post", f"/claims/{{id}}/{action}", CLAIM_ID)
            for action in ("submit", "approve", "reject", "return")
        ),
    ),
    ("post", "/claims/{id}/submit", "200"): _links(
        *(
            (f"Claim{action.title()}", "post", f"/claims/{{id}}/{action}", CLAIM_ID)
            for action in ("approve", "reject", "return")
        ),
    ),
}


def _fill_config_enums(node: Any, app: Flask) -> None:
    """Every schema marked with CONFIG_ENUM gets the setting's values as its `enum`."""
    if isinstance(node, dict):
        setting = node.pop(CONFIG_ENUM, None)
        if setting:
            node["enum"] = list(app.config[setting])
        for value in node.values():
            _fill_config_enums(value, app)
    elif isinstance(node, list):
        for value in node:
            _fill_config_enums(value, app)


def complete(api: Api, app: Flask) -> None:
    """Add the common answers, the config enums and the links to the generated document."""
    document = api.spec.to_dict()
    _fill_config_enums(document, app)
    for schema in document["components"]["schemas"].values():
        # apispec writes a schema's Meta.description *instead of* additionalProperties; every
        # schema here refuses unknown fields (marshmallow's RAISE), so the document says so.
        if "description" in schema and schema.get("type") == "object":
            schema.setdefault("additionalProperties", False)
    responses = document["components"]["responses"]
    responses["UNPROCESSABLE_ENTITY"]["description"] = UNPROCESSABLE
    for operations in document["paths"].values():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            answers = operation["responses"]
            for status, response in COMMON_ERRORS.items():
                answers.setdefault(status, response)
            if "requestBody" in operation:
                for status, response in BODY_ERRORS.items():
                    answers.setdefault(status, response)
    for (method, path, status), links in LINKS.items():
        answer = document["paths"][PREFIX + path][method]["responses"][status]
        answer.setdefault("links", {}).update(links)
