"""Innovation vouchers: yearly schemes and their funds, verification, applications, vouchers, claims."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from flask_babel import gettext
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.accounts.models import Enterprise, EnterpriseKind, Institution, User
from portal.booking.models import ServiceRecord
from portal.core.clock import current_time
from portal.core.types import UTCDateTime, str_enum
from portal.extensions import Model


class FundCondition(StrEnum):
    ALWAYS = "always"
    LOCAL_PROVIDER = "local_provider"


def fund_label(name: str, label: str = "") -> str:
    """A fund's label as people read it: translated when it is a text of the catalogue (the demo's
    are), as typed otherwise, and the fund's name when it has none."""
    return gettext(label) if label else name


class RedemptionMode(StrEnum):
    """How a voucher pays (DESIGN section 13): the enterprise pays the whole fee and claims the subsidy
    back, or it pays only its share and the provider redeems the subsidised part."""

    REIMBURSEMENT = "reimbursement"
    AT_PAYMENT = "at_payment"


# How much each measure counts in the providers' yearly ranking when a scheme sets none.
DEFAULT_RANKING_WEIGHTS: dict[str, Decimal] = {
    "hours": Decimal("0.25"),
    "samples": Decimal("0.15"),
    "fees": Decimal("0.25"),
    "enterprises": Decimal("0.2"),
    "rating": Decimal("0.15"),
}


class Scheme(Model):
    """One year's voucher programme with its published numbers (never hard-coded elsewhere)."""

    __tablename__ = "schemes"

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(120))
    # The provincial subsidy an enterprise can get in the year.
    enterprise_cap_fen: Mapped[int] = mapped_column(BigInteger)
    # Province plus city, for all enterprises with the same actual controller together.
    group_cap_fen: Mapped[int] = mapped_column(BigInteger)
    voucher_validity_days: Mapped[int] = mapped_column(Integer)
    service_window_start: Mapped[date] = mapped_column(Date)
    service_window_end: Mapped[date] = mapped_column(Date)
    public_notice_days: Mapped[int] = mapped_column(SmallInteger)
    # Decisions above this amount need a second reviewer (four eyes).
    four_eyes_threshold_fen: Mapped[int] = mapped_column(BigInteger)
    excluded_service_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A claim's hours must be metered at the instrument (check hours_above_usage), not only not above.
    metering_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # Voucher quotas currently allocated (issued minus released).
    allocated_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # The providers' ranking weights as decimal strings (JSON numbers would be floats); None = defaults.
    ranking_weights: Mapped[dict[str, str] | None] = mapped_column(JSON)
    # The redemption modes the scheme offers (RedemptionMode values); with both, the enterprise
    # chooses per booking.
    redemption_modes: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: [RedemptionMode.REIMBURSEMENT.value]
    )
    # The rate of the `always` funds for a provider outside Shandong; None: no such service is subsidised.
    out_of_province_rate: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))
    # An at-payment reservation not submitted (or a returned one not resubmitted) within these days
    # of its reservation expires and is released.
    redemption_days: Mapped[int] = mapped_column(SmallInteger, default=30, server_default="30")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    funds: Mapped[list[Fund]] = relationship(back_populates="scheme", order_by="Fund.position")

    __table_args__ = (
        CheckConstraint("service_window_start <= service_window_end", name="window_order"),
        CheckConstraint(
            "enterprise_cap_fen >= 0 AND group_cap_fen >= 0 AND allocated_fen >= 0", name="amounts"
        ),
        CheckConstraint(
            "out_of_province_rate IS NULL OR (out_of_province_rate >= 0 AND out_of_province_rate <= 1)",
            name="out_of_province_rate_range",
        ),
        CheckConstraint("redemption_days > 0", name="redemption_days_positive"),
    )

    def offers(self, mode: RedemptionMode) -> bool:
        return mode.value in (self.redemption_modes or [])

    @property
    def budget_fen(self) -> int:
        return sum(f.budget_fen for f in self.funds)

    @property
    def unallocated_fen(self) -> int:
        return self.budget_fen - self.allocated_fen

    @property
    def ranking_weight_values(self) -> dict[str, Decimal]:
        """The ranking weights as Decimals, each measure the scheme does not set taking its default."""
        stored = self.ranking_weights or {}
        return {
            key: Decimal(str(stored.get(key, default))) for key, default in DEFAULT_RANKING_WEIGHTS.items()
        }

    def __repr__(self) -> str:
        return f"<Scheme {self.year}>"


class Fund(Model):
    """A fund source of a scheme: its name (the key claims, tallies and the API use), label, rate,
    condition and budget. A scheme has as many as its configuration says, in `position` order."""

    __tablename__ = "funds"

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(20))
    # What people read; a text of the translation catalogue is shown translated (see `fund_label`).
    label: Mapped[str] = mapped_column(String(60), default="", server_default="")
    position: Mapped[int] = mapped_column(SmallInteger)
    rate: Mapped[Decimal] = mapped_column(Numeric(5, 4))
    condition: Mapped[FundCondition] = mapped_column(str_enum(FundCondition))
    enterprise_capped: Mapped[bool] = mapped_column(Boolean, default=False)
    budget_fen: Mapped[int] = mapped_column(BigInteger)
    # Approved claim amounts (paid ones included); paid_fen is the part already paid out.
    committed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Held by at-payment redemptions that are not yet approved (approval moves it to committed).
    reserved_fen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    scheme: Mapped[Scheme] = relationship(back_populates="funds")

    __table_args__ = (
        UniqueConstraint("scheme_id", "name", name="uq_funds_scheme_name"),
        CheckConstraint("rate >= 0 AND rate <= 1", name="rate_range"),
        CheckConstraint(
            "committed_fen >= 0 AND reserved_fen >= 0 AND committed_fen + reserved_fen <= budget_fen",
            name="within_budget",
        ),
        CheckConstraint("paid_fen >= 0 AND paid_fen <= committed_fen", name="paid_within_committed"),
    )

    @property
    def free_fen(self) -> int:
        return self.budget_fen - self.committed_fen - self.reserved_fen

    @property
    def display_label(self) -> str:
        return fund_label(self.name, self.label)

    def __repr__(self) -> str:
        return f"<Fund {self.name} {self.rate}>"


class CapLedger(Model):
    """How much of a yearly cap is used: per enterprise (provincial) or per controller group (total).

    Approvals lock the row before they compute, so two reviewers can never both spend the last of a cap.
    """

    __tablename__ = "cap_ledgers"

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(12))  # "enterprise" or "group"
    key: Mapped[str] = mapped_column(String(80))
    used_fen: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        UniqueConstraint("scheme_id", "scope", "key", name="uq_cap_ledgers_scheme_scope_key"),
        CheckConstraint("used_fen >= 0", name="used_not_negative"),
    )

    def __repr__(self) -> str:
        return f"<CapLedger {self.scope}:{self.key} {self.used_fen}>"


class RequestState(StrEnum):
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    REJECTED = "rejected"


class VerificationRequest(Model):
    """What an enterprise submits to be verified: its type, evidence and actual controller."""

    __tablename__ = "verification_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    kind: Mapped[EnterpriseKind] = mapped_column(str_enum(EnterpriseKind))
    tech_sme_number: Mapped[str | None] = mapped_column(String(40))
    actual_controller: Mapped[str] = mapped_column(String(120))
    certificate_name: Mapped[str | None] = mapped_column(String(200))
    certificate_stored: Mapped[str | None] = mapped_column(String(80), unique=True)
    certificate_type: Mapped[str | None] = mapped_column(String(40))
    certificate_size: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[RequestState] = mapped_column(
        str_enum(RequestState), default=RequestState.SUBMITTED, index=True
    )
    submitted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    # A legacy credit code that fails the checksum passes only with this, recorded with a reason.
    uscc_override: Mapped[bool] = mapped_column(Boolean, default=False)

    enterprise: Mapped[Enterprise] = relationship()
    submitted_by: Mapped[User] = relationship(foreign_keys=[submitted_by_id])

    def __repr__(self) -> str:
        return f"<VerificationRequest {self.id} {self.state}>"


class RelationKind(StrEnum):
    INVESTOR = "investor"
    INVESTEE = "investee"
    AFFILIATE = "affiliate"
    CO_BUILT = "co_built"
    PROPERTY_TIE = "property_tie"


class EnterpriseRelation(Model):
    """A declared relation between an enterprise and a host institution (related-party services)."""

    __tablename__ = "enterprise_relations"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    kind: Mapped[RelationKind] = mapped_column(str_enum(RelationKind))
    declared_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    institution: Mapped[Institution] = relationship()

    __table_args__ = (
        UniqueConstraint("enterprise_id", "institution_id", name="uq_enterprise_relations_pair"),
    )

    def __repr__(self) -> str:
        return f"<EnterpriseRelation {self.enterprise_id}-{self.institution_id} {self.kind}>"


class ApplicationState(StrEnum):
    SUBMITTED = "submitted"
    PENDING_SECOND = "pending_second"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"


class VoucherApplication(Model):
    """An enterprise's request for the year's voucher quota, with a short plan."""

    __tablename__ = "voucher_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    plan: Mapped[str] = mapped_column(Text)
    state: Mapped[ApplicationState] = mapped_column(
        str_enum(ApplicationState), default=ApplicationState.SUBMITTED, index=True
    )
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    first_reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    first_amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)

    enterprise: Mapped[Enterprise] = relationship()
    scheme: Mapped[Scheme] = relationship()
    voucher: Mapped[Voucher | None] = relationship(back_populates="application")

    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)

    def __repr__(self) -> str:
        return f"<VoucherApplication {self.id} {self.state}>"


class VoucherState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"


class Voucher(Model):
    """An approved quota: claims draw on its balance until it expires and the rest returns to the budget."""

    __tablename__ = "vouchers"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"))
    application_id: Mapped[int] = mapped_column(ForeignKey("voucher_applications.id"), unique=True)
    quota_fen: Mapped[int] = mapped_column(BigInteger)
    balance_fen: Mapped[int] = mapped_column(BigInteger)
    released_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    valid_until: Mapped[date] = mapped_column(Date)
    state: Mapped[VoucherState] = mapped_column(
        str_enum(VoucherState), default=VoucherState.ACTIVE, index=True
    )

    enterprise: Mapped[Enterprise] = relationship()
    scheme: Mapped[Scheme] = relationship()
    application: Mapped[VoucherApplication] = relationship(back_populates="voucher")
    ledger: Mapped[list[LedgerEntry]] = relationship(back_populates="voucher", order_by="LedgerEntry.id")

    __table_args__ = (
        UniqueConstraint("enterprise_id", "scheme_id", name="uq_vouchers_enterprise_scheme"),
        CheckConstraint("balance_fen >= 0 AND balance_fen <= quota_fen", name="balance_range"),
        CheckConstraint("released_fen >= 0", name="released_not_negative"),
    )

    def __repr__(self) -> str:
        return f"<Voucher {self.code} {self.balance_fen}/{self.quota_fen}>"


class LedgerKind(StrEnum):
    ISSUED = "issued"
    COMMITTED = "committed"
    RELEASED = "released"
    PAID = "paid"
    # At payment: the subsidy held for a redemption when the service is recorded, and given back when
    # the redemption is rejected, withdrawn or expires.
    RESERVED = "reserved"
    UNRESERVED = "unreserved"


class LedgerEntry(Model):
    """Every movement of a voucher: issue, commitment to a claim, release at expiry, payment."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id"), index=True)
    kind: Mapped[LedgerKind] = mapped_column(str_enum(LedgerKind))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    balance_after_fen: Mapped[int] = mapped_column(BigInteger)
    claim_id: Mapped[int | None] = mapped_column(ForeignKey("claims.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)

    voucher: Mapped[Voucher] = relationship(back_populates="ledger")

    def __repr__(self) -> str:
        return f"<LedgerEntry {self.kind} {self.amount_fen}>"


class ClaimState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    PENDING_SECOND = "pending_second"
    RETURNED = "returned"
    REJECTED = "rejected"
    IN_NOTICE = "in_notice"
    PAYABLE = "payable"
    PAID = "paid"
    # At payment only: the amounts are held from the recording of the service until the provider
    # submits; a reservation withdrawn or not submitted in time is released.
    RESERVED = "reserved"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


# Claims whose money is reserved (approved and later).
COMMITTED_STATES = (ClaimState.IN_NOTICE, ClaimState.PAYABLE, ClaimState.PAID)


class Claim(Model):
    """A subsidy claim against a voucher for completed, invoiced services."""

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("vouchers.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"), index=True)
    state: Mapped[ClaimState] = mapped_column(str_enum(ClaimState), default=ClaimState.DRAFT, index=True)
    fee_fen: Mapped[int] = mapped_column(BigInteger)
    limited_by: Mapped[list[str]] = mapped_column(JSON, default=list)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=current_time)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    comment: Mapped[str | None] = mapped_column(Text)
    # The enterprise's answer to the reviewer's comment when it corrects a returned claim.
    reply: Mapped[str | None] = mapped_column(Text)
    notice_ends_on: Mapped[date | None] = mapped_column(Date)
    payable_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # One provider per claim (one service contract): what the tallies attribute the subsidy to.
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"))
    # The accounting months (YYYY-MM, Beijing time) of the approval and of the payment.
    approved_month: Mapped[str | None] = mapped_column(String(7))  # indexed below, with the state
    paid_month: Mapped[str | None] = mapped_column(String(7), index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("disbursement_batches.id"), index=True)
    # At payment the provider submits and is paid; the enterprise pays only its share.
    mode: Mapped[RedemptionMode] = mapped_column(
        str_enum(RedemptionMode), default=RedemptionMode.REIMBURSEMENT, server_default="reimbursement"
    )
    # What the provider says the enterprise paid of its share (the receipt is the proof).
    enterprise_paid_fen: Mapped[int | None] = mapped_column(BigInteger)
    reservation_expires_on: Mapped[date | None] = mapped_column(Date)
    # A provider outside Shandong: allowed only with the enterprise's written justification.
    out_of_province: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    justification: Mapped[str | None] = mapped_column(Text)

    voucher: Mapped[Voucher] = relationship()
    enterprise: Mapped[Enterprise] = relationship()
    items: Mapped[list[ClaimItem]] = relationship(back_populates="claim", cascade="all, delete-orphan")
    # The amounts per fund of the scheme, in its order: estimated for a draft, set at submission,
    # fixed at approval.
    fund_rows: Mapped[list[ClaimFund]] = relationship(
        back_populates="claim", cascade="all, delete-orphan", order_by="ClaimFund.position", lazy="selectin"
    )

    __table_args__ = (
        CheckConstraint(
            "fee_fen >= 0 AND (enterprise_paid_fen IS NULL OR enterprise_paid_fen >= 0)",
            name="amounts_not_negative",
        ),
        Index("ix_claims_state_notice", "state", "notice_ends_on"),
        Index("ix_claims_state_enterprise", "state", "enterprise_id", "submitted_at"),  # the review desk
        # Finance counts the claims approved in some months that have a provider from the index alone.
        Index("ix_claims_approved_month_state", "approved_month", "state", "institution_id"),
    )

    @property
    def total_fen(self) -> int:
        return sum(row.amount_fen for row in self.fund_rows)

    @property
    def enterprise_share_fen(self) -> int:
        """What the enterprise pays itself: the fee less the subsidy."""
        return self.fee_fen - self.total_fen

    @property
    def at_payment(self) -> bool:
        return self.mode is RedemptionMode.AT_PAYMENT

    @property
    def payee_kind(self) -> str:
        """Whom the subsidy is paid to: the provider at payment, the enterprise otherwise."""
        return "provider" if self.at_payment else "enterprise"

    def fund_amounts(self) -> dict[str, int]:
        """What each fund gives this claim, by fund name, in the scheme's order."""
        return {row.fund: row.amount_fen for row in self.fund_rows}

    def capped_fen(self, funds: dict[str, Fund]) -> int:
        """The part of the claim that counts against the enterprise's yearly cap (its capped funds)."""
        return sum(
            amount
            for name, amount in self.fund_amounts().items()
            if name in funds and funds[name].enterprise_capped
        )

    def set_amounts(self, amounts: Iterable[tuple[str, int, int]]) -> None:
        """Set (fund, raw fen, amount fen) per fund, in the scheme's order, replacing what was there."""
        rows = {row.fund: row for row in self.fund_rows}
        wanted = []
        for position, (fund, raw_fen, amount_fen) in enumerate(amounts):
            row = rows.get(fund) or ClaimFund(fund=fund)
            row.position, row.raw_fen, row.amount_fen = position, raw_fen, amount_fen
            wanted.append(row)
        self.fund_rows = wanted

    def funds(self) -> list[dict[str, Any]]:
        """Each fund's raw amount (before the limits) and amount, as the API and the claim page show it."""
        return [
            {"fund": row.fund, "raw_fen": row.raw_fen, "amount_fen": row.amount_fen} for row in self.fund_rows
        ]

    def __repr__(self) -> str:
        return f"<Claim {self.id} {self.state} {self.total_fen}>"


class ClaimFund(Model):
    """What one fund of the scheme gives a claim: the raw amount (floor(fee x rate), the API's
    `raw_fen`) and the amount after the budgets, caps and balance (`amount_fen`)."""

    __tablename__ = "claim_funds"

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id", ondelete="CASCADE"))
    # The fund's name in the claim's scheme (names are unique per scheme; tallies key by them).
    fund: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(SmallInteger, default=0)
    raw_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)

    claim: Mapped[Claim] = relationship(back_populates="fund_rows")

    __table_args__ = (
        UniqueConstraint("claim_id", "fund", name="uq_claim_funds_pair"),
        CheckConstraint("raw_fen >= 0 AND amount_fen >= 0", name="amounts_not_negative"),
        Index("ix_claim_funds_fund", "fund"),
    )

    def __repr__(self) -> str:
        return f"<ClaimFund claim={self.claim_id} {self.fund} {self.amount_fen}>"


class ClaimItem(Model):
    """A service record claimed by a claim."""

    __tablename__ = "claim_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    claim_id: Mapped[int] = mapped_column(ForeignKey("claims.id", ondelete="CASCADE"), index=True)
    service_record_id: Mapped[int] = mapped_column(ForeignKey("service_records.id"), index=True)
    fee_fen: Mapped[int] = mapped_column(BigInteger)

    claim: Mapped[Claim] = relationship(back_populates="items")
    service_record: Mapped[ServiceRecord] = relationship()

    __table_args__ = (UniqueConstraint("claim_id", "service_record_id", name="uq_claim_items_pair"),)

    def __repr__(self) -> str:
        return f"<ClaimItem claim={self.claim_id} record={self.service_record_id}>"
