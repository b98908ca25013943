"""The clock of the browser tests that write into a demo copy is never behind the demo itself: the demo
is loaded at the real time, and a fixed test date that the real one has passed put the test's booking
below twenty of the demo's in the provider's queue (CI, 7 December 2026)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from portal.core import clock
from tests.conftest import LIAOCHENG, MONDAY_9AM, make_app, next_monday_9am


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (datetime(2026, 12, 7, 0, 59, tzinfo=UTC), datetime(2026, 12, 7, 1, 0, tzinfo=UTC)),  # Monday 08:59
        (datetime(2026, 12, 7, 1, 0, tzinfo=UTC), datetime(2026, 12, 14, 1, 0, tzinfo=UTC)),  # Monday 09:00
        (datetime(2026, 12, 13, 17, 0, tzinfo=UTC), datetime(2026, 12, 14, 1, 0, tzinfo=UTC)),  # Monday 01:00
        (datetime(2026, 12, 13, 15, 0, tzinfo=UTC), datetime(2026, 12, 14, 1, 0, tzinfo=UTC)),  # Sunday 23:00
        (datetime(2026, 12, 30, 3, 0, tzinfo=UTC), datetime(2027, 1, 4, 1, 0, tzinfo=UTC)),
    ],
)
def test_the_next_monday_9am_in_liaocheng(after, expected):
    assert next_monday_9am(after) == expected


def test_the_demo_clock_is_a_monday_9am_after_every_row_of_the_demo(demo_database_url_sqlite, demo_clock):
    now = clock.utcnow()
    local = now.astimezone(LIAOCHENG)
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    assert now >= MONDAY_9AM
    app = make_app(demo_database_url_sqlite)
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
        with engine.connect() as connection:
            newest = connection.execute(sa.text("SELECT max(created_at) FROM bookings")).scalar_one()
        engine.dispose()
    assert datetime.fromisoformat(str(newest)).replace(tzinfo=UTC) < now
