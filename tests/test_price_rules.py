"""Price tables: the row each customer pays in each mode, minimum units, quantity steps, overtime.

The rules are pure functions (portal.catalog.prices); the table editing runs on both backends.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.catalog import prices
from portal.catalog.prices import Price, Step, choose_price, customer_category, fee_for
from portal.core.errors import ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db

FULL_TABLE = [
    Price(customer, mode, "sample" if mode == "sample" else "hour", fen)
    for customer, base in (
        ("internal", 100_00),
        ("academic", 200_00),
        ("enterprise", 400_00),
        ("sme", 300_00),
    )
    for mode, fen in (("self", base), ("staff", base + 50_00), ("sample", base // 2))
]
ENTERPRISE_ONLY = [
    Price("enterprise", "self", "hour", 400_00),
    Price("enterprise", "sample", "sample", 90_00),
]


@pytest.mark.parametrize(
    ("own", "academic", "sme", "category"),
    [
        (True, True, True, "internal"),
        (True, False, False, "internal"),
        (False, True, True, "academic"),
        (False, False, True, "sme"),
        (False, False, False, "enterprise"),
    ],
)
def test_the_customer_category(own, academic, sme, category):
    assert customer_category(own_institution=own, academic=academic, verified_sme=sme) == category


@pytest.mark.parametrize(
    ("table", "customer", "mode", "tier", "unit_price"),
    [
        (FULL_TABLE, "internal", "self", "internal", 100_00),
        (FULL_TABLE, "internal", "staff", "internal", 150_00),
        (FULL_TABLE, "internal", "sample", "internal", 50_00),
        (FULL_TABLE, "academic", "self", "academic", 200_00),
        (FULL_TABLE, "academic", "staff", "academic", 250_00),
        (FULL_TABLE, "academic", "sample", "academic", 100_00),
        (FULL_TABLE, "enterprise", "self", "enterprise", 400_00),
        (FULL_TABLE, "enterprise", "staff", "enterprise", 450_00),
        (FULL_TABLE, "enterprise", "sample", "enterprise", 200_00),
        (FULL_TABLE, "sme", "self", "sme", 300_00),
        (FULL_TABLE, "sme", "staff", "sme", 350_00),
        (FULL_TABLE, "sme", "sample", "sme", 150_00),
        # a category without a row of its own pays its wider category's price
        (ENTERPRISE_ONLY, "sme", "self", "enterprise", 400_00),
        (ENTERPRISE_ONLY, "internal", "self", "enterprise", 400_00),
        (ENTERPRISE_ONLY, "academic", "sample", "enterprise", 90_00),
        (FULL_TABLE[3:], "internal", "self", "academic", 200_00),
    ],
)
def test_the_row_each_customer_pays(table, customer, mode, tier, unit_price):
    price = choose_price(table, customer, mode)
    assert (price.customer, price.mode, price.unit_price_fen) == (tier, mode, unit_price)


def test_a_mode_without_any_price_has_none():
    assert choose_price(ENTERPRISE_ONLY, "sme", "staff") is None


def test_an_instrument_without_a_table_uses_its_published_fees_as_the_enterprise_price():
    table = prices.legacy_prices(250_00, 80_00)
    assert [(p.customer, p.mode, p.unit, p.unit_price_fen) for p in table] == [
        ("enterprise", "self", "hour", 250_00),
        ("enterprise", "staff", "hour", 250_00),
        ("enterprise", "sample", "sample", 80_00),
    ]
    assert prices.legacy_prices(None, None) == []


HOURLY = Price("enterprise", "self", "hour", 100_00, min_units=2, overtime_unit_price_fen=150_00)
SAMPLES = Price(
    "enterprise", "sample", "sample", 100_00, min_units=3, steps=(Step(11, 80_00), Step(51, 50_00))
)


@pytest.mark.parametrize(
    ("price", "used", "booked", "fee"),
    [
        # minimum billable units
        (HOURLY, Decimal("0.5"), Decimal(1), 200_00),
        (HOURLY, Decimal(2), Decimal(2), 200_00),
        (HOURLY, Decimal("2.5"), Decimal(3), 250_00),
        # overtime: hours beyond the booked ones at the overtime price
        (HOURLY, Decimal(4), Decimal(3), 300_00 + 150_00),
        (HOURLY, Decimal("3.25"), Decimal(3), 300_00 + 37_50),
        (HOURLY, Decimal(4), None, 400_00),
        # no overtime price: the ordinary one
        (Price("enterprise", "self", "hour", 100_00), Decimal(4), Decimal(3), 400_00),
        # quantity steps are graduated: units 11-50 at 80, from 51 at 50
        (SAMPLES, 1, None, 300_00),
        (SAMPLES, 10, None, 1000_00),
        (SAMPLES, 11, None, 1000_00 + 80_00),
        (SAMPLES, 50, None, 1000_00 + 40 * 80_00),
        (SAMPLES, 60, None, 1000_00 + 40 * 80_00 + 10 * 50_00),
        # rounding half up to the fen
        (Price("enterprise", "self", "hour", 333), Decimal("0.5"), None, 167),
    ],
)
def test_fees(price, used, booked, fee):
    assert fee_for(price, used, booked) == fee


def test_one_more_sample_never_costs_less():
    fees = [fee_for(SAMPLES, n) for n in range(1, 80)]
    assert fees == sorted(fees)


def test_a_frozen_price_survives_its_json():
    assert Price.from_json(SAMPLES.as_json()) == SAMPLES
    assert Price.from_json(HOURLY.as_json()) == HOURLY


# --- the table of an instrument (both backends) -----------------------------------------------------


def test_the_owning_provider_replaces_the_table_and_it_is_audited(app, make_instrument, make_user):
    instrument = make_instrument()
    provider = make_user(Role.PROVIDER, institution=instrument.institution)
    rows = [p.as_json() for p in FULL_TABLE]
    table = prices.set_price_table(provider, instrument.code, rows)
    assert len(table) == 12
    assert prices.price_for(instrument, "sme", "staff").unit_price_fen == 350_00
    event = db.session.query(AuditEvent).filter_by(action="instrument.prices_changed").one()
    assert event.actor_id == provider.id and len(event.after["prices"]) == 12


def test_a_foreign_provider_cannot_see_the_table_to_edit(app, make_instrument, make_user):
    from portal.core.errors import NotFound

    instrument = make_instrument()
    stranger = make_user(Role.PROVIDER)
    with pytest.raises(NotFound):
        prices.set_price_table(stranger, instrument.code, [])


@pytest.mark.parametrize(
    "row",
    [
        {"customer": "alien", "mode": "self", "unit": "hour", "unit_price_fen": 1},
        {"customer": "sme", "mode": "self", "unit": "hour", "unit_price_fen": -1},
        {"customer": "sme", "mode": "sample", "unit": "hour", "unit_price_fen": 1},
        {
            "customer": "sme",
            "mode": "sample",
            "unit": "sample",
            "unit_price_fen": 1,
            "steps": [{"from_units": 1, "unit_price_fen": 1}],
        },
        {"customer": "sme", "mode": "self", "unit": "hour"},
    ],
)
def test_bad_rows_are_refused_and_nothing_changes(app, make_instrument, make_user, row):
    instrument = make_instrument()
    admin = make_user(Role.ADMIN)
    with pytest.raises(ValidationFailed):
        prices.set_price_table(admin, instrument.code, [row])
    assert prices.price_rows(instrument) == []


def test_a_category_and_mode_priced_twice_is_refused(app, make_instrument, make_user):
    instrument = make_instrument()
    admin = make_user(Role.ADMIN)
    row = FULL_TABLE[0].as_json()
    with pytest.raises(ValidationFailed):
        prices.set_price_table(admin, instrument.code, [row, row])
