"""JSON API v1 and its OpenAPI document (flask-smorest generates it from the schemas that validate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from flask_smorest import Api

from portal.api.bearer import reject_bad_credentials
from portal.api.schemas import ErrorSchema
from portal.catalog import fastpath
from portal.extensions import csrf

PREFIX = "/api/v1"


class PortalApi(Api):
    """flask-smorest, minus its app-wide error handler (errors are shaped by portal.core.web), with its
    OpenAPI document written when first asked for (the openapi.json route, `flask openapi`) instead of
    when the app is made: documenting the views is half the cost of `create_app`, which every request
    of a server pays once but every test pays again."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all `default` answer: each operation lists the statuses it can give (portal.api.document).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def __init__(self, app: Flask, **kwargs: Any) -> None:
        self._undocumented: list[tuple[Any, str, Any]] = []
        self._finish: Callable[[], None] | None = None
        super().__init__(app, **kwargs)

    @property
    def spec(self) -> Any:
        """The document, with the blueprints registered so far in it (and finished, once asked for)."""
        if self._undocumented or self._finish:
            pending, self._undocumented = self._undocumented, []
            finish, self._finish = self._finish, None
            for blp, name, parameters in pending:
                blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                self._spec.tag({"name": name, "description": blp.description})
            if finish:
                finish()
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        """Flask-smorest's registration, with the documentation of the views left for later."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))

    def finish_document(self, finish: Callable[[], None]) -> None:
        """Run `finish` on the document once it is written (after every blueprint is in it)."""
        self._finish = finish

    def _register_error_handlers(self) -> None:
        pass


def init_app(app: Flask) -> None:
    """Register every API blueprint under /api/v1, exempt from CSRF (it uses bearer tokens, not cookies)."""
    # Imported here, not at the top: this module runs whenever any API module is imported.
    from portal.api import (
        auth,
        booking,
        catalog,
        credit,
        document,
        finance,
        imports,
        qualifications,
        redemptions,
        reports,
        series,
        usage,
        vouchers,
        waitlist,
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
    for module in (
        auth,
        catalog,
        qualifications,
        booking,
        usage,
        vouchers,
        redemptions,
        finance,
        imports,
        credit,
        waitlist,
        series,
        reports,
    ):
        csrf.exempt(module.blp)
        api.register_blueprint(module.blp, url_prefix=PREFIX)
    api.finish_document(lambda: document.complete(api, app))
    # Visitors' searches of the instrument list answered before the per-request work (as the page's).
    fastpath.serve(app, f"{PREFIX}/instruments", catalog.list_arguments)

    @app.before_request
    def _api_credentials() -> None:
        if request.path.startswith(PREFIX + "/"):
            reject_bad_credentials()
