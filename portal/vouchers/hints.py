"""What the enterprise's voucher would cover of a booking, shown before it books (the booking pages
ask this from above; booking itself does not import vouchers)."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy import select

from portal.accounts.models import Enterprise, User
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers.labels import LIMIT_LABELS
from portal.vouchers.models import RedemptionMode, Voucher, VoucherState
from portal.vouchers.rules import Subsidy
from portal.vouchers.schemes import current_scheme
from portal.vouchers.subsidy import subsidy_for


@dataclass
class BookingHint:
    """What the enterprise's voucher would cover of a booking's fee, shown before it books."""

    subsidy: Subsidy | None
    warning: str | None
    # The ways of paying with the voucher the scheme offers (RedemptionMode values): with both, the
    # booking form asks which the enterprise wants.
    modes: tuple[str, ...] = ()


def booking_hint(user: User, instrument: Instrument, fee_fen: int) -> BookingHint:
    """The subsidy this fee would get from the enterprise's voucher now, and a warning if it falls short."""
    if not user.is_authenticated or user.role is not Role.ENTERPRISE:
        return BookingHint(None, None)
    scheme = current_scheme()
    voucher = None
    if scheme is not None:
        voucher = db.session.scalar(
            select(Voucher).where(
                Voucher.enterprise_id == user.enterprise_id,
                Voucher.scheme_id == scheme.id,
                Voucher.state == VoucherState.ACTIVE,
            )
        )
    if scheme is None or voucher is None or voucher.valid_until < clock.local_today():
        return BookingHint(None, _("You have no valid innovation voucher: the whole fee is yours to pay."))
    enterprise = db.session.get_one(Enterprise, user.enterprise_id)
    host = instrument.institution
    subsidy = subsidy_for(enterprise, scheme, voucher, fee_fen, host.is_local, host.in_province)
    warning = None
    short = [
        name for name in ("voucher_balance", "group_cap", "enterprise_cap") if name in subsidy.limited_by
    ]
    if short:
        warning = _(
            "Your voucher cannot cover the full subsidy: it is limited by %(limits)s.",
            limits=", ".join(str(LIMIT_LABELS[name]) for name in short),
        )
    in_province = instrument.institution.in_province
    modes = tuple(
        m for m in scheme.redemption_modes if in_province or m == RedemptionMode.REIMBURSEMENT.value
    )
    return BookingHint(subsidy, warning, modes)
