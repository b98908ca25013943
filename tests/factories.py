"""Factory fixtures: build rows with sensible defaults, override only what a test is about."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from portal.accounts.models import (
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    User,
    VerificationState,
)
from portal.accounts.services import hash_password
from portal.booking.models import Booking, BookingMode, BookingState, ServiceRecord
from portal.catalog.models import Category, Instrument, InstrumentStatus, OpeningHours
from portal.core.permissions import Role
from portal.demo.services import make_uscc
from portal.extensions import db

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)


def valid_uscc(seed: int | None = None) -> str:
    return make_uscc(random.Random(seed if seed is not None else next(_counter) * 7919), "371502")


def completed_service(
    instrument: Instrument,
    user: User,
    starts_at: datetime,
    *,
    fee_fen: int,
    booked_hours: int = 2,
    recorded_at: datetime | None = None,
    **record: Any,
) -> ServiceRecord:
    """A completed slot booking of `user`'s enterprise and its service record, flushed, bypassing the
    rules (for setting up situations); `record` sets further ServiceRecord fields (hours, rating…)."""
    ends_at = starts_at + timedelta(hours=booked_hours)
    booking = Booking(
        instrument_id=instrument.id,
        enterprise_id=user.enterprise_id,
        requested_by_id=user.id,
        mode=BookingMode.SLOT,
        state=BookingState.COMPLETED,
        starts_at=starts_at,
        ends_at=ends_at,
        held_until=ends_at,
        purpose="测试",
    )
    db.session.add(booking)
    db.session.flush()
    service = ServiceRecord(
        booking_id=booking.id,
        computed_fee_fen=fee_fen,
        fee_fen=fee_fen,
        recorded_by_id=user.id,
        recorded_at=recorded_at or starts_at + timedelta(hours=3),
        **record,
    )
    db.session.add(service)
    db.session.flush()
    return service


@pytest.fixture
def make_institution(app) -> Callable[..., Institution]:
    def make(**overrides) -> Institution:
        n = next(_counter)
        values = {
            "name": f"测试单位{n}",
            "uscc": valid_uscc(),
            "kind": InstitutionKind.UNIVERSITY,
            "county": "东昌府区",
            "address": "湖南路1号",
            # Admitted to the voucher scheme as a provider, unless a test says otherwise (issue 21).
            "admission": "admitted",
        }
        values.update(overrides)
        institution = Institution(**values)
        db.session.add(institution)
        db.session.commit()
        return institution

    return make


@pytest.fixture
def category(app) -> Callable[[str], Category]:
    def get(code: str) -> Category:
        return db.session.scalar(select(Category).where(Category.code == code))

    return get


@pytest.fixture
def make_instrument(app, make_institution, category) -> Callable[..., Instrument]:
    default_institution: list[Institution] = []

    def make(**overrides) -> Instrument:
        n = next(_counter)
        if "institution" not in overrides and "institution_id" not in overrides:
            if not default_institution:
                default_institution.append(make_institution())
            overrides["institution"] = default_institution[0]
        category_code = overrides.pop("category_code", "0102")
        hours = overrides.pop("opening_hours", [(d, time(8, 30), time(17, 30)) for d in range(5)])
        values = {
            "code": f"T-{n:05d}",
            "name": f"测试仪器{n}",
            "name_en": f"Test Instrument {n}",
            "category": category(category_code),
            "model": f"M{n}",
            "manufacturer": "Agilent (安捷伦)",
            "country_of_origin": "美国",
            "original_value_fen": 1_000_000_00,
            "status": InstrumentStatus.NORMAL,
            "fee_per_hour_fen": 300_00,
            "county": "东昌府区",
            "operator_name": "张三",
            "operator_phone": "0635-8239999",
        }
        values.update(overrides)
        instrument = Instrument(**values)
        instrument.opening_hours = [OpeningHours(weekday=d, opens_at=a, closes_at=b) for d, a, b in hours]
        db.session.add(instrument)
        db.session.commit()
        return instrument

    return make


@pytest.fixture
def make_user(app, make_institution) -> Callable[..., User]:
    def make(role: Role = Role.ENTERPRISE, password: str = PASSWORD, **overrides) -> User:
        n = next(_counter)
        if role is Role.ENTERPRISE and "enterprise" not in overrides:
            overrides["enterprise"] = Enterprise(
                uscc=valid_uscc(),
                name=f"聊城测试科技有限公司{n}",
                kind=EnterpriseKind.TECH_SME,
                county="东昌府区",
                verification_state=overrides.pop("verification_state", VerificationState.VERIFIED),
            )
            # The user who brings a new enterprise along is its account holder, as at registration.
            overrides.setdefault("is_holder", True)
        if role is Role.PROVIDER and "institution" not in overrides:
            overrides["institution"] = make_institution()
        values = {
            "username": f"user{n}",
            "email": f"user{n}@example.cn",
            "password_hash": hash_password(password),
            "role": role,
            "full_name": f"用户{n}",
        }
        values.update(overrides)
        user = User(**values)
        db.session.add(user)
        db.session.commit()
        return user

    return make


def login(client: FlaskClient, username: str, password: str = PASSWORD):
    """Sign in through the real form, CSRF token and all."""
    page = client.get("/login")
    token = extract_csrf(page.get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def extract_csrf(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def make_booking(app):
    """A booking row in any state, bypassing the rules (for setting up situations)."""
    from portal.booking.models import Booking, BookingMode, BookingState

    def make(instrument, user, starts_at=None, ends_at=None, state=BookingState.REQUESTED, **overrides):
        values = {
            "instrument_id": instrument.id,
            "enterprise_id": user.enterprise_id,
            "requested_by_id": user.id,
            "mode": BookingMode.SLOT if starts_at else BookingMode.SAMPLE,
            "state": state,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "held_until": ends_at,
            "purpose": "测试",
        }
        if starts_at is None:
            values.update(sample_count=3, sample_description="粉末样品", sample_delivery_on=None)
        values.update(overrides)
        booking = Booking(**values)
        db.session.add(booking)
        db.session.commit()
        return booking

    return make


@pytest.fixture
def set_policy(app):
    from portal.booking.models import BookingPolicy
    from portal.booking.services import DEFAULT_POLICY

    def apply(instrument, **values):
        policy = db.session.get(BookingPolicy, instrument.id) or BookingPolicy(
            instrument_id=instrument.id, **DEFAULT_POLICY
        )
        for key, value in values.items():
            setattr(policy, key, value)
        db.session.add(policy)
        db.session.commit()
        return policy

    return apply


# --- vouchers ------------------------------------------------------------------------------------


@pytest.fixture
def make_scheme(app):
    """The published 2026 scheme (province 60 %, city 30 % for local providers), overridable."""
    from datetime import date
    from decimal import Decimal

    from portal.vouchers.models import Fund, FundCondition, Scheme

    def make(
        province_budget=4_000_000_00, city_budget=2_000_000_00, funds: list[dict] | None = None, **overrides
    ) -> Scheme:
        """`funds`: the scheme's funds (name, rate, budget_fen, and optionally label, condition,
        enterprise_capped) in place of the published province and city."""
        values = {
            "year": 2026,
            "name": "2026年度聊城市科技创新券",
            "enterprise_cap_fen": 500_000_00,
            "group_cap_fen": 650_000_00,
            "voucher_validity_days": 365,
            "service_window_start": date(2026, 1, 1),
            "service_window_end": date(2026, 12, 31),
            "public_notice_days": 7,
            "four_eyes_threshold_fen": 50_000_00,
            "excluded_service_types": ["statutory_testing", "mandatory_certification"],
            "allocated_fen": 0,
        }
        values.update(overrides)
        if funds is None:
            funds = [
                {
                    "name": "province",
                    "label": "Provincial voucher",
                    "rate": Decimal("0.60"),
                    "condition": FundCondition.ALWAYS,
                    "enterprise_capped": True,
                    "budget_fen": province_budget,
                },
                {
                    "name": "city",
                    "label": "Liaocheng top-up",
                    "rate": Decimal("0.30"),
                    "condition": FundCondition.LOCAL_PROVIDER,
                    "budget_fen": city_budget,
                },
            ]
        scheme = Scheme(**values)
        scheme.funds = [
            Fund(
                position=position,
                committed_fen=0,
                paid_fen=0,
                **{"condition": FundCondition.ALWAYS, "enterprise_capped": False, "label": "", **fund},
            )
            for position, fund in enumerate(funds)
        ]
        db.session.add(scheme)
        db.session.commit()
        return scheme

    return make


@pytest.fixture
def make_voucher(app):
    """An issued voucher (as if approved), with its ledger's first line and the scheme's allocation."""
    from datetime import date

    from portal.vouchers.models import LedgerEntry, LedgerKind, Voucher, VoucherApplication

    def make(user, scheme, quota_fen=100_000_00, valid_until=date(2027, 6, 30)):
        application = VoucherApplication(
            enterprise_id=user.enterprise_id,
            scheme_id=scheme.id,
            amount_fen=quota_fen,
            plan="测试计划",
            state="approved",
        )
        db.session.add(application)
        db.session.flush()
        voucher = Voucher(
            code=f"LC2026-{application.id:08d}",
            enterprise_id=user.enterprise_id,
            scheme_id=scheme.id,
            application_id=application.id,
            quota_fen=quota_fen,
            balance_fen=quota_fen,
            released_fen=0,
            valid_until=valid_until,
        )
        db.session.add(voucher)
        scheme.allocated_fen += quota_fen
        db.session.flush()
        db.session.add(
            LedgerEntry(
                voucher_id=voucher.id,
                kind=LedgerKind.ISSUED,
                amount_fen=quota_fen,
                balance_after_fen=quota_fen,
            )
        )
        db.session.commit()
        return voucher

    return make


@pytest.fixture
def make_service(app, make_instrument, make_institution):
    """A completed, rated, invoiced service of the user's enterprise with the given fee."""
    from datetime import UTC
    from decimal import Decimal

    from portal.booking.models import FileKind, ServiceFile

    hosts: list = []

    def make(
        user,
        fee_fen=10_000_00,
        *,
        instrument=None,
        starts_at=datetime(2026, 11, 2, 1, 0, tzinfo=UTC),
        hours=Decimal(2),
        rated=True,
        evidence=(FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT),
        service_type="analysis",
        booked_hours=2,
    ):
        if instrument is None:
            if not hosts:
                hosts.append(make_institution(is_local=True))
            instrument = make_instrument(institution=hosts[0])
        record = completed_service(
            instrument,
            user,
            starts_at,
            fee_fen=fee_fen,
            booked_hours=booked_hours,
            hours=hours,
            rating=5 if rated else None,
            service_type=service_type,
        )
        for n, kind in enumerate(evidence):
            db.session.add(
                ServiceFile(
                    record_id=record.id,
                    kind=kind,
                    original_name=f"{kind.value}.pdf",
                    stored_name=f"test-{record.id}-{n}-{kind.value}.pdf",
                    content_type="application/pdf",
                    size=10,
                    sha256="0" * 64,
                    uploaded_by_id=user.id,
                )
            )
        db.session.commit()
        return record

    return make


# --- bank accounts (issue 13: money reaches the right account) --------------------------------------


@pytest.fixture
def make_bank_account(app):
    """A bank account version of the user's enterprise, written directly (verified unless told)."""
    from portal.accounts.models import BankAccount, BankAccountState
    from portal.core import clock

    def make(user: User, state: BankAccountState = BankAccountState.VERIFIED, **overrides) -> BankAccount:
        versions = db.session.scalars(
            select(BankAccount.version).where(BankAccount.enterprise_id == user.enterprise_id)
        ).all()
        values = {
            "enterprise_id": user.enterprise_id,
            "version": max(versions, default=0) + 1,
            "account_name": user.enterprise.name,
            "bank_name": "中国工商银行聊城分行",
            "account_number": f"0{1609000000000000000 + user.enterprise_id}",
            "state": state,
            "entered_by_id": user.id,
            "entered_at": clock.utcnow(),
        }
        if state is BankAccountState.VERIFIED:
            values.update(decided_by_id=user.id, decided_at=clock.utcnow())
        values.update(overrides)
        account = BankAccount(**values)
        db.session.add(account)
        db.session.commit()
        return account

    return make
