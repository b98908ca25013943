"""The subsidy of a claim (DESIGN.md section 6), as one pure function: numbers in, numbers out.

Everything it needs is passed in: the fee, whether the provider is local, each fund's rate, condition
and remaining budget, the enterprise's remaining provincial cap, the controller group's remaining
cap and the voucher's balance. It reads nothing and writes nothing, so the review desk, the preview
and the approval all compute the same amounts, and a table of cases can test it exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

ALWAYS = "always"
LOCAL_PROVIDER = "local_provider"


@dataclass(frozen=True)
class FundRule:
    """One fund source of the scheme, in the scheme's order."""

    name: str
    rate: Decimal
    remaining_budget_fen: int
    condition: str = ALWAYS
    # A fund may also be bounded by the enterprise's yearly cap (the published scheme's provincial fund).
    enterprise_capped: bool = False


@dataclass(frozen=True)
class SubsidyInput:
    fee_fen: int
    provider_is_local: bool
    funds: tuple[FundRule, ...]
    enterprise_remaining_fen: int
    group_remaining_fen: int
    voucher_balance_fen: int


@dataclass(frozen=True)
class FundAmount:
    fund: str
    raw_fen: int
    amount_fen: int


@dataclass(frozen=True)
class Subsidy:
    fee_fen: int
    funds: tuple[FundAmount, ...]
    limited_by: tuple[str, ...]

    @property
    def total_fen(self) -> int:
        return sum(f.amount_fen for f in self.funds)

    def amount(self, fund: str) -> int:
        return next((f.amount_fen for f in self.funds if f.fund == fund), 0)


def raw_amount(fee_fen: int, rate: Decimal) -> int:
    """floor(F x rate) to the fen; the rate is an exact decimal, never a float."""
    if isinstance(rate, float):
        raise TypeError("rates are Decimals, never floats")
    return int((Decimal(fee_fen) * rate).to_integral_value(rounding=ROUND_FLOOR))


def compute_subsidy(data: SubsidyInput) -> Subsidy:
    """The amount per fund and every limit that bound, exactly as DESIGN.md section 6 says."""
    if data.fee_fen < 0:
        raise ValueError("a fee cannot be negative")
    limited: list[str] = []
    raws: list[int] = []
    amounts: list[int] = []
    for fund in data.funds:
        applies = fund.condition == ALWAYS or (fund.condition == LOCAL_PROVIDER and data.provider_is_local)
        raw = raw_amount(data.fee_fen, fund.rate) if applies else 0
        budget = max(0, fund.remaining_budget_fen)
        limits = {f"{fund.name}_budget": budget}
        if fund.enterprise_capped:
            limits["enterprise_cap"] = max(0, data.enterprise_remaining_fen)
        amount = min(raw, *limits.values())
        limited += [name for name, value in limits.items() if value < raw and value == amount]
        raws.append(raw)
        amounts.append(amount)

    # The voucher balance and the controller group's cap bound the total; the excess comes off the
    # later funds first (the last of the scheme's order first).
    ceilings = {
        "voucher_balance": max(0, data.voucher_balance_fen),
        "group_cap": max(0, data.group_remaining_fen),
    }
    total = sum(amounts)
    ceiling = min(ceilings.values())
    if total > ceiling:
        limited += [name for name, value in ceilings.items() if value == ceiling]
        excess = total - ceiling
        for index in reversed(range(len(amounts))):
            cut = min(excess, amounts[index])
            amounts[index] -= cut
            excess -= cut
    return Subsidy(
        fee_fen=data.fee_fen,
        funds=tuple(FundAmount(f.name, r, a) for f, r, a in zip(data.funds, raws, amounts, strict=True)),
        limited_by=tuple(limited),
    )
