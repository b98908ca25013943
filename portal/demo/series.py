"""Demo data of issue 18's recurring bookings: `enterprise` measures every Wednesday afternoon for six
weeks on one of the demo provider's instruments, and the provider has confirmed the series.

Made through the real services (`booking.series`), near the end of the load, so its dates are ahead
of the moment the demo opens. Dates that clash with the year's bookings are skipped and listed on the
series page, as they would be for a user; an instrument where fewer than four dates are free is passed
over for the next.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select

from portal.accounts.models import User
from portal.booking import series as series_services
from portal.booking.models import BookingSeries
from portal.booking.recurrence import Repeat
from portal.catalog.models import Instrument, InstrumentStatus
from portal.core import clock
from portal.core.errors import ServiceError
from portal.extensions import db

WEDNESDAY = 2
WEEKS = 6
PURPOSE = "每周例行质量抽检"


def _user(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def _first_wednesday(now: datetime) -> datetime:
    """14:00 Beijing time on the first Wednesday at least three days ahead (past any notice rule)."""
    day = clock.local_today() + timedelta(days=3)
    day += timedelta(days=(WEDNESDAY - day.weekday()) % 7)
    return clock.local_datetime_to_utc(day, time(14))


def load_weekly_series(now: datetime | None = None) -> BookingSeries | None:
    """The weekly series, confirmed; None in a demo without the accounts or a free instrument."""
    now = now or clock.utcnow()
    enterprise, provider = _user("enterprise"), _user("provider")
    if enterprise is None or provider is None or provider.institution_id is None:
        return None
    starts = _first_wednesday(now)
    request = series_services.SeriesRequest(
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        repeat=Repeat(every="week", weekdays=(WEDNESDAY,), count=WEEKS),
        purpose=PURPOSE,
        skip_conflicts=True,
    )
    candidates = db.session.scalars(
        select(Instrument.code)
        .where(
            Instrument.institution_id == provider.institution_id,
            Instrument.status == InstrumentStatus.NORMAL,
        )
        .order_by(Instrument.code)
    ).all()
    for code in candidates:
        try:
            # The dates are checked first, as the series form does, and nothing is written for an
            # instrument passed over.
            dates = series_services.preview_series(enterprise, code, request)
            if sum(1 for date in dates if date.conflict is None) < 4:
                continue
            series = series_services.request_series(enterprise, code, request)
        except ServiceError:
            db.session.rollback()
            continue
        return series_services.confirm_series(provider, series.id)
    return None
