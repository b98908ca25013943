"""The subsidy of a claim (DESIGN.md section 6), as one pure function: numbers in, numbers out.

Everything it needs is passed in: the fee, whether the provider is local (and whether it is in the
province at all, with the scheme's rate for a provider outside it), each fund's rate, condition
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
    # A provider outside Shandong (DESIGN section 13): the `local_provider` funds give nothing, and the
    # `always` funds take the scheme's out-of-province rate instead of their own (None: nothing).
    provider_in_province: bool = True
    out_of_province_rate: Decimal | None = None


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


def _rate(data: SubsidyInput, fund: FundRule) -> Decimal | None:
    """The rate this fund applies to these services, or None when it does not apply to them."""
    if not data.provider_in_province:
        return data.out_of_province_rate if fund.condition == ALWAYS else None
    if fund.condition == ALWAYS or (fund.condition == LOCAL_PROVIDER and data.provider_is_local):
        return fund.rate
    return None


def compute_subsidy(data: SubsidyInput) -> Subsidy:
    """The amount per fund and every limit that bound, exactly as DESIGN.md section 6 says."""
    if data.fee_fen < 0:
        raise ValueError("a fee cannot be negative")
    limited: list[str] = []
    raws: list[int] = []
    amounts: list[int] = []
    for fund in data.funds:
        rate = _rate(data, fund)
        raw = raw_amount(data.fee_fen, rate) if rate is not None else 0
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
