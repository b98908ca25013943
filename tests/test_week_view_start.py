"""The week view opens on the week of the next free time, unless a week is asked for."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from portal.booking.models import Blackout, BlackoutKind
from portal.extensions import db
from tests.test_booking_rules import WEEKDAY_HOURS

# The fake clock says Monday 7 December 2026, 09:00 in Liaocheng.


@pytest.fixture
def instrument(fake_clock, make_instrument):
    return make_instrument(opening_hours=WEEKDAY_HOURS)


def close(instrument, start: datetime, end: datetime) -> None:
    db.session.add(
        Blackout(instrument_id=instrument.id, kind=BlackoutKind.MAINTENANCE, starts_at=start, ends_at=end)
    )
    db.session.commit()


def shown_days(client, url: str) -> tuple[str, str]:
    """The first and last day (UTC cell starts) of the week a page shows."""
    starts = re.findall(r'data-start="([^"]+)"', client.get(url).get_data(as_text=True))
    return min(starts)[:10], max(starts)[:10]


def test_it_opens_on_the_week_of_the_next_free_time(client, instrument):
    close(instrument, datetime(2026, 12, 6, 16, 0, tzinfo=UTC), datetime(2026, 12, 13, 16, 0, tzinfo=UTC))
    page = client.get(f"/instruments/{instrument.code}/availability").get_data(as_text=True)
    first, last = shown_days(client, f"/instruments/{instrument.code}/availability")
    assert (first, last) == ("2026-12-14", "2026-12-20")  # next week, Monday to Sunday
    assert "2026-12-14 08:30" in page.split('id="next-free"')[1][:200]  # and it says when


def test_a_week_asked_for_is_shown(client, instrument):
    close(instrument, datetime(2026, 12, 6, 16, 0, tzinfo=UTC), datetime(2026, 12, 13, 16, 0, tzinfo=UTC))
    first, _last = shown_days(client, f"/instruments/{instrument.code}/availability?week=2026-12-09")
    assert first == "2026-12-07"
    page = client.get(f"/instruments/{instrument.code}/availability?week=2026-12-09").get_data(as_text=True)
    assert "week=2026-12-14" in page.split('id="next-free"')[1][:400]  # one click to the free week
    assert 'week=2026-12-07" aria-current="page"' in page  # "this week" names the current week


def test_free_time_this_week_keeps_this_week(client, instrument):
    assert shown_days(client, f"/instruments/{instrument.code}/availability")[0] == "2026-12-07"


def test_nothing_free_in_two_weeks_shows_the_current_week(client, instrument):
    close(instrument, datetime(2026, 12, 6, 16, 0, tzinfo=UTC), datetime(2027, 1, 31, 16, 0, tzinfo=UTC))
    page = client.get(f"/instruments/{instrument.code}/availability").get_data(as_text=True)
    assert shown_days(client, f"/instruments/{instrument.code}/availability")[0] == "2026-12-07"
    assert 'id="next-free"' not in page


def test_a_malformed_week_falls_back_to_the_next_free_week(client, instrument):
    close(instrument, datetime(2026, 12, 6, 16, 0, tzinfo=UTC), datetime(2026, 12, 13, 16, 0, tzinfo=UTC))
    for week in ("2026-13-01", "1900-01-01", "x"):
        assert (
            shown_days(client, f"/instruments/{instrument.code}/availability?week={week}")[0] == "2026-12-14"
        )
