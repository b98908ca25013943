"""Money, time and text helpers: the conversions everything else relies on."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.core.clock import format_local, iso_utc, parse_iso
from portal.core.money import (
    fen_to_wan,
    fen_to_yuan,
    fen_to_yuan_number,
    fen_to_yuan_text,
    format_yuan,
    wan_to_fen,
    yuan_to_fen,
)
from portal.core.text import grams, normalize, query_grams


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("1", 100),
        ("1.5", 150),
        ("1,234.56", 123456),
        (" 300 ", 30000),
        ("0.01", 1),
        (Decimal("2.10"), 210),
    ],
)
def test_yuan_to_fen_is_exact(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1.234", "^at most 2 decimal places$"),
        ("-1", "^must not be negative$"),
        ("abc", "^not a number$"),
        ("nan", "^not a number$"),
        ("1000000000000", "^too large$"),  # exactly the limit is already too large
    ],
)
def test_yuan_to_fen_refuses_bad_amounts(text, reason):
    with pytest.raises(ValueError, match=reason):
        yuan_to_fen(text)


def test_the_largest_amount_below_the_limit_is_accepted():
    assert yuan_to_fen("999999999999.99") == 99_999_999_999_999


def test_wan_round_trip():
    assert wan_to_fen("56.78") == 56_780_000
    assert wan_to_fen("50") == 50_000_000
    assert fen_to_wan(56_780_000) == Decimal("56.78")
    assert fen_to_wan(wan_to_fen("123.4")) == Decimal("123.40")


def test_wan_takes_two_decimals_at_most():
    with pytest.raises(ValueError, match=r"^at most 2 decimal places$"):
        wan_to_fen("1.234")


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (1_000_000, "1.00"),  # a whole 万元 is shown with its two places, as a catalogue file has it
        (56_780_000, "56.78"),
        (1_234, "0.001234"),  # below a hundredth of 万元 every digit is kept, not rounded away
    ],
)
def test_fen_to_wan_keeps_two_places_or_every_digit(fen, text):
    assert str(fen_to_wan(fen)) == text


def test_format_yuan():
    assert format_yuan(123456) == "¥1,234.56"
    assert format_yuan(-5) == "-¥0.05"
    assert format_yuan(0) == "¥0.00"  # zero has no sign
    assert format_yuan(1) == "¥0.01"
    assert format_yuan(None) == ""


@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_the_exports_fast_yuan_are_the_decimal_ones(fen):
    """The exports' yuan without Decimal arithmetic: the same text, and the same double a cell holds."""
    assert fen_to_yuan_text(fen) == str(fen_to_yuan(fen))
    assert fen_to_yuan_number(fen) == float(fen_to_yuan(fen))


@pytest.mark.parametrize(
    ("fen", "text"), [(0, "0.00"), (5, "0.05"), (-5, "-0.05"), (100, "1.00"), (123456, "1234.56")]
)
def test_fen_to_yuan_text(fen, text):
    assert fen_to_yuan_text(fen) == text


def test_a_booking_at_half_past_eleven_at_night_in_shanghai_is_stored_as_utc_and_shown_back():
    stored = parse_iso("2026-03-02T23:30:00+08:00")
    assert stored == datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    assert iso_utc(stored) == "2026-03-02T15:30:00Z"
    assert format_local(stored) == "2026-03-02 23:30"


def test_parse_iso_requires_an_offset():
    with pytest.raises(ValueError, match="offset"):
        parse_iso("2026-03-02T23:30:00")


def test_normalize_folds_width_and_case():
    assert normalize("ＧＣ－ＭＳ  Agilent") == "gc-ms agilent"


def test_every_keyword_substring_has_its_grams_in_the_field():
    field_grams = set(grams(["气相色谱-质谱联用仪", "Agilent 7890B"]))
    for term in ("质谱", "谱", "气相色谱", "7890b", "agilent", "b"):
        assert set(query_grams(term)) <= field_grams
    assert not set(query_grams("液相")) <= field_grams
