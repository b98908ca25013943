"""JSON API v1 and its OpenAPI document (flask-smorest generates it from the schemas that validate)."""

from __future__ import annotations

from flask import Flask, request
from flask_smorest import Api

from portal.api.bearer import reject_bad_credentials
from portal.api.schemas import ErrorSchema
from portal.extensions import csrf

PREFIX = "/api/v1"


class PortalApi(Api):
    """flask-smorest, minus its app-wide error handler: errors are shaped by portal.core.web."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all `default` answer: each operation lists the statuses it can give (portal.api.document).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        pass


def init_app(app: Flask) -> None:
    """Register every API blueprint under /api/v1, exempt from CSRF (it uses bearer tokens, not cookies)."""
    # Imported here, not at the top: this module runs whenever any API module is imported.
    from portal.api import (
        auth,
        booking,
        catalog,
        document,
        finance,
        imports,
        qualifications,
        usage,
        vouchers,
    )

    api = PortalApi(
        app,
        spec_kwargs={
            "info": {"description": "JSON API of the Liaocheng Instrument & Voucher Portal."},
            "servers": [{"url": "/"}],
        },
    )
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    # Instrument PCs: `Authorization: Device <key>` (portal.usage.devices), only for usage events.
    api.spec.components.security_scheme(
        "deviceKey",
        {"type": "apiKey", "in": "header", "name": "Authorization", "description": "Device <key>"},
    )
    for module in (auth, catalog, qualifications, booking, usage, vouchers, finance, imports):
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix=PREFIX)
    document.complete(api, app)

    @app.before_request
    def _api_credentials() -> None:
        if request.path.startswith(PREFIX + "/"):
            reject_bad_credentials()
