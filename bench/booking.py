"""Booking: the time to create one booking with 1,000,000 bookings in the database against 1,000.

    .venv/bin/python -m bench.booking SMALL_URL LARGE_URL

Each measured call is the service a booking request runs (`request_booking`): the enterprise check,
the instrument's calendar (opening hours, blackouts, holding bookings), the insert the exclusion
constraint guards, the audit row, the providers' notification rows and the commit. Mail goes to files
(eager tasks without a broker), the same in both databases. The slots are free hours in the next
weeks of one demo instrument that exists in both databases; each database is left as it was.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import time as clock_time
from datetime import timedelta

from sqlalchemy import delete, select

from bench.common import Result, latency_result, p90, portal_app
from portal.accounts.models import User
from portal.booking.models import Booking, BookingMode
from portal.booking.requests import BookingRequest, request_booking
from portal.catalog.models import Instrument, InstrumentStatus, OpeningHours
from portal.core import clock
from portal.core.errors import ServiceError
from portal.extensions import db
from portal.notifications.models import Notification

RUNS = 40


def _app(url: str, mail_folder: str):
    return portal_app(url, MAIL_FILE_FOLDER=mail_folder)


def slot_instrument_code() -> str:
    """A demo instrument (not a copy) that takes slot bookings, opens on weekdays at 09:00."""
    return db.session.scalar(
        select(Instrument.code)
        .join(OpeningHours, OpeningHours.instrument_id == Instrument.id)
        .where(
            Instrument.status == InstrumentStatus.NORMAL,
            ~Instrument.code.like("B%-%"),
            OpeningHours.weekday == 1,
            OpeningHours.opens_at <= clock_time(9),
            OpeningHours.closes_at >= clock_time(12),
        )
        .order_by(Instrument.code)
        .limit(1)
    )


def candidate_slots():
    """One-hour slots from 09:00 to 12:00 Beijing time, from two days ahead (the calendar refuses
    closed days, unmeasured)."""
    today = clock.local_today()
    for day_offset in range(2, 60):
        day = today + timedelta(days=day_offset)
        for hour in (9, 10, 11):
            starts = clock.local_datetime_to_utc(day, clock_time(hour))
            yield starts, starts + timedelta(hours=1)


def _time_bookings(url: str) -> tuple[list[float], int]:
    """Milliseconds per successful booking, and how many bookings the database held."""
    with tempfile.TemporaryDirectory() as mail_folder:
        app = _app(url, mail_folder)
        with app.app_context():
            existing = db.session.scalar(select(db.func.count()).select_from(Booking))
            user = db.session.scalar(select(User).where(User.username == "enterprise"))
            user_id = user.id
            code = slot_instrument_code()
            started_at = clock.utcnow()
            made: list[int] = []
            times: list[float] = []
            for starts, ends in candidate_slots():
                if len(times) >= RUNS + 1:
                    break
                user = db.session.get(User, user_id)
                began = time.perf_counter()
                try:
                    booking = request_booking(
                        user, code, BookingRequest(BookingMode.SLOT, "bench", starts_at=starts, ends_at=ends)
                    )
                except ServiceError:
                    db.session.rollback()
                    continue
                times.append((time.perf_counter() - began) * 1000)
                made.append(booking.id)
            # Leave the bookings as they were, so a rerun measures the same thing (audit rows stay:
            # the audit log is append-only).
            db.session.execute(delete(Notification).where(Notification.created_at >= started_at))
            db.session.execute(delete(Booking).where(Booking.id.in_(made)))
            db.session.commit()
            return times[1:], existing  # the first call warms the caches and the connection


def run(small_url: str, large_url: str) -> list[Result]:
    small, small_count = _time_bookings(small_url)
    large, large_count = _time_bookings(large_url)
    ours, baseline = statistics.median(large), statistics.median(small)
    return [
        latency_result(
            f"create a booking, {large_count:,} vs {small_count:,} bookings",
            ours,
            baseline,
            1.5,
            note=f"median of {len(large)} and {len(small)} bookings; "
            f"p90 {p90(large):.1f} vs {p90(small):.1f} ms",
        )
    ]


if __name__ == "__main__":
    from bench.common import table

    print(table(run(sys.argv[1], sys.argv[2])))
