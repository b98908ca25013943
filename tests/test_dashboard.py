"""The dashboard's figures equal a direct computation over the demo data, booking by booking."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.accounts.models import ENTERPRISE_KIND_LABELS, Enterprise, User
from portal.booking.models import Booking, ServiceRecord
from portal.catalog.models import Category, Instrument, OpeningHours
from portal.core import clock
from portal.core.permissions import Role
from portal.dashboard import services
from portal.dashboard.services import Period
from portal.extensions import db
from portal.finance.services import month_of
from portal.usage.booking_tallies import USED_STATES
from portal.vouchers.models import COMMITTED_STATES, Claim, ClaimState
from tests.factories import login

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


@pytest.fixture
def period(demo_app) -> Period:
    this_month = month_of(clock.utcnow())
    return Period(this_month[:4] + "-01", this_month)


def used_bookings(period: Period, county: str | None = None) -> list:
    counties = dict(db.session.execute(select(Instrument.id, Instrument.county)).all())
    # Plain rows, not objects: the demo year holds some hundred thousand bookings.
    columns = (
        Booking.instrument_id,
        Booking.enterprise_id,
        Booking.state,
        Booking.starts_at,
        Booking.ends_at,
    )
    return [
        b
        for b in db.session.execute(select(*columns))
        if b.state in USED_STATES
        and b.starts_at is not None
        and period.start <= b.starts_at < period.end
        and (county is None or counties[b.instrument_id] == county)
    ]


def claims_in(months: list[str], column: str, states) -> list[Claim]:
    return [
        c for c in db.session.scalars(select(Claim)) if getattr(c, column) in months and c.state in states
    ]


@pytest.mark.parametrize("county", [None, "东昌府区"])
def test_every_headline_figure_equals_a_direct_count(period, county):
    got = services.figures(period, county)
    instruments = db.session.scalars(select(Instrument)).all()
    assert got.instruments == sum(1 for i in instruments if county is None or i.county == county)
    enterprise_users = [
        u
        for u in db.session.scalars(select(User).where(User.role == Role.ENTERPRISE))
        if county is None or u.enterprise.county == county
    ]
    assert got.users == sum(1 for u in enterprise_users if u.created_at < period.end)
    assert got.new_users == sum(1 for u in enterprise_users if period.start <= u.created_at < period.end)
    bookings = used_bookings(period, county)
    assert got.bookings == len(bookings) > 0
    assert got.enterprises_served == len({b.enterprise_id for b in bookings})
    counties = dict(db.session.execute(select(Instrument.id, Instrument.county)).all())
    # A service's hours as written on its record, in the month it took place (its start; a sample
    # service: its record), as the usage tallies count them.
    hours = sum(
        float(r.hours or 0)
        for r in db.session.execute(
            select(
                ServiceRecord.hours, ServiceRecord.recorded_at, Booking.starts_at, Booking.instrument_id
            ).join(Booking, Booking.id == ServiceRecord.booking_id)
        )
        if period.start <= (r.starts_at or r.recorded_at) < period.end
        and (county is None or counties[r.instrument_id] == county)
    )
    assert got.service_hours == pytest.approx(hours)
    months = period.months
    approved = [
        c
        for c in claims_in(months, "approved_month", COMMITTED_STATES)
        if county is None or c.enterprise.county == county
    ]
    paid = [
        c
        for c in claims_in(months, "paid_month", (ClaimState.PAID,))
        if county is None or c.enterprise.county == county
    ]
    assert got.approved_fen == sum(c.total_fen for c in approved)
    assert got.paid_fen == sum(c.total_fen for c in paid)
    if county is None:
        assert got.approved_fen > 0 and got.paid_fen > 0


def test_the_previous_period_has_as_many_months_just_before():
    assert Period("2026-01", "2026-03").previous() == Period("2025-10", "2025-12")
    assert Period("2026-05", "2026-05").previous() == Period("2026-04", "2026-04")
    assert services.change(150, 100) == 0.5 and services.change(5, 0) is None


def test_the_burn_down_cumulates_the_months_and_forecasts_in_a_straight_line(period):
    today = clock.local_today()
    burn = services.burn_down(today.year, today)
    by_month: dict[str, int] = defaultdict(int)
    for claim in db.session.scalars(select(Claim)):
        if claim.state in COMMITTED_STATES and claim.approved_month:
            by_month[claim.approved_month] += claim.total_fen
    expected, running = [], 0
    for month in burn.months:
        running += by_month[month]
        expected.append(running)
    assert burn.cumulative == expected
    assert [sum(series[i] for series in burn.funds.values()) for i in range(12)] == [
        by_month[m] for m in burn.months
    ]
    assert burn.forecast[-1] == round(expected[today.month - 1] / today.month * 12)
    assert burn.budget_fen == services.budget(today.year).budget_fen > 0


def open_hours(instrument_id: int, period: Period) -> float:
    first, last = period.local_days()
    rows = db.session.scalars(select(OpeningHours).where(OpeningHours.instrument_id == instrument_id)).all()
    total, day = 0.0, first
    while day <= last:
        for row in rows:
            if row.weekday == day.weekday():
                start = row.opens_at.hour * 60 + row.opens_at.minute
                end = row.closes_at.hour * 60 + row.closes_at.minute
                total += (end - start) / 60
        day += timedelta(days=1)
    return total


def test_utilisation_is_booked_over_open_hours(period):
    use = services.utilisation(period)
    with_hours = {i for (i,) in db.session.execute(select(OpeningHours.instrument_id).distinct())}
    assert use.instruments == len(with_hours)
    assert sum(n for _label, n in use.buckets) == use.instruments
    booked: dict[int, float] = defaultdict(float)
    for b in used_bookings(period):
        booked[b.instrument_id] += (b.ends_at - b.starts_at).total_seconds() / 3600
    for row in use.top[:3] + use.bottom[:3]:
        assert row.open_hours == pytest.approx(open_hours(row.instrument_id, period))
        assert row.booked_hours == pytest.approx(booked[row.instrument_id])
    assert use.top[0].ratio >= use.top[-1].ratio >= use.bottom[-1].ratio >= use.bottom[0].ratio
    assert use.top[0].ratio > 0


def test_bookings_by_county_and_category_and_subsidy_by_enterprise_type(period):
    bookings = used_bookings(period)
    instruments = {i.id: i for i in db.session.scalars(select(Instrument))}
    assert dict(services.bookings_by_county(period)) == Counter(
        instruments[b.instrument_id].county for b in bookings
    )
    names = dict(db.session.execute(select(Category.code, Category.name)).all())
    categories = {c.id: c.code for c in db.session.scalars(select(Category))}
    expected = Counter(names[categories[instruments[b.instrument_id].category_id][:2]] for b in bookings)
    assert dict(services.bookings_by_category(period)) == expected
    kinds: Counter[str] = Counter()
    for claim in claims_in(period.months, "approved_month", COMMITTED_STATES):
        kinds[str(ENTERPRISE_KIND_LABELS[db.session.get(Enterprise, claim.enterprise_id).kind])] += (
            claim.total_fen
        )
    assert dict(services.subsidies_by_enterprise_kind(period)) == kinds


def test_the_public_page_needs_no_login_and_shows_the_most_used(demo_client):
    page = demo_client.get("/network/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="most-used"' in html
    today = clock.local_today()
    used = services.most_used(today)
    assert used and used[0][0] in html
    assert [u[3] for u in used] == sorted((u[3] for u in used), reverse=True)
    headline = services.public_headline(today)
    # The city's 1202 and the demo's out-of-province provider's 2.
    assert headline.instruments == 1204 and f"{headline.instruments:,}" in html


def test_only_the_bureau_sees_the_dashboard(demo_client):
    assert demo_client.get("/dashboard/").status_code == 302  # to the login page
    login(demo_client, "enterprise", "demo-pass-2026")
    assert demo_client.get("/dashboard/").status_code == 403


@pytest.mark.parametrize("user", ["reviewer", "finance", "admin"])
def test_the_dashboard_renders_every_chart_for_the_bureau(demo_client, user):
    login(demo_client, user, "demo-pass-2026")
    page = demo_client.get("/dashboard/?county=%E4%B8%9C%E6%98%8C%E5%BA%9C%E5%8C%BA")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    for chart in ("burn", "utilisation", "county", "category", "kind"):
        assert f'id="chart-{chart}"' in html
    bad = demo_client.get("/dashboard/?month_from=2026-13&county=nowhere")
    assert bad.status_code == 200 and "2026-11" in bad.get_data(as_text=True)


def test_the_monthly_subsidy_bars_stay_visible_under_the_budget_line():
    import re

    from portal.core.charts import Series, bar_chart

    months = [f"{m:02d}" for m in range(1, 13)]
    bars = [Series("province", [60_000.0] * 12)]
    budget = [Series("budget", [6_000_000.0] * 12)]

    def tallest(svg: str) -> float:
        return max(float(h) for h in re.findall(r'class="bar"[^>]*height="([0-9.]+)"', svg))

    # On one scale a month's 60,000 yuan is about 2 px under a budget of 6 million; with the lines
    # on an axis of their own the bars take the plot's height.
    assert tallest(bar_chart(months, bars, lines=budget, title="t")) < 5
    chart = bar_chart(months, bars, lines=budget, title="t", lines_on_right_axis=True)
    assert tallest(chart) > 150
    assert 'text-anchor="start"' in chart and "600.0万" in chart  # the right-hand axis, in its own units
