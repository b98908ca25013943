"""Effective hours (issue 18, part 3), on both backends: a claim's automatic check hours_above_usage
(metered hours above the used ones fail, unmetered ones warn, or fail where the scheme requires
metering), the scheme's setting, and the service record's hours prefilled from metered use."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.booking.models import BookingMode, BookingState
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.usage.models import UsageSession, UsageSource
from portal.vouchers import claims as claim_services
from portal.vouchers.models import Scheme
from tests.factories import extract_csrf, login
from tests.test_booking_rules import bearer
from tests.test_forms_keep_input import SCHEME
from tests.test_vouchers import claimant, desk  # noqa: F401 - the fixtures

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


def metered(record, minutes: int) -> None:
    """Sessions of the record's booking adding up to `minutes` (two, as after a break)."""
    booking = record.booking
    first = minutes // 2
    for start, length in (
        (booking.starts_at, first),
        (booking.starts_at + timedelta(hours=1), minutes - first),
    ):
        db.session.add(
            UsageSession(
                booking_id=booking.id,
                instrument_id=booking.instrument_id,
                started_at=start,
                ended_at=start + timedelta(minutes=length),
                source=UsageSource.QR,
            )
        )
    db.session.commit()


def usage_check(user, voucher, record):
    preview = claim_services.preview_claim(user, voucher.id, [record.id])
    return next(c for c in preview.checks if c.code == "hours_above_usage")


def test_billed_hours_up_to_the_metered_ones_pass_a_hundredth_more_fails(claimant, make_service):  # noqa: F811
    exact = make_service(claimant["user"], 1_000_00, hours=Decimal("1.50"))
    metered(exact, 90)
    check = usage_check(claimant["user"], claimant["voucher"], exact)
    assert (check.passed, check.warning) == (True, False)
    over = make_service(claimant["user"], 1_000_00, hours=Decimal("1.51"))
    metered(over, 90)
    check = usage_check(claimant["user"], claimant["voucher"], over)
    assert check.passed is False
    assert f"#{over.id}" in check.message and "1.51" in check.message and "1.50" in check.message


def test_an_unmetered_service_warns_unless_the_scheme_requires_metering(claimant, make_service):  # noqa: F811
    record = make_service(claimant["user"], 1_000_00, hours=Decimal(2))
    check = usage_check(claimant["user"], claimant["voucher"], record)
    assert (check.passed, check.warning) == (True, True)
    assert f"#{record.id}" in check.message
    claimant["scheme"].metering_required = True
    db.session.commit()
    check = usage_check(claimant["user"], claimant["voucher"], record)
    assert (check.passed, check.warning) == (False, False)
    metered(record, 120)
    assert usage_check(claimant["user"], claimant["voucher"], record).passed is True


def test_sample_services_are_not_judged_by_metering(claimant, make_service):  # noqa: F811
    claimant["scheme"].metering_required = True
    db.session.commit()
    record = make_service(claimant["user"], 1_000_00, hours=Decimal(2))
    record.booking.mode, record.booking.sample_count, record.samples = BookingMode.SAMPLE, 3, 3
    db.session.commit()
    check = usage_check(claimant["user"], claimant["voucher"], record)
    assert (check.passed, check.warning) == (True, False)


def test_the_api_says_whether_the_scheme_requires_metering_and_warns(client, claimant):  # noqa: F811
    headers = bearer(client, claimant["user"])
    assert client.get("/api/v1/schemes/current", headers=headers).json["metering_required"] is False
    preview = client.post(
        "/api/v1/claims/preview",
        json={"voucher_id": claimant["voucher"].id, "service_record_ids": [claimant["record"].id]},
        headers=headers,
    ).json
    usage = next(c for c in preview["checks"] if c["code"] == "hours_above_usage")
    assert (usage["passed"], usage["warning"]) == (True, True)


def test_the_service_record_is_prefilled_with_the_metered_hours(
    client, fake_clock, make_instrument, make_user, make_booking, make_institution
):
    host = make_institution()
    instrument = make_instrument(institution=host)
    user = make_user(Role.ENTERPRISE)
    start = fake_clock() - timedelta(hours=3)
    booking = make_booking(instrument, user, start, start + timedelta(hours=2), state=BookingState.CONFIRMED)
    login(client, make_user(Role.PROVIDER, institution=host).username)
    page = client.get(f"/bookings/{booking.id}").get_data(as_text=True)
    assert 'name="hours" type="text" value=""' in page or 'value="1.75"' not in page
    db.session.add(
        UsageSession(
            booking_id=booking.id,
            instrument_id=instrument.id,
            started_at=start + timedelta(minutes=5),
            ended_at=start + timedelta(minutes=110),
            source=UsageSource.QR,
        )
    )
    db.session.commit()
    page = client.get(f"/bookings/{booking.id}").get_data(as_text=True)
    assert 'value="1.75"' in page  # 105 minutes
    assert "1.75" in page.split('id="booked-hours"')[1].split("</p>")[0]


def test_the_administrator_sets_the_metering_rule_on_the_scheme_page(client, fake_clock, make_user):
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/review/scheme?year=2027").get_data(as_text=True)
    data = {**SCHEME, "service_window_start": "2027-01-01", "service_window_end": "2027-12-31"}
    for flag, expected in (("y", True), (None, False)):
        body = {**data, **({"metering_required": flag} if flag else {})}
        response = client.post("/review/scheme", data={"csrf_token": extract_csrf(page), **body})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        db.session.expire_all()
        scheme = db.session.scalars(select(Scheme).where(Scheme.year == 2027)).one()
        assert scheme.metering_required is expected
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "scheme")).all()
    assert audit[-1].before["metering_required"] is True and audit[-1].after["metering_required"] is False
