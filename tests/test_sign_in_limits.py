"""Sign-in limits (the form and POST /api/v1/tokens): per address, per username from one address, and
the slow per-username limit that delays instead of locking, so nobody can lock the owner out. And the
API's sign-out: DELETE /api/v1/tokens/current."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from portal.core.models import AuditEvent
from portal.extensions import db
from tests.conftest import make_app
from tests.factories import PASSWORD, login

ATTACKER, OWNER = "203.0.113.66", "198.51.100.10"


def from_address(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def token(client, username: str, password: str = PASSWORD):
    return client.post("/api/v1/tokens", json={"username": username, "password": password})


@pytest.fixture
def owner(make_user):
    return make_user(username="owner")


def test_failures_from_one_address_do_not_lock_the_owner_out(app, owner):
    attacker = from_address(app, ATTACKER)
    statuses = [login(attacker, "owner", f"guess-{n}").status_code for n in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    assert login(from_address(app, OWNER), "owner").status_code == 302


def test_the_limit_per_username_from_one_address_is_its_own(app, owner, make_user):
    app.config["LOGIN_USER_ADDRESS_RATE_LIMIT"] = "3 per hour"
    make_user(username="neighbour")
    attacker = from_address(app, ATTACKER)
    assert [login(attacker, "owner", f"g{n}").status_code for n in range(4)] == [200, 200, 200, 429]
    assert login(attacker, "neighbour", "g").status_code == 200  # another username from there: allowed
    assert login(from_address(app, OWNER), "owner").status_code == 302


def _slow_mode(app, failures: int = 6) -> None:
    """Fail `failures` times for "owner" from as many addresses (each below its own limits)."""
    app.config.update(LOGIN_USER_FAILURE_LIMIT=f"{failures} per hour", LOGIN_SLOW_DELAY_SECONDS=2)
    for n in range(failures):
        assert login(from_address(app, f"203.0.113.{100 + n}"), "owner", "guess").status_code == 200


def test_past_the_slow_limit_failed_addresses_wait_and_the_owner_only_waits(app, owner):
    _slow_mode(app)
    attacker = from_address(app, "203.0.113.100")  # has failed for "owner"
    assert login(attacker, "owner", "guess").status_code == 200  # takes the one attempt of the window
    delayed = login(attacker, "owner", "guess")
    assert delayed.status_code == 429
    seconds = int(delayed.headers["Retry-After"])
    assert 1 <= seconds <= 2 and f"{seconds} 秒后再试" in delayed.get_data(as_text=True)
    # A new address for the attacker gets one guess, then joins the queue.
    fresh = from_address(app, "203.0.113.200")
    assert [login(fresh, "owner", "guess").status_code for _ in range(2)] == [200, 429]

    # The owner, from an address that has not failed: straight in.
    assert login(from_address(app, OWNER), "owner").status_code == 302
    # The owner, from one of the addresses that failed: a delay, not a lock.
    typo = from_address(app, "203.0.113.101")
    assert login(typo, "owner").status_code == 429
    time.sleep(seconds + 0.1)
    assert login(typo, "owner").status_code == 302


def test_other_usernames_are_not_slowed(app, owner, make_user):
    make_user(username="bystander")
    _slow_mode(app)
    client = from_address(app, "203.0.113.100")
    assert [login(client, "bystander", "guess").status_code for _ in range(3)] == [200] * 3


def test_tokens_have_the_same_limits(app, owner):
    attacker = from_address(app, ATTACKER)
    codes = [token(attacker, "owner", f"guess-{n}").status_code for n in range(11)]
    assert codes == [401] * 10 + [429]
    assert token(from_address(app, OWNER), "owner").status_code == 201

    app.config["LOGIN_USER_ADDRESS_RATE_LIMIT"] = "2 per hour"
    other = from_address(app, "203.0.113.77")
    assert [token(other, "owner", "g").status_code for _ in range(3)] == [401, 401, 429]


def test_tokens_are_slowed_like_the_form_and_say_when_to_try_again(app, owner):
    _slow_mode(app)  # failures on the form count for the API too: one counter per username
    attacker = from_address(app, "203.0.113.100")
    assert token(attacker, "owner", "guess").status_code == 401
    delayed = token(attacker, "owner", "guess")
    body = delayed.get_json()
    assert delayed.status_code == 429 and body["error"]["code"] == "rate_limited"
    assert 1 <= body["error"]["details"]["retry_after"] <= 2
    assert delayed.headers["Retry-After"] == str(body["error"]["details"]["retry_after"])
    assert token(from_address(app, OWNER), "owner").status_code == 201


def test_with_the_limit_store_down_the_slow_limit_still_holds(database_url, owner):
    app = make_app(database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:9/0")
    with app.app_context():
        _slow_mode(app, failures=4)
        attacker = from_address(app, "203.0.113.100")
        assert [login(attacker, "owner", "guess").status_code for _ in range(2)] == [200, 429]
        assert login(from_address(app, OWNER), "owner").status_code == 302


# --- the API's sign-out ---------------------------------------------------------------------------


def test_a_revoked_token_is_refused_and_the_others_go_on(app, client, owner):
    first, second = token(client, "owner").json["token"], token(client, "owner").json["token"]
    revoked = client.delete("/api/v1/tokens/current", headers={"Authorization": f"Bearer {first}"})
    assert revoked.status_code == 204 and revoked.get_data() == b""
    refused = client.get("/api/v1/bookings", headers={"Authorization": f"Bearer {first}"})
    assert refused.status_code == 401 and refused.json["error"]["code"] == "unauthorized"
    again = client.delete("/api/v1/tokens/current", headers={"Authorization": f"Bearer {first}"})
    assert again.status_code == 401
    assert client.get("/api/v1/bookings", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    assert db.session.scalar(
        select(AuditEvent.object_id).where(AuditEvent.action == "api_token.revoked")
    ) == str(owner.id)


def test_revoking_needs_a_token(client):
    assert client.delete("/api/v1/tokens/current").status_code == 401
    assert (
        client.delete("/api/v1/tokens/current", headers={"Authorization": "Bearer nonsense"}).status_code
        == 401
    )


def test_the_revocation_is_in_the_api_document(client):
    spec = client.get("/api/v1/openapi.json").json
    operation = spec["paths"]["/api/v1/tokens/current"]["delete"]
    assert "204" in operation["responses"] and "401" in operation["responses"]
    assert operation["security"] == [{"bearerAuth": []}]
