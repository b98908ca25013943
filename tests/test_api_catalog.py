"""The catalogue part of API v1: shapes, filters, errors, tokens, ETags and the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.factories import PASSWORD


def token_for(client, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/v1/tokens", json={"username": username, "password": password})
    assert response.status_code == 201, response.json
    return response.json["token"]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    body = response.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_list_shape(client, make_instrument):
    instrument = make_instrument(fee_per_hour_fen=None, fee_per_sample_fen=25_000)
    body = client.get("/api/v1/instruments").json
    assert set(body) == {"items", "total", "page", "per_page"}
    assert (body["total"], body["page"], body["per_page"]) == (1, 1, 20)
    item = body["items"][0]
    assert item["code"] == instrument.code
    assert item["category"] == {
        "code": "0102",
        "name": "质谱仪器",
        "name_en": "Mass spectrometers",
        "parent_code": "01",
    }
    assert item["institution"] == {"id": instrument.institution_id, "name": instrument.institution.name}
    assert item["fee_per_sample_fen"] == 25_000 and item["fee_per_hour_fen"] is None
    assert item["original_value_fen"] == 100_000_000
    assert item["status"] == "normal"


def test_detail_and_not_found(client, make_instrument):
    instrument = make_instrument(specs="分辨率 0.8 nm")
    body = client.get(f"/api/v1/instruments/{instrument.code}").json
    assert body["code"] == instrument.code
    assert body["specs"] == "分辨率 0.8 nm"
    assert body["opening_hours"][0] == {"weekday": 0, "opens_at": "08:30", "closes_at": "17:30"}
    assert body["operator_phone"] is None  # anonymous callers do not get the phone
    assert_error(client.get("/api/v1/instruments/NO-SUCH"), 404, "not_found")


def test_phone_number_only_with_a_token(client, make_instrument, make_user):
    instrument = make_instrument(operator_phone="0635-1234567")
    make_user(username="api-user")
    token = token_for(client, "api-user")
    body = client.get(
        f"/api/v1/instruments/{instrument.code}", headers={"Authorization": f"Bearer {token}"}
    ).json
    assert body["operator_phone"] == "0635-1234567"


def test_token_endpoint(client, make_user):
    make_user(username="tok")
    response = client.post("/api/v1/tokens", json={"username": "tok", "password": PASSWORD})
    assert response.status_code == 201
    assert response.json["expires_at"].endswith("Z")
    assert_error(
        client.post("/api/v1/tokens", json={"username": "tok", "password": "nope"}), 401, "unauthorized"
    )
    error = assert_error(client.post("/api/v1/tokens", json={"username": "tok"}), 422, "validation_error")
    assert "password" in error["details"]["fields"]


def test_an_invalid_bearer_token_is_refused(client):
    response = client.get("/api/v1/instruments", headers={"Authorization": "Bearer forged"})
    assert_error(response, 401, "unauthorized")


def test_a_browser_session_cookie_does_not_authenticate_the_api(client, make_user, make_instrument):
    from tests.factories import login

    instrument = make_instrument(operator_phone="0635-7654321")
    make_user(username="cookie-user")
    login(client, "cookie-user")
    body = client.get(f"/api/v1/instruments/{instrument.code}").json
    assert body["operator_phone"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"per_page": 500}, "per_page"),
        ({"page": 0}, "page"),
        ({"status": "on-fire"}, "status"),
        ({"fee_min_fen": -1}, "fee_min_fen"),
        ({"fee_min_fen": "ten"}, "fee_min_fen"),
        ({"category": "1"}, "category"),
        ({"category": "0177"}, "category"),
        ({"sort": "random"}, "sort"),
        ({"county": "海淀区"}, "county"),
        ({"fee_min_fen": 500, "fee_max_fen": 100}, "fee_max_fen"),
    ],
)
def test_bad_parameters_get_validation_errors_naming_the_field(client, params, field):
    error = assert_error(client.get("/api/v1/instruments", query_string=params), 422, "validation_error")
    assert field in error["details"]["fields"]


def test_etag_lets_clients_revalidate_with_a_304(client, make_instrument):
    make_instrument()
    first = client.get("/api/v1/instruments")
    etag = first.headers["ETag"]
    again = client.get("/api/v1/instruments", headers={"If-None-Match": etag})
    assert again.status_code == 304
    make_instrument()  # the catalogue changes: the same ETag no longer matches
    changed = client.get("/api/v1/instruments", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json["total"] == 2


def test_categories_and_institutions(client, make_instrument):
    instrument = make_instrument()
    categories = client.get("/api/v1/categories", query_string={"per_page": 100}).json
    assert categories["total"] == 15
    analysis = categories["items"][0]
    assert (analysis["code"], analysis["name"]) == ("01", "分析仪器")
    assert [c["code"] for c in analysis["children"]][:2] == ["0101", "0102"]
    assert analysis["children"][-1]["code"] == "0199"
    institutions = client.get("/api/v1/institutions").json
    assert institutions["items"] == [
        {
            "id": instrument.institution_id,
            "name": instrument.institution.name,
            "kind": "university",
            "county": "东昌府区",
            "instrument_count": 1,
            "in_province": True,
            "admission": "admitted",  # issue 21: its admission as a voucher provider
            "admission_notice_ends_on": None,
        }
    ]


def test_openapi_document_describes_the_catalogue(client):
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3")
    for path in (
        "/api/v1/instruments",
        "/api/v1/instruments/{code}",
        "/api/v1/categories",
        "/api/v1/institutions",
        "/api/v1/tokens",
    ):
        assert path in spec["paths"], path
    params = {p["name"] for p in spec["paths"]["/api/v1/instruments"]["get"]["parameters"]}
    assert {
        "q",
        "institution_id",
        "category",
        "status",
        "county",
        "fee_min_fen",
        "fee_max_fen",
        "sort",
        "page",
        "per_page",
    } <= params
    assert "bearerAuth" in spec["components"]["securitySchemes"]


def test_token_endpoint_is_rate_limited(client):
    codes = [
        client.post("/api/v1/tokens", json={"username": "x", "password": "y"}).status_code for _ in range(11)
    ]
    assert codes[-1] == 429
    assert_error(client.post("/api/v1/tokens", json={"username": "x", "password": "y"}), 429, "rate_limited")
