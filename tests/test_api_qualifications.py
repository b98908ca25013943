"""The API of issue 17: qualifications, the booking policy, and the instrument's prices."""

from __future__ import annotations

from datetime import time

import pytest
from sqlalchemy import func, select

from portal.booking.services import DEFAULT_POLICY
from portal.booking.settings import PolicyChange, save_booking_policy
from portal.catalog.models import Instrument
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from portal.qualifications import services as use_rules
from portal.qualifications.models import Qualification
from tests.test_booking_rules import bearer

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


@pytest.fixture
def setting(app, fake_clock, make_instrument, make_user):
    instrument = make_instrument(fee_per_hour_fen=200_00, fee_per_sample_fen=80_00)
    provider = make_user(Role.PROVIDER, institution=instrument.institution)
    user = make_user(Role.ENTERPRISE)
    return instrument, provider, user


def test_grant_list_and_revoke(client, setting):
    instrument, provider, user = setting
    headers = bearer(client, provider)
    url = f"/api/v1/instruments/{instrument.code}/qualifications"
    made = client.post(
        url,
        json={"username": user.username, "valid_until": "2027-12-31", "note": "考核合格"},
        headers=headers,
    )
    assert made.status_code == 201, made.json
    assert made.json["username"] == user.username and made.json["instrument_code"] == instrument.code
    assert made.json["valid_until"] == "2027-12-31" and made.json["revoked_at"] is None
    listed = client.get(url, headers=headers).json["items"]
    assert [q["id"] for q in listed] == [made.json["id"]]
    assert client.delete(f"{url}/{made.json['id']}", headers=headers).status_code == 204
    assert db.session.scalar(select(Qualification)).revoked_at is not None
    assert client.get(url, headers=headers).json["items"][0]["revoked_at"].endswith("Z")


def test_only_the_owning_institution_and_admins(client, setting, make_user):
    instrument, _provider, user = setting
    url = f"/api/v1/instruments/{instrument.code}/qualifications"
    body = {"username": user.username, "valid_until": "2027-12-31"}
    assert client.post(url, json=body).status_code == 401
    assert client.post(url, json=body, headers=bearer(client, user)).status_code == 403
    stranger = make_user(Role.PROVIDER)
    assert client.post(url, json=body, headers=bearer(client, stranger)).json["error"]["code"] == "not_found"
    admin = make_user(Role.ADMIN)
    assert client.post(url, json=body, headers=bearer(client, admin)).status_code == 201


def test_a_bad_grant_names_its_field(client, setting):
    instrument, provider, _user = setting
    url = f"/api/v1/instruments/{instrument.code}/qualifications"
    answer = client.post(
        url, json={"username": "nobody", "valid_until": "2027-12-31"}, headers=bearer(client, provider)
    )
    assert answer.status_code == 422 and "username" in answer.json["error"]["details"]["fields"]


def test_the_booking_policy_round_trip(client, setting):
    instrument, provider, _user = setting
    url = f"/api/v1/instruments/{instrument.code}/booking-policy"
    policy = client.get(url).json
    assert policy["operations"] == ["self", "staff"] and policy["requires_qualification"] is False
    assert policy["hours"][0] == {"weekday": 0, "opens_at": "08:30", "closes_at": "17:30"}
    assert policy["no_show_grace_minutes"] == 30
    changed = client.put(
        url,
        json={
            "operations": ["staff"],
            "requires_qualification": True,
            "min_minutes": 120,
            "no_show_grace_minutes": 45,
            "hours": [{"weekday": 2, "opens_at": "09:00", "closes_at": "12:00"}],
        },
        headers=bearer(client, provider),
    )
    assert changed.status_code == 200, changed.json
    assert changed.json["no_show_grace_minutes"] == 45
    assert changed.json["operations"] == ["staff"] and changed.json["requires_qualification"] is True
    assert changed.json["min_minutes"] == 120 and changed.json["max_minutes"] == policy["max_minutes"]
    assert changed.json["hours"] == [{"weekday": 2, "opens_at": "09:00", "closes_at": "12:00"}]
    assert client.get(url).json == changed.json
    record = client.get(f"/api/v1/instruments/{instrument.code}").json
    assert record["requires_qualification"] is True


POLICY_CHANGE = {
    "operations": ["staff"],
    "requires_qualification": True,
    "min_minutes": 120,
    "hours": [{"weekday": 2, "opens_at": "09:00", "closes_at": "12:00"}],
}


def _policy_audit_rows() -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action.like("instrument.%"))
    )


def test_a_refused_part_of_the_policy_saves_no_other_part(client, setting):
    """Policy, hours and use rules are saved together: overlapping hours refuse the whole PUT."""
    instrument, provider, _user = setting
    url = f"/api/v1/instruments/{instrument.code}/booking-policy"
    before = client.get(url).json
    overlapping = [
        {"weekday": 2, "opens_at": "09:00", "closes_at": "12:00"},
        {"weekday": 2, "opens_at": "11:00", "closes_at": "14:00"},
    ]
    refused = client.put(url, json={**POLICY_CHANGE, "hours": overlapping}, headers=bearer(client, provider))
    assert refused.status_code == 422 and "hours" in refused.json["error"]["details"]["fields"]
    assert client.get(url).json == before
    assert _policy_audit_rows() == 0


def test_a_failing_write_of_the_policy_leaves_nothing_saved(client, setting, monkeypatch):
    """A part that fails while being written (the use rules, written last) rolls back the others."""
    instrument, provider, _user = setting
    url = f"/api/v1/instruments/{instrument.code}/booking-policy"
    before = client.get(url).json

    def broken(*args, **kwargs):
        raise RuntimeError("the use rules could not be written")

    monkeypatch.setattr(use_rules, "write_use_rules", broken)
    hours = [(2, time(9), time(12))]
    change = PolicyChange(
        values={**{key: before[key] for key in DEFAULT_POLICY}, "min_minutes": 120},
        hours=hours,
        operations=["staff"],
        requires_qualification=True,
    )
    with pytest.raises(RuntimeError):
        save_booking_policy(provider, db.session.get(Instrument, instrument.id), change)
    db.session.expire_all()
    assert client.get(url).json == before
    assert _policy_audit_rows() == 0


def test_only_the_owning_provider_changes_the_policy(client, setting, make_user):
    instrument, _provider, user = setting
    url = f"/api/v1/instruments/{instrument.code}/booking-policy"
    assert client.put(url, json={"min_minutes": 60}, headers=bearer(client, user)).status_code == 403
    assert (
        client.put(
            url, json={"min_minutes": 60}, headers=bearer(client, make_user(Role.PROVIDER))
        ).status_code
        == 404
    )
    assert (
        client.put(url, json={"min_minutes": 60}, headers=bearer(client, make_user(Role.ADMIN))).status_code
        == 403
    )


def test_the_record_carries_its_prices(client, setting):
    instrument, provider, _user = setting
    record = client.get(f"/api/v1/instruments/{instrument.code}").json
    assert record["prices"] == [
        {
            "customer": "enterprise",
            "mode": m,
            "unit": u,
            "unit_price_fen": f,
            "min_units": 0,
            "steps": [],
            "overtime_unit_price_fen": None,
        }
        for m, u, f in (("self", "hour", 200_00), ("staff", "hour", 200_00), ("sample", "sample", 80_00))
    ]
    table = [
        {
            "customer": "sme",
            "mode": "self",
            "unit": "hour",
            "unit_price_fen": 150_00,
            "min_units": 1,
            "steps": [],
            "overtime_unit_price_fen": 200_00,
        },
        {
            "customer": "enterprise",
            "mode": "sample",
            "unit": "sample",
            "unit_price_fen": 90_00,
            "min_units": 0,
            "steps": [{"from_units": 11, "unit_price_fen": 70_00}],
            "overtime_unit_price_fen": None,
        },
    ]
    patched = client.patch(
        f"/api/v1/instruments/{instrument.code}", json={"prices": table}, headers=bearer(client, provider)
    )
    assert patched.status_code == 200, patched.json
    assert patched.json["prices"] == [table[1], table[0]]  # ordered by customer category, then mode
    assert client.get(f"/api/v1/instruments/{instrument.code}").json["prices"] == patched.json["prices"]
    bad = client.patch(
        f"/api/v1/instruments/{instrument.code}",
        json={"prices": [table[0], table[0]]},
        headers=bearer(client, provider),
    )
    assert bad.status_code == 422
