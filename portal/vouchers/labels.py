"""What the vouchers area's states, kinds, limits and funds are called on the pages, and its audit
actions (kept apart from the models, which say what they are)."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal.core.audit import ACTION_LABELS, OBJECT_LABELS
from portal.extensions import db
from portal.vouchers.models import (
    ApplicationState,
    ClaimState,
    Fund,
    FundCondition,
    LedgerKind,
    RedemptionMode,
    RelationKind,
    RequestState,
    Scheme,
    fund_label,
)

CONDITION_LABELS = {
    FundCondition.ALWAYS: _l("Always"),
    FundCondition.LOCAL_PROVIDER: _l("Only when the provider is in Liaocheng"),
}


REDEMPTION_MODE_LABELS = {
    RedemptionMode.REIMBURSEMENT: _l("Reimbursement: the enterprise pays the whole fee and claims"),
    RedemptionMode.AT_PAYMENT: _l("At payment: the enterprise pays its share, the provider redeems"),
}


RELATION_LABELS = {
    RelationKind.INVESTOR: _l("Invests in the provider"),
    RelationKind.INVESTEE: _l("Invested in by the provider"),
    RelationKind.AFFILIATE: _l("Affiliated (subordinate)"),
    RelationKind.CO_BUILT: _l("Jointly built"),
    RelationKind.PROPERTY_TIE: _l("Property ties"),
}


LEDGER_LABELS = {
    LedgerKind.ISSUED: _l("Voucher issued"),
    LedgerKind.COMMITTED: _l("Subsidy approved"),
    LedgerKind.RELEASED: _l("Unused balance released"),
    LedgerKind.PAID: _l("Subsidy paid"),
    LedgerKind.RESERVED: _l("Reserved at payment"),
    LedgerKind.UNRESERVED: _l("Reservation released"),
}


CLAIM_STATE_LABELS = {
    ClaimState.DRAFT: _l("Draft"),
    ClaimState.SUBMITTED: _l("Submitted"),
    ClaimState.PENDING_SECOND: _l("Awaiting second review"),
    ClaimState.RETURNED: _l("Returned for correction"),
    ClaimState.REJECTED: _l("Rejected"),
    ClaimState.IN_NOTICE: _l("Approved, in public notice"),
    ClaimState.PAYABLE: _l("Payable"),
    ClaimState.PAID: _l("Paid"),
    ClaimState.RESERVED: _l("Reserved, awaiting the provider's submission"),
    ClaimState.WITHDRAWN: _l("Withdrawn, reservation released"),
    ClaimState.EXPIRED: _l("Expired, reservation released"),
}
APPLICATION_STATE_LABELS = {
    ApplicationState.SUBMITTED: _l("Submitted"),
    ApplicationState.PENDING_SECOND: _l("Awaiting second review"),
    ApplicationState.APPROVED: _l("Approved"),
    ApplicationState.REJECTED: _l("Rejected"),
    ApplicationState.RETURNED: _l("Returned for correction"),
}
REQUEST_STATE_LABELS = {
    RequestState.SUBMITTED: _l("Submitted"),
    RequestState.VERIFIED: _l("Verified"),
    RequestState.REJECTED: _l("Rejected"),
}
ACTION_LABELS.update(
    {
        "verification.submitted": _l("Verification requested"),
        "enterprise.verified": _l("Enterprise verified"),
        "enterprise.rejected": _l("Verification rejected"),
        "enterprise.relation_declared": _l("Relation with a provider declared"),
        "voucher_application.submitted": _l("Application submitted"),
        "voucher_application.pending_second": _l("Approved once, awaiting a second reviewer"),
        "voucher_application.approved": _l("Voucher approved and issued"),
        "voucher_application.rejected": _l("Application rejected"),
        "voucher_application.returned": _l("Returned for correction"),
        "voucher.expired": _l("Voucher expired, unused balance released"),
        "claim.created": _l("Draft created"),
        "claim.submitted": _l("Submitted to the bureau"),
        "claim.pending_second": _l("Approved once, awaiting a second reviewer"),
        "claim.in_notice": _l("Approved, public notice begins"),
        "claim.returned": _l("Returned for correction"),
        "claim.rejected": _l("Rejected"),
        "claim.payable": _l("Public notice ended: payable"),
        "claim.deleted": _l("Draft deleted"),
        "claim.revised": _l("Corrected by the enterprise"),
        "claim.reserved": _l("Subsidy reserved at payment"),
        "claim.withdrawn": _l("Reservation withdrawn by the provider"),
        "claim.expired": _l("Reservation expired and released"),
        "scheme.saved": _l("Scheme saved"),
    }
)
OBJECT_LABELS.update(
    {
        "voucher_application": _l("Voucher application"),
        "voucher": _l("Voucher"),
        "claim": _l("Claim"),
        "scheme": _l("Scheme"),
    }
)


class _LimitLabels(dict[str, Any]):
    """The limits a subsidy can be bound by; "<fund>_budget" is the budget of that fund, by its label."""

    def __missing__(self, name: str) -> str:
        fund, _sep, suffix = name.rpartition("_")
        if suffix != "budget" or not fund:
            raise KeyError(name)
        return gettext("the budget of %(fund)s", fund=fund_labels().get(fund, fund))


LIMIT_LABELS = _LimitLabels(
    {
        "enterprise_cap": _l("the enterprise's yearly provincial cap"),
        "group_cap": _l("the controller group's yearly cap"),
        "voucher_balance": _l("the voucher balance"),
        "scheme_budget": _l("the scheme's budget"),
    }
)


class FundLabels:
    """The pages' `fund_labels`: each fund's label, read from the schemes at the first question only;
    each render gets a fresh one (`portal.vouchers.init_app`), so a page queries once, not per fund."""

    def __init__(self) -> None:
        self._labels: dict[str, str] | None = None

    def get(self, name: str, default: str | None = None) -> str:
        if self._labels is None:
            self._labels = fund_labels()
        return self._labels.get(name, name if default is None else default)

    def __getitem__(self, name: str) -> str:
        return self.get(name)


def fund_labels() -> dict[str, str]:
    """Every fund name of every scheme with its label (the latest scheme's where years differ)."""
    rows = db.session.execute(
        select(Fund.name, Fund.label)
        .join(Scheme, Scheme.id == Fund.scheme_id)
        .order_by(Scheme.year, Fund.position)
    )
    return {name: fund_label(name, label) for name, label in rows}


# The admin console's scheme action (its settings page records "scheme.saved").
ACTION_LABELS["scheme.copied"] = _l("Next year's scheme made from this year's")
