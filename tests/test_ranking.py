"""Provider ranking: measures equal the rows, the scheme's weights decide, exports are formula-safe."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from portal.booking.models import ServiceRecord
from portal.core import clock
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.dashboard.ranking import ranking, ranking_top
from portal.extensions import db
from portal.usage import tallies
from portal.vouchers.models import DEFAULT_RANKING_WEIGHTS, Scheme
from tests.factories import completed_service, extract_csrf, login

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

# 2026 in Beijing time begins at 2025-12-31 16:00 UTC and ends at 2026-12-31 16:00 UTC.
FIRST_INSTANT = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)
END_INSTANT = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def serve(app):
    """A completed service of `user`'s enterprise on `instrument` that took place `at` (its start:
    a service counts in the year it took place), and its usage tally recounted, as the outbox would."""
    counter = iter(range(1, 1_000_000))

    def make(
        instrument,
        user,
        *,
        at: datetime | None = None,
        hours: Decimal | None = Decimal(2),
        samples: int | None = None,
        fee_fen: int = 1_000_00,
        rating: int | None = 5,
    ) -> ServiceRecord:
        # Distinct slots by default, so no two bookings of one instrument overlap.
        starts_at = at or datetime(2026, 6, 1, 2, 0, tzinfo=UTC) + timedelta(hours=3 * next(counter))
        record = completed_service(
            instrument, user, starts_at, fee_fen=fee_fen, hours=hours, samples=samples, rating=rating
        )
        db.session.commit()
        tallies.tally_month(clock.local_month(starts_at), [instrument.id])
        return record

    return make


def expected_measures(records: list[tuple[str, ServiceRecord, int]]) -> dict[str, dict]:
    """The measures per group computed directly from (group name, record, enterprise id) triples."""
    out: dict[str, dict] = defaultdict(
        lambda: {
            "hours": Decimal(0),
            "samples": 0,
            "fees_fen": 0,
            "services": 0,
            "enterprises": set(),
            "ratings": [],
        }
    )
    for name, record, enterprise_id in records:
        group = out[name]
        group["hours"] += record.hours or Decimal(0)
        group["samples"] += record.samples or 0
        group["fees_fen"] += record.fee_fen
        group["services"] += 1
        group["enterprises"].add(enterprise_id)
        if record.rating is not None:
            group["ratings"].append(record.rating)
    return out


def expected_scores(measures: dict[str, dict], weights: dict[str, Decimal]) -> dict[str, Decimal]:
    def values(m: dict) -> dict[str, Decimal]:
        ratings = m["ratings"]
        rating = (Decimal(sum(ratings)) / len(ratings)).quantize(Decimal("0.01")) if ratings else Decimal(0)
        return {
            "hours": m["hours"],
            "samples": Decimal(m["samples"]),
            "fees": Decimal(m["fees_fen"]),
            "enterprises": Decimal(len(m["enterprises"])),
            "rating": rating,
        }

    table = {name: values(m) for name, m in measures.items()}
    top = {k: max(v[k] for v in table.values()) for k in weights}
    top["rating"] = Decimal(5)
    return {
        name: sum((weights[k] * v[k] / top[k] for k in weights if top[k] > 0), Decimal(0)).quantize(
            Decimal("0.0001")
        )
        for name, v in table.items()
    }


def check_rows(rows, measures: dict[str, dict], weights: dict[str, Decimal]) -> None:
    assert {row.name for row in rows} == set(measures)
    scores = expected_scores(measures, weights)
    for row in rows:
        m = measures[row.name]
        assert row.hours == m["hours"]
        assert row.samples == m["samples"]
        assert row.fees_fen == m["fees_fen"]
        assert row.services == m["services"]
        assert row.enterprises == len(m["enterprises"])
        assert row.ratings == len(m["ratings"])
        if m["ratings"]:
            assert row.rating == (Decimal(sum(m["ratings"])) / len(m["ratings"])).quantize(Decimal("0.01"))
        else:
            assert row.rating is None
        assert row.score == scores[row.name]
    assert [row.rank for row in rows] == list(range(1, len(rows) + 1))
    assert rows == sorted(rows, key=lambda row: (-row.score, row.name))


def test_every_measure_equals_a_direct_computation(app, make_institution, make_instrument, make_user, serve):
    rng = random.Random(20261207)
    hosts = [make_institution(name=f"排名单位{n}") for n in range(3)]
    instruments = [make_instrument(institution=hosts[n % 3]) for n in range(5)]
    users = [make_user(Role.ENTERPRISE) for _ in range(4)]
    by_institution, by_instrument = [], []
    # Distinct three-hour slots over the year (never its first instant, which the edge case takes).
    for n, slot in enumerate(sorted(rng.sample(range(1, 2900), 40))):
        instrument, user = rng.choice(instruments), rng.choice(users)
        sample_mode = n % 4 == 0
        record = serve(
            instrument,
            user,
            at=FIRST_INSTANT + timedelta(hours=3 * slot),
            hours=None if sample_mode else Decimal(rng.randrange(25, 1000)) / 100,
            samples=rng.randrange(1, 20) if sample_mode else None,
            fee_fen=rng.randrange(0, 5_000_00),
            rating=rng.choice([None, 1, 2, 3, 4, 5]),
        )
        institution = next(h for h in hosts if h.id == instrument.institution_id)
        by_institution.append((institution.name, record, user.enterprise_id))
        by_instrument.append((f"{instrument.name} ({instrument.code})", record, user.enterprise_id))
    # The edges of the Beijing year: a service starting at its first instant counts, one starting the
    # last instant before it or the first instant of the next year does not.
    edge = serve(instruments[0], users[0], at=FIRST_INSTANT, hours=Decimal("1.5"), rating=None)
    host = next(h for h in hosts if h.id == instruments[0].institution_id)
    by_institution.append((host.name, edge, users[0].enterprise_id))
    by_instrument.append((f"{instruments[0].name} ({instruments[0].code})", edge, users[0].enterprise_id))
    serve(instruments[1], users[1], at=FIRST_INSTANT - timedelta(seconds=1), fee_fen=9_999_999_00)
    serve(instruments[1], users[1], at=END_INSTANT, fee_fen=9_999_999_00)

    weights = dict(DEFAULT_RANKING_WEIGHTS)
    check_rows(ranking(2026), expected_measures(by_institution), weights)
    instrument_rows = ranking(2026, "instrument")
    check_rows(instrument_rows, expected_measures(by_instrument), weights)
    hosts_by_id = {i.id: i for i in instruments}
    assert all(row.institution == hosts_by_id[row.id].institution.name for row in instrument_rows)
    # The page's top rows, scored exactly only where a float score puts them near the top: the same
    # rows, scores and ranks as the whole ranking's first ones.
    for limit in (1, 2, 3, 50):
        assert ranking_top(2026, "instrument", None, None, limit) == (
            instrument_rows[:limit],
            len(instrument_rows),
        )
    assert ranking(2025) != [] and ranking(2024) == []


def test_the_schemes_weights_decide_the_order(
    app, make_scheme, make_institution, make_instrument, make_user, serve
):
    volume = make_institution(name="乙-大户单位")  # busy, poorly rated
    quality = make_institution(name="甲-精品单位")  # little work, excellent ratings
    big, small = make_instrument(institution=volume), make_instrument(institution=quality)
    users = [make_user(Role.ENTERPRISE) for _ in range(3)]
    for user in users:
        serve(big, user, hours=Decimal(8), fee_fen=8_000_00, rating=2)
    serve(small, users[0], hours=Decimal(1), fee_fen=500_00, rating=5)

    scheme = make_scheme(ranking_weights={"hours": "0.5", "fees": "0.5", "samples": "0", "rating": "0"})
    # Measures the scheme leaves out take their default.
    assert scheme.ranking_weight_values["enterprises"] == DEFAULT_RANKING_WEIGHTS["enterprises"]
    assert [row.name for row in ranking(2026)] == [volume.name, quality.name]

    scheme.ranking_weights = {"hours": "0", "samples": "0", "fees": "0", "enterprises": "0", "rating": "1"}
    db.session.commit()
    rows = ranking(2026)
    assert [row.name for row in rows] == [quality.name, volume.name]
    assert [row.score for row in rows] == [Decimal("1.0000"), Decimal("0.4000")]

    # Weights passed in win over the scheme's.
    assert ranking(2026, weights={"hours": Decimal(1)})[0].name == volume.name
    # Equal scores are ranked by name.
    tied = ranking(2026, weights={"samples": Decimal(1)})
    assert [row.name for row in tied] == sorted([volume.name, quality.name])
    assert ranking_top(2026, "institution", {"samples": Decimal(1)}, None, 1) == (tied[:1], 2)
    assert all(row.score == 0 for row in tied)


def test_without_a_scheme_the_default_weights_apply(app, make_instrument, make_user, serve):
    instrument, user = make_instrument(), make_user(Role.ENTERPRISE)
    serve(instrument, user, rating=4)
    (row,) = ranking(2026)
    # Best in hours, fees and enterprises (0.25 + 0.25 + 0.2), no samples at all (0), and a rating of
    # 4 counts 4/5 of its 0.15.
    assert row.score == Decimal("0.8200")
    assert row.samples == 0 and row.rating == Decimal("4.00") and row.ratings == 1


def test_the_county_filter_counts_services_where_they_happened(
    app, make_institution, make_instrument, make_user, serve
):
    host = make_institution()
    there = make_instrument(institution=host, county="临清市")
    here = make_instrument(institution=host, county="东昌府区")
    other = make_instrument(county="东昌府区")
    user = make_user(Role.ENTERPRISE)
    serve(there, user, hours=Decimal(3), fee_fen=300_00)
    serve(here, user, hours=Decimal(5), fee_fen=500_00)
    serve(other, user, hours=Decimal(1), fee_fen=100_00)

    (row,) = ranking(2026, county="临清市")
    assert (row.name, row.hours, row.fees_fen, row.services) == (host.name, Decimal(3), 300_00, 1)
    everything = {row.name: row.hours for row in ranking(2026)}
    assert everything[host.name] == Decimal(8)
    instruments = ranking(2026, "instrument", county="东昌府区")
    assert {row.id for row in instruments} == {here.id, other.id}


@pytest.fixture
def dangerous(make_institution, make_instrument, make_user, serve):
    """Names that a spreadsheet would run as formulas."""
    host = make_institution(name='=HYPERLINK("x")')
    instrument = make_instrument(institution=host, name="+cmd|' /C calc'!A0", code="@T-1")
    other = make_instrument(institution=make_institution(name="-2+3"), name="\tTabbed")
    user = make_user(Role.ENTERPRISE)
    serve(instrument, user, hours=Decimal("2.5"), fee_fen=1_234_56, rating=4)
    serve(other, user, hours=None, samples=7, fee_fen=99, rating=None)
    return host


@pytest.mark.parametrize("level", ["institution", "instrument"])
def test_the_csv_export_is_formula_safe(client, fake_clock, make_user, dangerous, level):
    login(client, make_user(Role.FINANCE).username)
    response = client.get(f"/dashboard/ranking.csv?year=2026&level={level}")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert len(rows) == 3
    for cells in rows:
        assert not any(cell.startswith(FORMULA_PREFIXES) for cell in cells), cells
    assert any(cell == "'" + dangerous.name for row in rows for cell in row)
    fees = 4 if level == "institution" else 5
    assert sorted(row[fees] for row in rows[1:]) == ["0.99", "1234.56"]


@pytest.mark.parametrize("level", ["institution", "instrument"])
def test_the_xlsx_export_has_no_formulas_and_numbers_are_numbers(
    client, fake_clock, make_user, dangerous, level
):
    login(client, make_user(Role.ADMIN).username)
    response = client.get(f"/dashboard/ranking.xlsx?year=2026&level={level}")
    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(response.data))
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", cell.value
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(FORMULA_PREFIXES), cell.value
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    assert len(rows) == 3
    first_number = 2 if level == "institution" else 3
    for row in rows[1:]:
        assert isinstance(row[0], int | float) and row[0] == int(row[0])  # a number cell (1 or 1.0)
        numbers = [v for v in row[first_number:] if v is not None]
        assert all(isinstance(v, int | float) for v in numbers), row
    fees = first_number + 2
    assert sorted(row[fees] for row in rows[1:]) == [0.99, 1234.56]
    settings = list(workbook.worksheets[1].iter_rows(values_only=True))
    assert len(settings[0]) == 2 and all(isinstance(label, str) for label in settings[0])  # its header
    assert settings[1][1] == 2026  # the year, a number under the header


@pytest.mark.parametrize("path", ["/dashboard/ranking", "/dashboard/ranking.csv", "/dashboard/ranking.xlsx"])
def test_only_the_bureau_sees_the_ranking(client, fake_clock, make_user, path):
    assert client.get(path).status_code == 302
    assert "/login" in client.get(path).headers["Location"]
    for role in (Role.ENTERPRISE, Role.PROVIDER, Role.REVIEWER, Role.FINANCE, Role.ADMIN):
        login(client, make_user(role).username)
        expected = 403 if role in (Role.ENTERPRISE, Role.PROVIDER) else 200
        assert client.get(path).status_code == expected, role
        page = client.get("/account").get_data(as_text=True)
        client.post("/logout", data={"csrf_token": extract_csrf(page)})


def test_the_page_shows_the_ranking_and_survives_bad_parameters(
    client, fake_clock, make_scheme, make_user, dangerous
):
    make_scheme(
        ranking_weights={"hours": "0.7", "samples": "0", "fees": "0.3", "enterprises": "0", "rating": "0"}
    )
    login(client, make_user(Role.REVIEWER).username)
    page = client.get("/dashboard/ranking").get_data(as_text=True)
    assert "=HYPERLINK(&#34;x&#34;)" in page  # escaped by the template, shown as typed
    assert "¥1,234.56" in page and "0.7" in page
    assert "/dashboard/ranking.csv?year=2026&amp;level=institution" in page
    instruments = client.get("/dashboard/ranking?level=instrument&year=2026").get_data(as_text=True)
    assert "(@T-1)" in instruments
    for query in ("year=abc", "year=1999", "year=2101", "level=county", "county=nowhere", "year=-5"):
        response = client.get(f"/dashboard/ranking?{query}")
        assert response.status_code == 200, query
        assert "alert-warning" in response.get_data(as_text=True), query
    for export in ("csv", "xlsx"):
        assert client.get(f"/dashboard/ranking.{export}?year=x&level=y&county=z").status_code == 200
    empty = client.get("/dashboard/ranking?year=2030").get_data(as_text=True)
    assert 'id="no-services"' in empty


def scheme_form(page: str, **weights: str) -> dict:
    data = {
        "csrf_token": extract_csrf(page),
        "year": "2026",
        "name": "2026年度聊城市科技创新券",
        "funds-0-name": "province",
        "funds-0-rate": "0.60",
        "funds-0-budget": "4000000",
        "funds-0-condition": "always",
        "funds-0-enterprise_capped": "y",
        "funds-1-name": "city",
        "funds-1-rate": "0.30",
        "funds-1-budget": "2000000",
        "funds-1-condition": "local_provider",
        "enterprise_cap": "500000",
        "group_cap": "650000",
        "four_eyes_threshold": "50000",
        "voucher_validity_days": "365",
        "service_window_start": "2026-01-01",
        "service_window_end": "2026-12-31",
        "public_notice_days": "7",
        "excluded_service_types": ["statutory_testing", "mandatory_certification"],
        "redemption_modes": ["reimbursement"],
        "redemption_days": "30",
    }
    data.update({f"weight_{key}": value for key, value in weights.items()})
    return data


def test_the_admin_sets_the_weights_on_the_scheme_page(client, fake_clock, make_scheme, make_user):
    make_scheme()
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/review/scheme?year=2026").get_data(as_text=True)
    assert 'name="weight_hours"' in page and 'value="0.25"' in page  # the defaults, filled in

    weights = {"hours": "0.4", "samples": "0", "fees": "0.4", "enterprises": "0.1", "rating": "0.1"}
    assert client.post("/review/scheme", data=scheme_form(page, **weights)).status_code == 302
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == 2026))
    assert scheme.ranking_weights == weights
    assert scheme.ranking_weight_values["hours"] == Decimal("0.4")
    event = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "scheme.saved").order_by(AuditEvent.id.desc())
    ).first()
    assert event.after["ranking_weights"] == weights and event.before["ranking_weights"] is None
    again = client.get("/review/scheme?year=2026").get_data(as_text=True)
    assert 'value="0.4"' in again

    zero = dict.fromkeys(weights, "0")
    response = client.post("/review/scheme", data=scheme_form(again, **zero))
    assert response.status_code == 200 and "alert-danger" in response.get_data(as_text=True)
    too_big = client.post("/review/scheme", data=scheme_form(again, **{**weights, "rating": "1.5"}))
    assert too_big.status_code == 200 and "is-invalid" in too_big.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Scheme, scheme.id).ranking_weights == weights

    # A client that sends no weights at all leaves them as they are.
    assert client.post("/review/scheme", data=scheme_form(again)).status_code == 302
    db.session.expire_all()
    assert db.session.get(Scheme, scheme.id).ranking_weights == weights
