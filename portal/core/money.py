"""Money is integer fen (分). These are the only conversions between fen and yuan text."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, InvalidOperation

FEN_PER_YUAN = 100
FEN_PER_WAN = 1_000_000  # 1 万元 = 10,000 yuan
# Larger amounts are typing errors (or attacks): a trillion is beyond any budget, and even in 万元
# it keeps fen inside the database's 64-bit integers and Decimal's 28 digits.
MAX_AMOUNT = Decimal(10) ** 12


def _decimal(text: str | int | Decimal, places: int) -> Decimal:
    try:
        value = Decimal(str(text).strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not value.is_finite():
        raise ValueError("not a number")
    if value < 0:
        raise ValueError("must not be negative")
    if value >= MAX_AMOUNT:
        raise ValueError("too large")
    if value != value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN):
        raise ValueError(f"at most {places} decimal places")
    return value


def yuan_to_fen(text: str | int | Decimal) -> int:
    """'1,234.5' yuan -> 123450 fen; more than two decimals or a negative amount is an error."""
    return int(_decimal(text, 2) * FEN_PER_YUAN)


def wan_to_fen(text: str | int | Decimal) -> int:
    """'56.78' in 10,000 yuan (万元) -> fen; at most two decimals."""
    return int(_decimal(text, 2) * FEN_PER_WAN)


def fen_to_yuan(fen: int) -> Decimal:
    """Exact yuan as a Decimal with two places."""
    return (Decimal(fen) / FEN_PER_YUAN).quantize(Decimal("0.01"))


def fen_to_yuan_text(fen: int) -> str:
    """str(fen_to_yuan(fen)) without Decimal arithmetic: 123450 -> '1234.50' (an export writes
    millions of them)."""
    units, cents = divmod(abs(fen), FEN_PER_YUAN)
    return f"{'-' if fen < 0 else ''}{units}.{cents:02d}"


def fen_to_yuan_number(fen: int) -> float:
    """The yuan as the double a spreadsheet cell holds: the nearest double to the exact amount, the
    same as float(fen_to_yuan(fen)) (both round the same fraction once)."""
    return fen / FEN_PER_YUAN


def fen_to_wan(fen: int) -> Decimal:
    """Exact 万元 as a Decimal; keeps the digits a catalogue file needs."""
    value = Decimal(fen) / FEN_PER_WAN
    return value.quantize(Decimal("0.01")) if value == value.quantize(Decimal("0.01")) else value


def format_yuan(fen: int | None) -> str:
    """123450 -> '¥1,234.50' (the one way money is shown)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{fen_to_yuan(abs(fen)):,.2f}"
