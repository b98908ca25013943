"""Demo data of issue 21's provider admission: every host is admitted (it was networked before the
scheme required admission), except one that applied a few days ago and is in its public notice.

The host chosen has a provider account and no claimed service, so no claim of the voucher year is
touched by its admission not being in effect yet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select, update

from portal.accounts.models import Institution, User
from portal.admission import services as admission
from portal.admission.models import NO_ADMISSION, ProviderAdmission
from portal.booking.models import Booking, ServiceRecord
from portal.catalog.models import Instrument
from portal.core import clock
from portal.core.permissions import Role
from portal.demo.vouchers import simulated_clock
from portal.extensions import db

FEE_SCHEDULE = (
    "按聊城市科技局备案的收费标准执行：机时收费按小时计，送样检测按样品数计；"
    "对科技创新券用户不另加收任何费用。详细价目见各仪器页面。"
)
CREDIT_STATEMENT = (
    "本单位承诺：严格执行公示的收费标准，如实出具发票、服务记录和检测报告，"
    "不与用券企业串通虚报服务，自愿接受科技局的监督检查；如有违反，愿承担取消服务机构资格等责任。"
)


def _candidate() -> tuple[Institution, User] | None:
    """The host with a provider account and instruments, none of whose services is in a claim."""
    claimed = (
        select(ServiceRecord.id)
        .join(Booking, Booking.id == ServiceRecord.booking_id)
        .join(Instrument, Instrument.id == Booking.instrument_id)
        .where(Instrument.institution_id == Institution.id, ServiceRecord.claim_id.is_not(None))
    )
    row = db.session.execute(
        select(Institution, User)
        .join(User, User.institution_id == Institution.id)
        .where(
            User.role == Role.PROVIDER,
            exists(select(Instrument.id).where(Instrument.institution_id == Institution.id)),
            ~exists(claimed),
        )
        .order_by(Institution.name, User.id)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def load_admission(now: datetime | None = None) -> ProviderAdmission | None:
    """One host applied four days ago and was approved three days ago: in notice for a few more days."""
    now = now or clock.utcnow()
    found = _candidate()
    reviewer = db.session.scalar(select(User).where(User.role == Role.REVIEWER).order_by(User.id))
    if found is None or reviewer is None:
        return None  # a demo too small to hold one
    institution, provider = found
    db.session.execute(
        update(Institution).where(Institution.id == institution.id).values(admission=NO_ADMISSION)
    )
    db.session.commit()
    instruments = list(
        db.session.scalars(
            select(Instrument.id).where(Instrument.institution_id == institution.id).order_by(Instrument.code)
        )
    )
    with simulated_clock(now - timedelta(days=4, hours=2)):
        applied = admission.apply_for_admission(
            provider,
            institution.id,
            admission.AdmissionData(instruments[:5], FEE_SCHEDULE, CREDIT_STATEMENT),
        )
    with simulated_clock(now - timedelta(days=3)):
        return admission.approve_admission(reviewer, applied.id, "材料齐全，收费标准与备案一致，同意公示。")
