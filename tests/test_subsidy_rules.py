"""The subsidy function, case by case: each cap binding alone and together, rounding, the city top-up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.vouchers.rules import LOCAL_PROVIDER, FundRule, SubsidyInput, compute_subsidy, raw_amount

BIG = 10**12  # "no limit" for a case that is not about that limit


def case(
    fee: int,
    *,
    local: bool = True,
    province_budget: int = BIG,
    city_budget: int = BIG,
    enterprise: int = BIG,
    group: int = BIG,
    balance: int = BIG,
    province_rate: str = "0.60",
    city_rate: str = "0.30",
    in_province: bool = True,
    out_of_province_rate: str | None = None,
) -> SubsidyInput:
    return SubsidyInput(
        fee_fen=fee,
        provider_is_local=local,
        funds=(
            FundRule("province", Decimal(province_rate), province_budget, enterprise_capped=True),
            FundRule("city", Decimal(city_rate), city_budget, condition=LOCAL_PROVIDER),
        ),
        enterprise_remaining_fen=enterprise,
        group_remaining_fen=group,
        voucher_balance_fen=balance,
        provider_in_province=in_province,
        out_of_province_rate=Decimal(out_of_province_rate) if out_of_province_rate is not None else None,
    )


# (name, input, province amount, city amount, limited_by)
CASES = [
    ("no limit binds", case(100_000), 60_000, 30_000, ()),
    ("city top-up off: provider outside Liaocheng", case(100_000, local=False), 60_000, 0, ()),
    ("rounds down to the fen", case(999), 599, 299, ()),  # 599.4 and 299.7
    ("one fen fee rounds to nothing", case(1), 0, 0, ()),
    ("zero fee", case(0), 0, 0, ()),
    ("enterprise cap binds alone", case(100_000, enterprise=50_000), 50_000, 30_000, ("enterprise_cap",)),
    ("enterprise cap used up", case(100_000, enterprise=0), 0, 30_000, ("enterprise_cap",)),
    (
        "province budget binds alone",
        case(100_000, province_budget=40_000),
        40_000,
        30_000,
        ("province_budget",),
    ),
    ("city budget binds alone", case(100_000, city_budget=10_000), 60_000, 10_000, ("city_budget",)),
    ("city budget binds but city does not apply", case(100_000, local=False, city_budget=0), 60_000, 0, ()),
    (
        "enterprise cap and province budget bind at the same amount",
        case(100_000, enterprise=45_000, province_budget=45_000),
        45_000,
        30_000,
        ("province_budget", "enterprise_cap"),
    ),
    (
        "the tighter of enterprise cap and province budget is named",
        case(100_000, enterprise=20_000, province_budget=45_000),
        20_000,
        30_000,
        ("enterprise_cap",),
    ),
    (
        "voucher balance takes from the city first",
        case(100_000, balance=70_000),
        60_000,
        10_000,
        ("voucher_balance",),
    ),
    (
        "voucher balance below the province amount",
        case(100_000, balance=50_000),
        50_000,
        0,
        ("voucher_balance",),
    ),
    # A fund with nothing left pays nothing, not a fen.
    ("province budget used up", case(100_000, province_budget=0), 0, 30_000, ("province_budget",)),
    ("city budget used up", case(100_000, city_budget=0), 60_000, 0, ("city_budget",)),
    # A ceiling exactly at the total takes nothing off and is not named as binding.
    ("voucher balance exactly the total", case(100_000, balance=90_000), 60_000, 30_000, ()),
    ("group cap exactly the total", case(100_000, group=90_000), 60_000, 30_000, ()),
    ("enterprise cap exactly the raw amount", case(100_000, enterprise=60_000), 60_000, 30_000, ()),
    ("province budget exactly the raw amount", case(100_000, province_budget=60_000), 60_000, 30_000, ()),
    ("zero voucher balance", case(100_000, balance=0), 0, 0, ("voucher_balance",)),
    ("group cap binds alone", case(100_000, group=80_000), 60_000, 20_000, ("group_cap",)),
    ("group cap used up", case(100_000, group=0), 0, 0, ("group_cap",)),
    (
        "group cap and voucher balance bind at the same amount",
        case(100_000, group=75_000, balance=75_000),
        60_000,
        15_000,
        ("voucher_balance", "group_cap"),
    ),
    (
        "the tighter of balance and group cap is named",
        case(100_000, group=30_000, balance=75_000),
        30_000,
        0,
        ("group_cap",),
    ),
    (
        "every cap binds together",
        case(
            200_000,
            enterprise=100_000,
            province_budget=90_000,
            city_budget=50_000,
            group=120_000,
            balance=130_000,
        ),
        90_000,
        30_000,
        ("province_budget", "city_budget", "group_cap"),
    ),
    (
        "caps below the raw amounts and then the balance",
        case(100_000, enterprise=30_000, city_budget=20_000, balance=40_000),
        30_000,
        10_000,
        ("enterprise_cap", "city_budget", "voucher_balance"),
    ),
    ("a richer city's 40 percent", case(100_000, province_rate="0.40"), 40_000, 30_000, ()),
    ("large fee stays exact", case(123_456_789), 74_074_073, 37_037_036, ()),  # .4 and .7 dropped
    # A provider outside Shandong: the province fund at the scheme's out-of-province rate, never the city.
    (
        "out of province: the scheme's rate",
        case(100_000, in_province=False, out_of_province_rate="0.30"),
        30_000,
        0,
        (),
    ),
    (
        "out of province: never the city, even if marked local",
        case(100_000, local=True, in_province=False, out_of_province_rate="0.30"),
        30_000,
        0,
        (),
    ),
    ("out of province without a rate: nothing", case(100_000, in_province=False), 0, 0, ()),
    (
        "out of province at rate 0: nothing",
        case(100_000, in_province=False, out_of_province_rate="0"),
        0,
        0,
        (),
    ),
    (
        "out of province: its rate rounds down",
        case(999, in_province=False, out_of_province_rate="0.35"),
        349,  # 349.65
        0,
        (),
    ),
    (
        "out of province: the enterprise cap binds as before",
        case(100_000, in_province=False, out_of_province_rate="0.30", enterprise=20_000),
        20_000,
        0,
        ("enterprise_cap",),
    ),
    (
        "out of province: the province budget binds as before",
        case(100_000, in_province=False, out_of_province_rate="0.50", province_budget=10_000),
        10_000,
        0,
        ("province_budget",),
    ),
    (
        "out of province: the balance and group cap bind as before",
        case(100_000, in_province=False, out_of_province_rate="0.50", balance=40_000, group=35_000),
        35_000,
        0,
        ("group_cap",),
    ),
    (
        "out of province: a used-up city budget is not named",
        case(100_000, in_province=False, out_of_province_rate="0.30", city_budget=0),
        30_000,
        0,
        (),
    ),
    (
        "in the province the out-of-province rate is ignored",
        case(100_000, out_of_province_rate="0.10"),
        60_000,
        30_000,
        (),
    ),
    (
        "negative remainders count as zero",
        case(100_000, enterprise=-5, group=-1),
        0,
        0,
        ("enterprise_cap", "group_cap"),
    ),
]


@pytest.mark.parametrize(("name", "data", "province", "city", "limited"), CASES, ids=[c[0] for c in CASES])
def test_subsidy(name, data, province, city, limited):
    result = compute_subsidy(data)
    assert (result.amount("province"), result.amount("city")) == (province, city)
    assert result.total_fen == province + city
    assert result.limited_by == limited
    assert [f.fund for f in result.funds] == ["province", "city"]
    assert result.fee_fen == data.fee_fen


def test_a_fund_the_scheme_does_not_have_pays_nothing():
    assert compute_subsidy(case(100_000)).amount("county") == 0


def test_raw_amounts_are_reported_before_the_limits():
    result = compute_subsidy(case(100_000, balance=50_000, local=False))
    assert [(f.fund, f.raw_fen, f.amount_fen) for f in result.funds] == [
        ("province", 60_000, 50_000),
        ("city", 0, 0),
    ]


def test_the_total_never_exceeds_any_ceiling():
    import random

    rng = random.Random(6)
    for _ in range(2000):
        data = case(
            rng.randint(0, 10**8),
            local=rng.random() < 0.7,
            province_budget=rng.randint(0, 10**8),
            city_budget=rng.randint(0, 10**8),
            enterprise=rng.randint(0, 10**8),
            group=rng.randint(0, 10**8),
            balance=rng.randint(0, 10**8),
        )
        result = compute_subsidy(data)
        p, c = result.amount("province"), result.amount("city")
        assert (
            0
            <= p
            <= min(
                raw_amount(data.fee_fen, Decimal("0.60")),
                data.enterprise_remaining_fen,
                data.funds[0].remaining_budget_fen,
            )
        )
        assert 0 <= c <= data.funds[1].remaining_budget_fen
        assert p + c <= min(data.voucher_balance_fen, data.group_remaining_fen)


def test_out_of_province_raw_amounts():
    result = compute_subsidy(case(100_000, in_province=False, out_of_province_rate="0.25"))
    assert [(f.fund, f.raw_fen, f.amount_fen) for f in result.funds] == [
        ("province", 25_000, 25_000),
        ("city", 0, 0),
    ]


def test_an_out_of_province_rate_must_be_a_decimal():
    data = case(100_000, in_province=False)
    with pytest.raises(TypeError, match=r"^rates are Decimals, never floats$"):
        compute_subsidy(
            SubsidyInput(**{**data.__dict__, "out_of_province_rate": 0.3})  # type: ignore[arg-type]
        )


def test_out_of_province_never_gets_the_city_and_stays_within_its_rate():
    import random

    rng = random.Random(21)
    for _ in range(1000):
        rate = rng.choice([None, "0", "0.15", "0.30", "0.60", "1"])
        data = case(
            rng.randint(0, 10**8),
            local=rng.random() < 0.5,
            in_province=False,
            out_of_province_rate=rate,
            province_budget=rng.randint(0, 10**8),
            enterprise=rng.randint(0, 10**8),
            group=rng.randint(0, 10**8),
            balance=rng.randint(0, 10**8),
        )
        result = compute_subsidy(data)
        assert result.amount("city") == 0
        ceiling = raw_amount(data.fee_fen, Decimal(rate)) if rate is not None else 0
        assert 0 <= result.amount("province") <= ceiling


def test_rates_must_be_decimals():
    with pytest.raises(TypeError, match=r"^rates are Decimals, never floats$"):
        raw_amount(100, 0.6)


def test_a_negative_fee_is_refused():
    with pytest.raises(ValueError, match=r"^a fee cannot be negative$"):
        compute_subsidy(case(-1))
