"""Internal use (issue 19): the owning institution's providers record their own use of an instrument on
its usage page; it is audited, counts in the run and effective hours and not in the service hours, a
bad entry is shown again as typed, and only the owning institution's providers record or delete."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting.hours import year_hours
from portal.usage.models import InternalUse
from tests.factories import extract_csrf, login

pytestmark = pytest.mark.both_backends


@pytest.fixture
def keeper(app, fake_clock, make_instrument, make_institution, make_user):
    host = make_institution()
    return {
        "instrument": make_instrument(institution=host),
        "provider": make_user(Role.PROVIDER, institution=host),
        "stranger": make_user(Role.PROVIDER),
    }


def post_use(client, code: str, **fields):
    page = client.get(f"/manage/instruments/{code}/usage").get_data(as_text=True)
    data = {"day": "2026-12-04", "starts": "09:00", "ends": "11:30", "user_name": "王老师", "note": "标定"}
    return client.post(
        f"/manage/instruments/{code}/internal-use", data={**data, **fields, "csrf_token": extract_csrf(page)}
    )


def test_a_provider_records_internal_use_and_it_counts_in_the_run_hours(client, keeper):
    code = keeper["instrument"].code
    login(client, keeper["provider"].username)
    response = post_use(client, code, purpose_category="teaching")
    assert response.status_code == 302
    row = db.session.scalar(select(InternalUse))
    # 09:00–11:30 in Liaocheng is 01:00–03:30 UTC.
    assert (row.started_at, row.ended_at) == (
        datetime(2026, 12, 4, 1, 0, tzinfo=UTC),
        datetime(2026, 12, 4, 3, 30, tzinfo=UTC),
    )
    assert (row.user_name, row.purpose_category, row.note) == ("王老师", "teaching", "标定")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "internal_use.recorded"))
    assert event.actor_id == keeper["provider"].id and event.after["instrument"] == code
    page = client.get(f"/manage/instruments/{code}/usage").get_data(as_text=True)
    assert "王老师" in page.split('id="internal-uses"', 1)[1]
    hours = year_hours(2026).of(keeper["instrument"].id)
    assert (hours.internal_hours, hours.service_hours, hours.effective_hours) == (
        Decimal("2.50"),
        Decimal(0),
        Decimal("2.50"),
    )


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"ends": "08:00"}, "ends", "结束时间必须晚于开始时间"),
        ({"day": "2026-12-07", "ends": "17:00"}, "ends", "已结束"),
        ({"note": "长" * 501}, "note", "500"),
        ({"purpose_category": "fun"}, "purpose_category", ""),
    ],
)
def test_a_bad_entry_is_shown_again_as_typed_and_nothing_is_written(client, keeper, fields, field, says):
    login(client, keeper["provider"].username)
    response = post_use(client, keeper["instrument"].code, **fields)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    marked = page.split(f'name="{field}"', 1)
    assert len(marked) == 2 and says in page
    assert 'value="王老师"' in page  # what was typed stays
    assert db.session.scalar(select(InternalUse)) is None
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action.like("internal_use.%"))) is None


def test_a_record_is_deleted_with_an_audit_row_by_its_institution_only(client, keeper):
    code = keeper["instrument"].code
    login(client, keeper["provider"].username)
    post_use(client, code)
    use_id = db.session.scalar(select(InternalUse.id))
    page = client.get(f"/manage/instruments/{code}/usage").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": extract_csrf(page)})
    login(client, keeper["stranger"].username)
    page = client.get("/account").get_data(as_text=True)
    refused = client.post(
        f"/manage/instruments/{code}/internal-use/{use_id}/delete", data={"csrf_token": extract_csrf(page)}
    )
    assert refused.status_code == 404
    db.session.expire_all()
    assert db.session.get(InternalUse, use_id) is not None
    client.post("/logout", data={"csrf_token": extract_csrf(page)})
    login(client, keeper["provider"].username)
    page = client.get(f"/manage/instruments/{code}/usage").get_data(as_text=True)
    done = client.post(
        f"/manage/instruments/{code}/internal-use/{use_id}/delete", data={"csrf_token": extract_csrf(page)}
    )
    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(InternalUse, use_id) is None
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "internal_use.deleted"))
    assert event.before["user_name"] == "王老师" and event.actor_id == keeper["provider"].id
