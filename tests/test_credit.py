"""Booking credit (信用, issue 18, deliverable 5): violations, suspension by the scheme's N/M/K, waivers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from portal.booking import no_shows, requests, transitions
from portal.booking.models import BookingMode, BookingState
from portal.booking.signals import booking_violation
from portal.core.errors import InvalidTransition, NotFound, Suspended, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.credit import services
from portal.credit.models import Violation, ViolationKind
from portal.credit.rules import Rules, suspended_until
from portal.extensions import db
from portal.notifications.models import Notification
from tests.conftest import MONDAY_9AM
from tests.factories import extract_csrf, login
from tests.test_booking_rules import WEEKDAY_HOURS, bearer, request_slot

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = Rules(max_violations=3, window_days=90, suspension_days=30)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@pytest.mark.parametrize(
    ("violations", "now", "until"),
    [
        ([], day(0), None),
        ([day(0), day(10)], day(11), None),  # two are not three
        ([day(0), day(10), day(20)], day(20), day(50)),  # the third starts K days
        ([day(0), day(10), day(20)], day(49), day(50)),
        ([day(0), day(10), day(20)], day(50), None),  # over at its end
        ([day(0), day(10), day(91)], day(91), None),  # the first is outside the M days
        ([day(0), day(10), day(90)], day(90), day(120)),  # exactly M days apart still counts
        ([day(0), day(10), day(20), day(40)], day(45), day(70)),  # a fourth extends it
        ([day(0), day(10), day(20)], day(5), None),  # later ones do not count yet
    ],
)
def test_n_violations_within_m_days_suspend_for_k_days(violations, now, until):
    assert suspended_until(violations, RULES, now) == until


def test_a_suspension_of_zero_days_never_suspends():
    assert suspended_until([day(0), day(1), day(2)], Rules(3, 90, 0), day(2)) is None


@pytest.fixture
def world(app, fake_clock, make_instrument, make_institution, make_user, make_booking, set_policy):
    host = make_institution()
    instrument = make_instrument(institution=host, opening_hours=WEEKDAY_HOURS)
    set_policy(instrument, min_notice_hours=0)
    enterprise = make_user(Role.ENTERPRISE)

    def violation(hours_ago: float, kind: str = "no_show"):
        """A confirmed booking of the enterprise that became a violation `hours_ago` (committed)."""
        starts_at = fake_clock() - timedelta(hours=hours_ago + 2)
        booking = make_booking(
            instrument, enterprise, starts_at, starts_at + timedelta(hours=1), state=BookingState.NO_SHOW
        )
        booking_violation.send(booking, kind=kind, at=fake_clock() - timedelta(hours=hours_ago))
        db.session.commit()
        return db.session.scalar(select(Violation).where(Violation.booking_id == booking.id))

    return {
        "instrument": instrument,
        "enterprise": enterprise,
        "provider": make_user(Role.PROVIDER, institution=host),
        "other_provider": make_user(Role.PROVIDER),
        "reviewer": make_user(Role.REVIEWER),
        "violation": violation,
        "clock": fake_clock,
        "make_booking": make_booking,
    }


TUESDAY = MONDAY_9AM + timedelta(days=1)


def slot_request() -> requests.BookingRequest:
    return requests.BookingRequest(
        mode=BookingMode.SLOT, starts_at=TUESDAY, ends_at=TUESDAY + timedelta(hours=1)
    )


def test_the_no_show_task_records_a_violation_with_its_audit_row(world):
    starts_at = MONDAY_9AM - timedelta(hours=1)
    booking = world["make_booking"](
        world["instrument"], world["enterprise"], starts_at, MONDAY_9AM, state=BookingState.CONFIRMED
    )
    assert no_shows.mark_no_shows() == 1
    row = db.session.scalar(select(Violation))
    assert (row.booking_id, row.kind, row.enterprise_id) == (
        booking.id,
        ViolationKind.NO_SHOW,
        world["enterprise"].enterprise_id,
    )
    assert db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "credit.violation_recorded")
    ).object_id == str(row.id)


def test_a_manual_no_show_counts_too(world):
    booking = world["make_booking"](
        world["instrument"],
        world["enterprise"],
        MONDAY_9AM - timedelta(hours=1),
        MONDAY_9AM,
        state=BookingState.CONFIRMED,
    )
    transitions.mark_no_show(world["provider"], booking.id)
    assert db.session.scalar(select(Violation.kind)) is ViolationKind.NO_SHOW


def test_the_same_violation_counts_once(world):
    row = world["violation"](5)
    booking_violation.send(row.booking, kind="no_show", at=world["clock"]())
    db.session.commit()
    assert len(db.session.scalars(select(Violation)).all()) == 1


def test_three_violations_suspend_booking_naming_the_end(world):
    world["violation"](48)
    world["violation"](24)
    requests.request_booking(world["enterprise"], world["instrument"].code, slot_request())  # two: fine
    world["violation"](1)
    with pytest.raises(Suspended) as refused:
        requests.request_booking(
            world["enterprise"],
            world["instrument"].code,
            requests.BookingRequest(
                mode=BookingMode.SLOT,
                starts_at=TUESDAY + timedelta(hours=2),
                ends_at=TUESDAY + timedelta(hours=3),
            ),
        )
    until = MONDAY_9AM - timedelta(hours=1) + timedelta(days=30)
    assert refused.value.details["until"] == until.isoformat().replace("+00:00", "Z")
    assert "2027-01-06 08:00" in refused.value.message  # Beijing time
    told = db.session.scalars(select(Notification.kind).where(Notification.kind == "credit.suspended")).all()
    assert told == ["credit.suspended"]


def test_the_api_answers_409_suspended_with_until(client, world):
    for hours in (3, 2, 1):
        world["violation"](hours)
    answer = request_slot(
        client,
        bearer(client, world["enterprise"]),
        world["instrument"],
        "2026-12-08 09:00",
        "2026-12-08 10:00",
    )
    assert answer.status_code == 409
    assert answer.json["error"]["code"] == "suspended"
    assert answer.json["error"]["details"]["until"] == "2027-01-06T00:00:00Z"
    own = client.get("/api/v1/credit", headers=bearer(client, world["enterprise"])).json
    assert own["suspended_until"] == "2027-01-06T00:00:00Z"
    assert own["rules"] == {"max_violations": 3, "window_days": 90, "suspension_days": 30}
    assert [v["kind"] for v in own["violations"]] == ["no_show"] * 3


def test_the_booking_page_says_until_when(client, world):
    for hours in (3, 2, 1):
        world["violation"](hours)
    login(client, world["enterprise"].username)
    url = f"/instruments/{world['instrument'].code}/book?start=2026-12-08T01:00:00Z"
    page = client.get(url).get_data(as_text=True)
    ends = select_end(page)
    posted = client.post(
        f"/instruments/{world['instrument'].code}/book",
        data={
            "csrf_token": extract_csrf(page),
            "starts_at": "2026-12-08T01:00:00Z",
            "ends_at": ends,
            "operation": "self",
            "purpose": "XRD",
        },
    )
    text = posted.get_data(as_text=True)
    assert posted.status_code == 200 and "2027-01-06 08:00" in text and "error-summary" in text


def select_end(page: str) -> str:
    import re

    match = re.search(r'<option[^>]*value="(2026-12-08T0[2-9]:00:00Z)"', page)
    assert match, "no end time offered"
    return match.group(1)


def test_the_enterprise_sees_its_record_and_status(client, world):
    for hours in (3, 2, 1):
        world["violation"](hours)
    login(client, world["enterprise"].username)
    page = client.get("/credit/").get_data(as_text=True)
    assert 'id="credit-status"' in page and "2027-01-06 08:00" in page
    assert page.count("<tr>") == 4  # the head and three violations


def test_a_provider_waives_with_a_reason_which_lifts_the_suspension(client, world):
    rows = [world["violation"](hours) for hours in (3, 2, 1)]
    with pytest.raises(ValidationFailed):
        services.waive_violation(world["provider"], rows[0].id, "  ")
    with pytest.raises(NotFound):  # another institution's provider: as if it did not exist
        services.waive_violation(world["other_provider"], rows[0].id, "停电")
    waived = services.waive_violation(world["provider"], rows[0].id, "当日停电，非企业原因")
    assert waived.waived_at is not None and waived.waived_by_id == world["provider"].id
    assert services.enterprise_suspended_until(world["enterprise"].enterprise_id) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "credit.violation_waived"))
    assert (event.reason, event.actor_id) == ("当日停电，非企业原因", world["provider"].id)
    assert db.session.scalar(select(Notification.kind).where(Notification.kind == "credit.waived"))
    with pytest.raises(InvalidTransition):
        services.waive_violation(world["reviewer"], rows[0].id, "again")
    requests.request_booking(world["enterprise"], world["instrument"].code, slot_request())


def test_the_violations_to_waive_come_a_page_at_a_time_newest_first_every_one_reachable(client, world):
    oldest, middle, newest = (world["violation"](hours) for hours in (30, 20, 10))
    first = services.violations_page(world["provider"], page=1, per_page=2)
    second = services.violations_page(world["provider"], page=2, per_page=2)
    assert [v.id for v in first.items] == [newest.id, middle.id] and [v.id for v in second.items] == [
        oldest.id
    ]
    assert (first.total, first.pages) == (3, 2)
    assert services.violations_page(world["other_provider"]).total == 0  # another institution's instruments
    login(client, world["provider"].username)
    page = client.get("/credit/").get_data(as_text=True)
    assert [int(n) for n in re.findall(r'action="/credit/violations/(\d+)/waive"', page)] == [
        newest.id,
        middle.id,
        oldest.id,
    ]


def test_a_reviewer_waives_through_the_api_and_the_page(client, world):
    first, second = world["violation"](2), world["violation"](1)
    headers = bearer(client, world["reviewer"])
    listed = client.get("/api/v1/credit/violations", headers=headers).json["items"]
    assert {v["id"] for v in listed} == {first.id, second.id}
    url = f"/api/v1/credit/violations/{first.id}/waive"
    assert client.post(url, json={"reason": ""}, headers=headers).status_code == 422
    done = client.post(url, json={"reason": "设备故障"}, headers=headers)
    assert done.status_code == 200 and done.json["waive_reason"] == "设备故障"
    enterprise = bearer(client, world["enterprise"])
    assert client.post(url, json={"reason": "x"}, headers=enterprise).json["error"]["code"] == "forbidden"
    login(client, world["reviewer"].username)
    page = client.get("/credit/").get_data(as_text=True)
    posted = client.post(
        f"/credit/violations/{second.id}/waive", data={"csrf_token": extract_csrf(page), "reason": "误记"}
    )
    assert posted.status_code == 302
    assert db.session.get(Violation, second.id, populate_existing=True).waive_reason == "误记"


def test_a_provider_cancelling_late_at_the_enterprises_request_records_a_violation(world):
    confirmed = world["make_booking"](
        world["instrument"],
        world["enterprise"],
        TUESDAY - timedelta(hours=20),
        TUESDAY - timedelta(hours=19),
        state=BookingState.CONFIRMED,
    )
    early = world["make_booking"](
        world["instrument"],
        world["enterprise"],
        TUESDAY + timedelta(days=3),
        TUESDAY + timedelta(days=3, hours=1),
        state=BookingState.CONFIRMED,
    )
    transitions.cancel_booking(world["provider"], early.id, "企业来电取消", late_cancellation=True)
    assert db.session.scalar(select(Violation)) is None  # before the cut-off: not late
    transitions.cancel_booking(world["provider"], confirmed.id, "企业来电取消", late_cancellation=True)
    assert db.session.scalar(select(Violation.kind)) is ViolationKind.LATE_CANCELLATION


def test_the_administrator_sets_the_schemes_rules(client, world, make_scheme, make_user):
    make_scheme(year=2026)
    world["violation"](1)
    admin = make_user(Role.ADMIN)
    login(client, admin.username)
    page = client.get("/credit/rules").get_data(as_text=True)
    posted = client.post(
        "/credit/rules",
        data={
            "csrf_token": extract_csrf(page),
            "max_violations": "1",
            "window_days": "30",
            "suspension_days": "7",
        },
    )
    assert posted.status_code == 302
    assert services.rules_in_force() == Rules(1, 30, 7)
    assert services.enterprise_suspended_until(world["enterprise"].enterprise_id) == MONDAY_9AM + timedelta(
        days=7, hours=-1
    )
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.object_type == "credit_rules"))
