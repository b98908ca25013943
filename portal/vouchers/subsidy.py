"""What a claim would get now: the subsidy rules applied to the current budgets, caps and balance."""

from __future__ import annotations

from sqlalchemy import and_, or_, select

from portal.accounts.models import Enterprise
from portal.booking.models import ServiceRecord
from portal.core.database import insert_ignore
from portal.core.locks import Rank, lock_where
from portal.extensions import db
from portal.vouchers.models import CapLedger, Scheme, Voucher, VoucherState
from portal.vouchers.rules import FundRule, Subsidy, SubsidyInput, compute_subsidy


def _cap_used(scheme: Scheme, scope: str, key: str) -> int:
    used = db.session.scalar(
        select(CapLedger.used_fen).where(
            CapLedger.scheme_id == scheme.id, CapLedger.scope == scope, CapLedger.key == key
        )
    )
    return used or 0


def lock_caps(scheme: Scheme, enterprise: Enterprise) -> tuple[CapLedger, CapLedger]:
    """The enterprise's and its controller group's cap rows (made at first use), locked in one step."""
    keys = {"enterprise": str(enterprise.id), "group": enterprise.group_key}
    for scope, key in keys.items():
        insert_ignore(CapLedger, {"scheme_id": scheme.id, "scope": scope, "key": key, "used_fen": 0})
    rows = lock_where(
        Rank.CAPS,
        CapLedger,
        CapLedger.scheme_id == scheme.id,
        or_(*(and_(CapLedger.scope == scope, CapLedger.key == key) for scope, key in keys.items())),
        order_by=CapLedger.scope,  # "enterprise" before "group", as the lock order says
    )
    caps = {row.scope: row for row in rows}
    return caps["enterprise"], caps["group"]


def subsidy_for(
    enterprise: Enterprise,
    scheme: Scheme,
    voucher: Voucher,
    fee_fen: int,
    provider_is_local: bool,
    provider_in_province: bool = True,
) -> Subsidy:
    """The subsidy these services would get now, from the current remaining budgets, caps and balance
    (a provider outside the province: at the scheme's out-of-province rate, never the city's)."""
    funds = sorted(scheme.funds, key=lambda f: f.position)
    return compute_subsidy(
        SubsidyInput(
            fee_fen=fee_fen,
            provider_is_local=provider_is_local,
            funds=tuple(
                FundRule(f.name, f.rate, f.free_fen, f.condition.value, f.enterprise_capped) for f in funds
            ),
            enterprise_remaining_fen=scheme.enterprise_cap_fen
            - _cap_used(scheme, "enterprise", str(enterprise.id)),
            group_remaining_fen=scheme.group_cap_fen - _cap_used(scheme, "group", enterprise.group_key),
            voucher_balance_fen=voucher.balance_fen if voucher.state is VoucherState.ACTIVE else 0,
            provider_in_province=provider_in_province,
            out_of_province_rate=scheme.out_of_province_rate,
        )
    )


def local_provider(records: list[ServiceRecord]) -> bool:
    return all(r.booking.instrument.institution.is_local for r in records)


def in_province_provider(records: list[ServiceRecord]) -> bool:
    """Whether these services' provider is in Shandong (False: an out-of-province provider, which
    a reimbursement claim may use only with a justification, and at payment not at all)."""
    return all(r.booking.instrument.institution.in_province for r in records)
