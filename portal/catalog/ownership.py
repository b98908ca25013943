"""Who owns an instrument: its institution's provider users manage its calendar, bookings,
qualifications and prices; administrators may edit its record too. Booking and qualifications ask
here rather than keeping checks of their own."""

from __future__ import annotations

from flask_babel import gettext as _

from portal.accounts.models import User
from portal.catalog.models import Instrument
from portal.catalog.services import get_instrument
from portal.core.errors import NotFound
from portal.core.permissions import Role


def owns(user: User, instrument: Instrument) -> bool:
    """Provider users of the instrument's own institution: they manage its calendar, bookings,
    qualifications and prices (booking and qualifications ask here)."""
    return (
        user.is_authenticated
        and user.role is Role.PROVIDER
        and user.institution_id is not None
        and user.institution_id == instrument.institution_id
    )


def may_edit(user: User, instrument: Instrument) -> bool:
    """Administrators, and provider users of the instrument's own institution."""
    if not user.is_authenticated:
        return False
    return user.role is Role.ADMIN or owns(user, instrument)


def editable_instrument(user: User, code: str) -> Instrument:
    """The instrument, if the user may edit it; otherwise NotFound, as for a code nobody uses."""
    instrument = get_instrument(code)
    if not may_edit(user, instrument):
        raise NotFound(_("No instrument has the code %(code)s.", code=code))
    return instrument
