"""Admin console pages (administrators only); each section's rules live in its area's services."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l

from portal.core.permissions import Role, role_required

bp = Blueprint("admin", __name__, url_prefix="/admin")

# The console's sections, in the order the front page shows them: (endpoint, title, what it is for).
SECTIONS = [
    (
        "admin.users_index",
        _l("Users"),
        _l("Every account: create staff accounts, roles, deactivation, reset links."),
    ),
    ("notifications.failed", _l("Failed mail"), _l("Mail that could not be delivered; send it again.")),
]


@bp.route("/")
@role_required(Role.ADMIN)
def index() -> ResponseReturnValue:
    """The console's front page: one card per section."""
    return render_template("admin/index.html", sections=SECTIONS)
