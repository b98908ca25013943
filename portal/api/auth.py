"""The token endpoints: exchange a password for a bearer token, revoke it (checks: portal.api.bearer)."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app, request
from flask_babel import gettext as _

from portal.accounts import services, throttle
from portal.api.bearer import BEARER, bearer_token, token_required
from portal.api.schemas import ApiBlueprint, ErrorSchema
from portal.core.clock import iso_utc
from portal.core.errors import Unauthorized
from portal.extensions import limiter

blp = ApiBlueprint(
    "api_tokens", __name__, description="Authentication: exchange a password for a bearer token."
)


class TokenRequestSchema(ma.Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200), load_only=True)


class TokenSchema(ma.Schema):
    token = ma.fields.String(required=True)
    expires_at = ma.fields.String(required=True, metadata={"format": "date-time"})
    user = ma.fields.Dict(required=True)


def _limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _user_address_limit() -> str:
    return current_app.config["LOGIN_USER_ADDRESS_RATE_LIMIT"]


def _username_address_key() -> str:
    """The username asked for, from this address (as the sign-in form's limit; its own counter)."""
    body = request.get_json(silent=True)
    username = body.get("username") if isinstance(body, dict) else None
    username = username.strip().lower() if isinstance(username, str) else ""
    return f"token-user:{username}:{throttle.client_address()}"


@blp.route("/tokens", methods=["POST"])
@limiter.limit(_limit)
@limiter.limit(_user_address_limit, key_func=_username_address_key)
@blp.arguments(TokenRequestSchema)
@blp.response(201, TokenSchema)
@blp.alt_response(401, schema=ErrorSchema, description="Wrong username or password")
@blp.alt_response(403, schema=ErrorSchema, description="The account is deactivated, or not yet activated")
@blp.alt_response(
    429,
    schema=ErrorSchema,
    description=(
        "Too many attempts from this address, or for this username from this address; or the username "
        "is slowed after many failures from anywhere: `Retry-After` and `details.retry_after` say in how "
        "many seconds to try again"
    ),
)
def create_token(args: dict) -> dict:
    """Exchange a username and password for a bearer token (limits: docs/api.md)."""
    user = throttle.sign_in(args["username"], args["password"], throttle.client_address())
    if user is None:
        raise Unauthorized(_("Wrong username or password."))
    token, row = services.issue_api_token(user)
    return {
        "token": token,
        "expires_at": iso_utc(row.expires_at),
        "user": {"id": user.id, "username": user.username, "role": user.role.value},
    }


@blp.route("/tokens/current", methods=["DELETE"])
@blp.response(204)
@blp.doc(security=BEARER)
@blp.errors(401)
@token_required()
def revoke_token() -> None:
    """Revoke the bearer token of this request (sign out of the API); the user's other tokens go on."""
    services.revoke_api_token(bearer_token())
