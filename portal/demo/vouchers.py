"""The demo's voucher year: the published scheme, verified enterprises with vouchers, claims in every state.

Everything goes through the real services (applications approved by the demo reviewers, claims
submitted and decided), so budgets, caps, balances, ledgers and the audit trail are consistent.
"""

from __future__ import annotations

import io
import random
from datetime import date, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import select

from portal.accounts import banking
from portal.accounts.models import Enterprise, User, VerificationState
from portal.booking.models import Booking, BookingState, FileKind, ServiceFile, ServiceRecord, ServiceType
from portal.core import clock, uploads
from portal.core.errors import ServiceError
from portal.core.permissions import Role
from portal.extensions import db
from portal.finance import services as finance
from portal.vouchers import services
from portal.vouchers.models import Claim, ClaimState, FundCondition

YUAN = 100
EVIDENCE = (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT)
# A tiny but well-formed PDF (uploads refuse one pypdf cannot read), stored once per demo document.
DEMO_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    b"xref\n0 3\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n"
    b"trailer<</Size 3/Root 1 0 R>>\nstartxref\n96\n%%EOF\n"
)


def published_scheme(year: int) -> tuple[dict, list[services.FundSettings]]:
    """The numbers DESIGN.md section 1 publishes (every one of them editable by the administrator)."""
    values = {
        "year": year,
        "name": f"{year}年度聊城市科技创新券",
        "enterprise_cap_fen": 500_000 * YUAN,
        "group_cap_fen": 650_000 * YUAN,
        "voucher_validity_days": 365,
        "service_window_start": date(year, 1, 1),
        "service_window_end": date(year, 12, 31),
        "public_notice_days": 7,
        "four_eyes_threshold_fen": 50_000 * YUAN,
        "excluded_service_types": [
            ServiceType.STATUTORY_TESTING.value,
            ServiceType.MANDATORY_CERTIFICATION.value,
        ],
    }
    funds = [
        services.FundSettings(
            "province", Decimal("0.60"), FundCondition.ALWAYS.value, 4_000_000 * YUAN, True
        ),
        services.FundSettings("city", Decimal("0.30"), FundCondition.LOCAL_PROVIDER.value, 2_000_000 * YUAN),
    ]
    return values, funds


def _user(username: str) -> User:
    return db.session.scalar(select(User).where(User.username == username))


def _attach_evidence(record: ServiceRecord, uploader_id: int) -> None:
    for kind in EVIDENCE:
        stored = uploads.store_upload(io.BytesIO(DEMO_PDF), f"{kind.value}-{record.id}.pdf")
        db.session.add(ServiceFile.from_upload(stored, record.id, kind, uploader_id))


def _decide(application_or_claim: str, item_id: int, amount_fen: int | None, reviewers: list[User]) -> None:
    """Approve, with the second reviewer when the amount needs four eyes."""
    for reviewer in reviewers:
        try:
            if application_or_claim == "application":
                done = services.decide_application(reviewer, item_id, "approve", amount_fen=amount_fen)
                if done.state.value == "approved":
                    return
            else:
                done = services.decide_claim(reviewer, item_id, "approve")
                if done.state is ClaimState.IN_NOTICE:
                    return
        except ServiceError:
            return


def _end_notice(claim_ids: list[int], today: date) -> None:
    for claim_id in claim_ids:
        claim = db.session.get(Claim, claim_id)
        if claim.state is ClaimState.IN_NOTICE:
            claim.notice_ends_on = today - timedelta(days=1)
    db.session.commit()
    services.end_public_notice(today)


# Banks with branches in Liaocheng and the length of their account numbers.
DEMO_BANKS = (
    ("中国工商银行聊城分行营业部", 19),
    ("中国农业银行聊城东昌府支行", 17),
    ("中国银行聊城分行", 12),
    ("中国建设银行聊城分行", 20),
    ("聊城农村商业银行开发区支行", 22),
    ("齐鲁银行聊城分行", 16),
)


def _bank_number(rng: random.Random, length: int) -> str:
    # Some start with 0: the exports must keep it.
    return str(rng.randint(0, 1)) + "".join(str(rng.randint(0, 9)) for _ in range(length - 1))


def _bank_accounts(rng: random.Random, holders: list[User], reviewer: User) -> None:
    """Every enterprise with a voucher has a verified account (finance pays only those); the demo
    enterprise has also entered a change that waits for a reviewer."""
    for user in holders:
        bank, length = rng.choice(DEMO_BANKS)
        data = banking.BankAccountData(user.enterprise.name, bank, _bank_number(rng, length))
        try:
            account = banking.record_bank_account(user, data)
            banking.decide_bank_account(reviewer, account.id, "verify")
        except ServiceError:
            continue
        if user.username == "enterprise":
            # A change of bank, for a reviewer to look at.
            bank, length = next((b, n) for b, n in DEMO_BANKS if b != data.bank_name)
            banking.record_bank_account(
                user, banking.BankAccountData(user.enterprise.name, bank, _bank_number(rng, length))
            )


def load_voucher_year(rng: random.Random, vouchers: int = 40) -> dict[str, int]:
    """The scheme of this year, verified enterprises with vouchers, and claims in every state."""
    today = clock.local_today()
    admin, reviewers = _user("admin"), [_user("reviewer"), _user("reviewer2")]
    services.save_scheme(admin, *published_scheme(today.year))
    verified = db.session.execute(
        select(User, Enterprise)
        .join(Enterprise, Enterprise.id == User.enterprise_id)
        .where(User.role == Role.ENTERPRISE, Enterprise.verification_state == VerificationState.VERIFIED)
        .order_by(User.id)
    ).all()
    # Some enterprises share an actual controller, so the group cap has something to group.
    for index, (_user_row, enterprise) in enumerate(verified):
        enterprise.actual_controller = f"控制人{index // 3:03d}" if index % 5 == 0 else enterprise.name
        enterprise.controller_group = services.controller_key(enterprise.actual_controller)
    db.session.commit()

    chosen = [row for row in verified if row[0].username in ("enterprise", "enterprise2")]
    others = [row for row in verified if row[0].username not in ("enterprise", "enterprise2")]
    chosen += rng.sample(others, min(vouchers, len(others)))
    counts = {"vouchers": 0, "claims": 0}
    approved: list[int] = []
    for user, _enterprise in chosen:
        amount = rng.choice((30_000, 50_000, 80_000, 100_000, 150_000)) * YUAN
        try:
            application = services.apply_for_voucher(
                user, amount, "围绕新产品研发开展检测分析，预计使用大型仪器共享服务。"
            )
        except ServiceError:
            continue
        _decide("application", application.id, amount, reviewers)
        counts["vouchers"] += 1
        voucher = next(iter(services.vouchers_for(user)), None)
        if voucher is None:
            continue
        records = [
            r
            for r in db.session.scalars(
                select(ServiceRecord)
                .join(Booking, Booking.id == ServiceRecord.booking_id)
                .where(
                    Booking.enterprise_id == user.enterprise_id,
                    Booking.state == BookingState.COMPLETED,
                    ServiceRecord.rating.is_not(None),
                )
                .order_by(ServiceRecord.id)
            )
            if voucher.scheme.service_window_start <= clock.to_local(r.recorded_at).date() <= today
        ]
        for record in records:
            _attach_evidence(record, record.recorded_by_id or user.id)
        db.session.commit()
        if user.username == "enterprise":
            continue  # the demo enterprise makes its own claim, from the pages
        for record in records[:2]:
            try:
                claim = services.create_claim(user, voucher.id, [record.id])
                services.submit_claim(user, claim.id)
            except ServiceError:
                continue
            counts["claims"] += 1
            fate = rng.random()
            if fate < 0.6:
                _decide("claim", claim.id, None, reviewers)
                approved.append(claim.id)
            elif fate < 0.7:
                services.decide_claim(reviewers[0], claim.id, "return", "请补充付款凭证的清晰扫描件")
    _bank_accounts(rng, [user for user, _enterprise in chosen], reviewers[0])
    # The first quarter has been through its public notice and was paid in a batch; the second
    # quarter is payable and waits for finance's next batch; the rest is still in public notice.
    quarter = len(approved) // 4
    _end_notice(approved[:quarter], today)
    if quarter:
        clerk = _user("finance")
        batch = finance.build_batch(clerk, finance.month_of(clock.utcnow()))
        finance.export_batch(clerk, batch.id)
        finance.mark_batch_paid(clerk, batch.id, f"DEMO-{today:%Y%m%d}-001")
        counts["paid"] = batch.claims
    _end_notice(approved[quarter : 2 * quarter], today)
    current_app.logger.info("demo voucher year: %s", counts)
    return counts
