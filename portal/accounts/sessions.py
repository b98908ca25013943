"""Who is signed in: Flask-Login asks these for the user of a request (registered by init_app).

A browser signs in with a session cookie that names the user and their session version (User.get_id):
signing out everywhere or changing the password bumps the version, which ends every other session. The
API authenticates by bearer token only (portal.api.bearer checks the callers of each operation).
"""

from __future__ import annotations

from flask import Request, request

from portal.accounts import services
from portal.accounts.models import User
from portal.core.web import wants_json
from portal.extensions import db


def user_from_session(session_id: str) -> User | None:
    """The user a session or remember-me cookie names, while that session version is current."""
    # The API authenticates by bearer token only; a browser cookie there would bypass CSRF. Flask-Login
    # asks this loader (not the request loader) whenever a session or remember-me cookie comes along,
    # so the bearer token is read here too: a remembered browser login must not hide it.
    if wants_json():
        return user_from_bearer(request)
    user_id, _sep, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.session_version != int(version):
        return None
    return user


def user_from_bearer(req: Request) -> User | None:
    """The user of an API request's `Authorization: Bearer …` token, if it is valid."""
    if not req.path.startswith("/api/"):
        return None
    header = req.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return services.user_for_token(token.strip())
