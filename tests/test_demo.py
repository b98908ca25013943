"""The demo network: exactly the published numbers, plausible values, deterministic for a seed."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from portal.accounts.models import Enterprise, Institution, User, VerificationState
from portal.admission.models import AdmissionState, ProviderAdmission
from portal.catalog.models import Category, Instrument
from portal.core import clock
from portal.core.permissions import Role
from portal.demo import DEMO_PASSWORD
from portal.demo.services import load_demo
from portal.extensions import db
from tests.factories import login

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


def count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_published_numbers(demo_app):
    # The city's network, and a Shanghai test centre's two instruments (an out-of-province provider).
    in_shandong = Instrument.institution_id.in_(select(Institution.id).where(Institution.in_province))
    assert count(Instrument, in_shandong) == 1202 and count(Instrument) == 1204
    assert count(User, User.role == Role.ENTERPRISE) == 751
    hosts = {i.name for i in db.session.scalars(select(Institution))}
    for name in (
        "聊城大学",
        "聊城职业技术学院",
        "聊城技师学院",
        "山东工程技师学院",
        "聊城产业技术研究院",
        "鲁西化工集团股份有限公司",
    ):
        assert name in hosts
    counties = set(db.session.scalars(select(Instrument.county).where(in_shandong).distinct()))
    assert counties == set(demo_app.config["COUNTIES"])


def test_demo_accounts_have_their_roles_and_organisations(demo_app):
    users = {
        u.username: u
        for u in db.session.scalars(
            select(User).where(
                User.username.in_(
                    [
                        "admin",
                        "reviewer",
                        "reviewer2",
                        "finance",
                        "provider",
                        "provider2",
                        "enterprise",
                        "enterprise2",
                        "enterprise3",
                        "newco",
                    ]
                )
            )
        )
    }
    assert {u: users[u].role for u in users} == {
        "admin": Role.ADMIN,
        "reviewer": Role.REVIEWER,
        "reviewer2": Role.REVIEWER,
        "finance": Role.FINANCE,
        "provider": Role.PROVIDER,
        "provider2": Role.PROVIDER,
        "enterprise": Role.ENTERPRISE,
        "enterprise2": Role.ENTERPRISE,
        "enterprise3": Role.ENTERPRISE,
        "newco": Role.ENTERPRISE,
    }
    assert users["provider"].institution.name == "聊城大学"
    assert users["provider2"].institution.name == "鲁西化工集团股份有限公司"
    assert users["enterprise"].enterprise.verification_state is VerificationState.VERIFIED
    assert users["newco"].enterprise.verification_state is VerificationState.PENDING
    assert users["enterprise3"].enterprise.verification_state is VerificationState.VERIFIED


def test_demo_password_signs_in(demo_client):
    response = login(demo_client, "enterprise", DEMO_PASSWORD)
    assert response.status_code == 302


def test_instruments_are_plausible(demo_app):
    rows = db.session.scalars(select(Instrument).options(joinedload(Instrument.category))).all()
    assert min(r.original_value_fen for r in rows) >= 50_000_000  # 500,000 yuan and more
    assert all(r.fee_per_hour_fen or r.fee_per_sample_fen for r in rows)
    assert all(r.model and r.manufacturer and r.name_en and r.operator_name for r in rows)
    assert all(
        len(r.category.code) == 4 or r.category.code in {"05", "06", "07", "08", "14", "15"} for r in rows
    )
    first_levels = {r.category.code[:2] for r in rows}
    assert len(first_levels) >= 12
    assert len({r.code for r in rows}) == 1204  # 1202 in the city, 2 in Shanghai
    assert all(r.opening_hours for r in rows[:50])
    # Credit codes of the demo enterprises all pass the checksum.
    from stdnum.cn import uscc

    assert all(uscc.is_valid(code) for code in db.session.scalars(select(Enterprise.uscc)))


def _fingerprint() -> list[tuple]:
    instruments = db.session.execute(
        select(
            Instrument.code,
            Instrument.name,
            Instrument.model,
            Instrument.manufacturer,
            Instrument.original_value_fen,
            Instrument.fee_per_hour_fen,
            Instrument.fee_per_sample_fen,
            Instrument.status,
            Instrument.in_service_on,
            Instrument.operator_name,
            Category.code,
            Institution.name,
        )
        .join(Category)
        .join(Institution)
        .order_by(Instrument.code)
    ).all()
    enterprises = db.session.execute(
        select(Enterprise.uscc, Enterprise.name, Enterprise.kind).order_by(Enterprise.uscc)
    ).all()
    users = db.session.execute(select(User.username, User.role, User.full_name).order_by(User.username)).all()
    return [tuple(r) for r in (*instruments, *enterprises, *users)]


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not(app, tmp_path, sqlite_template):
    import shutil

    from tests.conftest import make_app

    load_demo(instruments=150, enterprise_users=40, bookings=40, vouchers=2, seed=7)
    first = _fingerprint()
    results = {}
    for seed in (7, 8):
        path = tmp_path / f"seed{seed}.db"
        shutil.copy(sqlite_template, path)
        other = make_app(f"sqlite:///{path}")
        with other.app_context():
            load_demo(instruments=150, enterprise_users=40, bookings=40, vouchers=2, seed=seed)
            results[seed] = _fingerprint()
            db.engine.dispose()
    assert first == results[7]
    assert first != results[8]


def test_loading_twice_leaves_the_data_alone(app):
    runner = app.test_cli_runner()
    first = runner.invoke(
        args=["demo", "load", "--instruments", "30", "--enterprises", "5", "--bookings", "40"]
    )
    assert first.exit_code == 0 and "Loaded" in first.output and "demo-pass-2026" in first.output
    second = runner.invoke(args=["demo", "load"])
    assert "already has data" in second.output
    assert count(Instrument) == 32  # the 30 asked for, and the Shanghai centre's two (out of province)


def test_a_year_of_bookings_in_every_state_without_overlaps(demo_app):
    from itertools import pairwise

    from portal.booking.models import HOLDING_STATES, Booking, BookingState, ServiceRecord

    # Plain rows, not objects: the demo year holds some hundred thousand bookings.
    bookings = db.session.execute(
        select(Booking.instrument_id, Booking.state, Booking.starts_at, Booking.held_until)
    ).all()
    assert len(bookings) > 30_000
    states = {b.state for b in bookings}
    assert states == set(BookingState)
    holds: dict[int, list] = {}
    for b in bookings:
        if b.starts_at and b.state in HOLDING_STATES:
            holds.setdefault(b.instrument_id, []).append((b.starts_at, b.held_until))
    for spans in holds.values():
        overlapping = [(a, b) for a, b in pairwise(sorted(spans)) if a[1] > b[0]]
        assert overlapping == []
    records = db.session.execute(
        select(ServiceRecord.fee_fen, ServiceRecord.computed_fee_fen, ServiceRecord.rating)
    ).all()
    assert len(records) == sum(1 for b in bookings if b.state is BookingState.COMPLETED)
    assert all(r.fee_fen == r.computed_fee_fen > 0 for r in records)
    assert {r.rating for r in records} == {None, 1, 2, 3, 4, 5}


def test_most_completed_machine_time_is_metered_with_lateness_and_overtime(demo_app):
    from portal.booking.models import Booking, BookingMode, BookingState, ServiceRecord
    from portal.usage.models import UsageSession
    from portal.usage.services import metered_hours, usage_of

    completed = select(Booking.id).where(
        Booking.mode == BookingMode.SLOT, Booking.state == BookingState.COMPLETED
    )
    total = count(Booking, Booking.id.in_(completed))
    rows = db.session.execute(
        select(
            UsageSession.started_at, UsageSession.ended_by, UsageSession.overtime_minutes, Booking.starts_at
        ).join(Booking, Booking.id == UsageSession.booking_id)
    ).all()
    assert 0.75 * total < len(rows) < 0.95 * total
    late = [r for r in rows if r.started_at > r.starts_at]
    assert 0.3 < len(late) / len(rows) < 0.6
    assert any(r.overtime_minutes > 20 for r in rows) and any(r.ended_by == "auto" for r in rows)
    # What the demo bills is never above what was metered (the claims pass hours_above_usage).
    sample = db.session.execute(
        select(ServiceRecord.booking_id, ServiceRecord.hours)
        .where(ServiceRecord.booking_id.in_(completed))
        .limit(2000)
    ).all()
    used = usage_of(r.booking_id for r in sample)
    assert all(r.hours <= metered_hours(used[r.booking_id]) for r in sample if r.booking_id in used)


def _loaded_at():
    from portal.core.models import AuditEvent

    return db.session.scalar(select(AuditEvent.created_at).where(AuditEvent.action == "demo.loaded"))


def test_some_no_shows_of_machine_time_each_counted_against_its_enterprise(demo_app):
    from datetime import timedelta

    from portal.booking.models import Booking, BookingMode, BookingState
    from portal.core.models import AuditEvent
    from portal.credit.models import Violation, ViolationKind

    no_shows = db.session.execute(
        select(
            Booking.id, Booking.mode, Booking.starts_at, Booking.enterprise_id, Booking.checked_in_at
        ).where(Booking.state == BookingState.NO_SHOW)
    ).all()
    assert 100 < len(no_shows) < 1000  # some, over the past year: rare beside some 90,000 used bookings
    assert {b.mode for b in no_shows} == {BookingMode.SLOT} and not any(b.checked_in_at for b in no_shows)
    loaded = _loaded_at()
    assert all(b.starts_at < loaded for b in no_shows)
    assert any(b.starts_at > loaded - timedelta(days=60) for b in no_shows)  # in the past months too
    violations = {
        v.booking_id: v
        for v in db.session.scalars(select(Violation).where(Violation.kind == ViolationKind.NO_SHOW))
    }
    assert set(violations) == {b.id for b in no_shows}  # each no-show counted once, nothing else
    for b in no_shows:
        violation = violations[b.id]
        assert violation.enterprise_id == b.enterprise_id
        assert violation.occurred_at == b.starts_at + timedelta(minutes=30)  # as the no-show task dates it
    recorded = count(AuditEvent, AuditEvent.action == "credit.violation_recorded")
    assert recorded == len(violations)


def test_one_enterprise_is_suspended_and_its_credit_page_says_until_when(demo_app):
    import re

    from portal.core import clock
    from portal.credit.models import Violation
    from portal.credit.services import enterprise_suspended_until

    suspended = {
        enterprise_id: until
        for enterprise_id in db.session.scalars(select(Violation.enterprise_id).distinct())
        if (until := enterprise_suspended_until(enterprise_id)) is not None
    }
    latecomer = db.session.scalar(select(User).where(User.username == "enterprise3"))
    assert list(suspended) == [latecomer.enterprise_id]
    own = db.session.scalars(
        select(Violation)
        .where(Violation.enterprise_id == latecomer.enterprise_id)
        .order_by(Violation.occurred_at)
    ).all()
    assert own[0].waived_at is not None and own[0].waive_reason  # its oldest one was waived, with a reason
    assert len(own) >= 4 and all(v.waived_at is None for v in own[1:])
    client = demo_app.test_client()
    login(client, "enterprise3", DEMO_PASSWORD)
    page = client.get("/credit/").get_data(as_text=True)
    status = re.search(r'<div class="alert alert-danger" id="credit-status"[^>]*>(.*?)</div>', page, re.S)
    assert status and clock.format_local(suspended[latecomer.enterprise_id]) in status.group(1)
    assert own[0].waive_reason in page
    # The other demo enterprises may book online.
    for username in ("enterprise", "enterprise2"):
        other = db.session.scalar(select(User).where(User.username == username))
        assert enterprise_suspended_until(other.enterprise_id) is None


def test_the_waitlist_has_an_offer_live_from_the_end_of_the_load(demo_app):
    from datetime import timedelta

    from portal.booking.models import Booking, BookingState
    from portal.core import clock
    from portal.waitlist.models import EntryState, WaitlistEntry

    users = {
        u.username: u
        for u in db.session.scalars(select(User).where(User.username.in_(["enterprise", "enterprise2"])))
    }
    entries = db.session.scalars(select(WaitlistEntry).order_by(WaitlistEntry.created_at)).all()
    mine = [e for e in entries if e.enterprise_id == users["enterprise"].enterprise_id]
    assert sorted(e.state for e in mine) == [EntryState.OFFERED, EntryState.WAITING]
    [offered] = [e for e in mine if e.state is EntryState.OFFERED]
    [behind] = [e for e in entries if e.enterprise_id == users["enterprise2"].enterprise_id]
    assert behind.state is EntryState.WAITING and (behind.starts_at, behind.ends_at) == (
        offered.starts_at,
        offered.ends_at,
    )
    assert behind.created_at > offered.created_at  # second in line
    # The window runs from the end of the load (not its start), and is still open.
    window = timedelta(hours=demo_app.config["WAITLIST_OFFER_HOURS"])
    assert window - timedelta(minutes=1) < offered.offered_until - _loaded_at() <= window
    assert offered.offered_until > clock.utcnow()
    hold = db.session.get_one(Booking, offered.offer_booking_id)
    assert (hold.state, hold.offered_until, hold.enterprise_id) == (
        BookingState.REQUESTED,
        offered.offered_until,
        users["enterprise"].enterprise_id,
    )
    assert (hold.starts_at, hold.ends_at) == (offered.starts_at, offered.ends_at)
    client = demo_app.test_client()
    login(client, "enterprise", DEMO_PASSWORD)
    page = client.get("/waitlist/").get_data(as_text=True)
    assert f"/waitlist/{offered.id}/accept" in page and f"/waitlist/{offered.id}/decline" in page
    assert clock.format_local(offered.offered_until) in page


def test_a_weekly_series_is_confirmed_ahead_and_shown_together(demo_app):
    from portal.booking.models import Booking, BookingSeries, BookingState
    from portal.core import clock
    from portal.demo.series import WEDNESDAY, WEEKS

    enterprise = db.session.scalar(select(User).where(User.username == "enterprise"))
    [series] = db.session.scalars(select(BookingSeries)).all()
    assert series.enterprise_id == enterprise.enterprise_id and series.repeat_count == WEEKS
    dates = db.session.scalars(
        select(Booking).where(Booking.series_id == series.id).order_by(Booking.starts_at)
    ).all()
    # At least four of the six Wednesdays were free; the others are listed as skipped.
    assert len(dates) >= 4 and len(dates) + len(series.skipped) == WEEKS
    assert {b.state for b in dates} == {BookingState.CONFIRMED}
    assert all(b.starts_at > clock.utcnow() for b in dates)
    local = [clock.to_local(b.starts_at) for b in dates]
    assert {(t.weekday(), t.hour, t.minute) for t in local} == {(WEDNESDAY, 14, 0)}
    client = demo_app.test_client()
    login(client, "enterprise", DEMO_PASSWORD)
    page = client.get(f"/bookings/series/{series.id}").get_data(as_text=True)
    assert all(f"/bookings/{b.id}" in page for b in dates)


def test_the_demo_accounts_have_something_to_show(demo_app, demo_client):
    from tests.factories import login

    login(demo_client, "provider", DEMO_PASSWORD)
    queue = demo_client.get("/bookings/").get_data(as_text=True)
    assert 'href="/bookings/' in queue
    enterprise = demo_app.test_client()
    login(enterprise, "enterprise", DEMO_PASSWORD)
    mine = enterprise.get("/bookings/?state=").get_data(as_text=True)
    for state in ("待确认", "已确认", "已完成", "已取消"):
        assert state in mine


def test_the_voucher_year_is_consistent_to_the_fen(demo_app):
    from portal.core import clock
    from portal.demo.vouchers import voucher_year
    from portal.vouchers.models import COMMITTED_STATES, CapLedger, Claim, Fund, Scheme, Voucher

    # The voucher year's scheme (this year's; in January last year's): in December and January the
    # following year's is published too, with nothing committed yet.
    scheme = db.session.scalar(select(Scheme).where(Scheme.year == voucher_year(clock.local_today())))
    assert (scheme.enterprise_cap_fen, scheme.group_cap_fen, scheme.public_notice_days) == (
        50_000_000,
        65_000_000,
        7,
    )
    funds = {f.name: f for f in db.session.scalars(select(Fund).where(Fund.scheme_id == scheme.id))}
    assert (str(funds["province"].rate), str(funds["city"].rate)) == ("0.6000", "0.3000")
    committed = db.session.scalars(select(Claim).where(Claim.state.in_(COMMITTED_STATES))).all()
    assert {c.state.value for c in committed} == {"in_notice", "payable", "paid"}
    for name, fund in funds.items():
        assert fund.committed_fen == sum(c.fund_amounts().get(name, 0) for c in committed)
    paid = [c for c in committed if c.state.value == "paid"]
    assert funds["province"].paid_fen + funds["city"].paid_fen == sum(c.total_fen for c in paid)
    # The finance figures come from the tallies, and they agree with the ledgers to the fen.
    from portal.finance import services as finance

    # Over the year's months, as the claims were approved and paid through the year.
    first = min(c.approved_month for c in committed)
    last = finance.month_of(clock.utcnow())
    totals = finance.totals(first, last, "fund")
    assert totals.approved_fen == finance.ledger_committed(first, last) == sum(c.total_fen for c in committed)
    assert totals.paid_fen == sum(c.total_fen for c in paid)
    # Redemptions at payment hold their amounts from the reservation until approval or release.
    held = db.session.scalars(
        select(Claim).where(Claim.mode == "at_payment", Claim.state.in_(HELD_STATES))
    ).all()
    assert {c.state.value for c in held} >= {"reserved", "submitted"}
    for name, fund in funds.items():
        assert fund.reserved_fen == sum(c.fund_amounts().get(name, 0) for c in held)
    vouchers = db.session.scalars(select(Voucher)).all()
    taken = sum(c.total_fen for c in committed) + sum(c.total_fen for c in held)
    assert sum(v.quota_fen - v.balance_fen - v.released_fen for v in vouchers) == taken
    assert scheme.allocated_fen == sum(v.quota_fen - v.released_fen for v in vouchers)
    group_used = db.session.scalar(select(func.sum(CapLedger.used_fen)).where(CapLedger.scope == "group"))
    assert group_used == taken
    users = {
        u.username
        for u in db.session.scalars(select(User).join(Voucher, Voucher.enterprise_id == User.enterprise_id))
    }
    assert {"enterprise", "enterprise2"} <= users


HELD_STATES = ("reserved", "submitted", "pending_second", "returned")


def test_the_demo_has_redemptions_at_payment_in_each_state(demo_app):
    from portal.vouchers.models import Claim, LedgerEntry, LedgerKind

    states = {c.state.value for c in db.session.scalars(select(Claim).where(Claim.mode == "at_payment"))}
    assert {
        "reserved",
        "submitted",
        "in_notice",
        "payable",
        "paid",
        "rejected",
        "withdrawn",
        "expired",
    } <= states
    (paid,) = db.session.scalars(select(Claim).where(Claim.mode == "at_payment", Claim.state == "paid"))
    assert paid.batch_id is not None and paid.payee_kind == "provider"
    released = db.session.scalars(select(LedgerEntry).where(LedgerEntry.kind == LedgerKind.UNRESERVED)).all()
    assert len(released) == 3  # the rejected, the withdrawn and the expired one


def test_the_demo_pays_only_verified_accounts_and_shows_a_change_waiting(demo_app):
    from portal.accounts.models import BankAccount, BankAccountState
    from portal.finance.models import DisbursementBatch
    from portal.vouchers.models import Claim

    waiting = Claim.state.in_(["payable", "paid"])
    payees = set(
        db.session.scalars(
            select(Claim.enterprise_id).where(waiting, Claim.mode == "reimbursement").distinct()
        )
    )
    verified = set(
        db.session.scalars(
            select(BankAccount.enterprise_id).where(BankAccount.state == BankAccountState.VERIFIED)
        )
    )
    assert payees and payees <= verified  # the next batch can pay everyone waiting
    # ... the providers of the redemptions at payment too (issue 21: they are paid, not the enterprise).
    providers = set(
        db.session.scalars(select(Claim.institution_id).where(waiting, Claim.mode == "at_payment").distinct())
    )
    verified_providers = set(
        db.session.scalars(
            select(BankAccount.institution_id).where(
                BankAccount.state == BankAccountState.VERIFIED, BankAccount.institution_id.is_not(None)
            )
        )
    )
    assert providers and providers <= verified_providers
    assert all(not batch.held_back for batch in db.session.scalars(select(DisbursementBatch)))
    demo = db.session.scalar(select(User).where(User.username == "enterprise"))
    versions = db.session.scalars(
        select(BankAccount)
        .where(BankAccount.enterprise_id == demo.enterprise_id)
        .order_by(BankAccount.version)
    ).all()
    assert [v.state for v in versions] == [BankAccountState.VERIFIED, BankAccountState.PENDING]
    assert versions[1].bank_name != versions[0].bank_name  # a change of bank, for a reviewer to check


def test_some_instruments_have_photos_the_catalogue_serves(demo_app, demo_client):
    from portal.catalog.models import InstrumentPhoto
    from portal.demo import photos as demo_photos

    photos = db.session.scalars(select(InstrumentPhoto).order_by(InstrumentPhoto.id)).all()
    hosts = demo_photos.HOSTS
    assert len(photos) == sum(hosts.values()) + demo_photos.WITH_TWO * len(hosts)
    by_instrument: dict[int, list] = {}
    for photo in photos:
        by_instrument.setdefault(photo.instrument_id, []).append(photo)
    assert len(by_instrument) == sum(hosts.values())
    assert all(sum(p.is_main for p in group) == 1 for group in by_instrument.values())
    first = db.session.get(Instrument, photos[0].instrument_id)
    assert first.institution.name == "聊城大学" and photos[0].caption.startswith(first.name)
    for name in (photos[0].stored_name, photos[0].thumbnail_name):
        response = demo_client.get(f"/instruments/{first.code}/photos/{name}")
        assert response.status_code == 200 and response.mimetype == "image/jpeg"


def _months_back(today, count: int) -> list[str]:
    index = today.year * 12 + today.month - 1
    return [f"{(index - n) // 12:04d}-{(index - n) % 12 + 1:02d}" for n in range(count - 1, -1, -1)]


def test_the_year_has_a_shape_every_month_has_approvals_payments_and_bookings(demo_app):
    from collections import Counter

    from portal.booking.models import Booking
    from portal.core import clock
    from portal.demo.vouchers import voucher_year
    from portal.finance.services import month_of
    from portal.usage.booking_tallies import USED_STATES
    from portal.vouchers.models import Claim

    today = clock.local_today()
    # Bookings: the twelve months up to this one.
    used = Counter(
        month_of(starts_at)
        for starts_at in db.session.scalars(select(Booking.starts_at).where(Booking.state.in_(USED_STATES)))
        if starts_at is not None
    )
    assert all(used[m] > 0 for m in _months_back(today, 12)), used
    # Approvals and payments: every month of the voucher year so far (the scheme runs January to
    # December; in January the demo shows last year's, into this month), the current month too once
    # its first payment batch (the 1st or next working day) is paid.
    claims = db.session.scalars(select(Claim)).all()
    approved = Counter(c.approved_month for c in claims if c.approved_month)
    paid = Counter(c.paid_month for c in claims if c.paid_month)
    year_so_far = _months_back(today, (today.year - voucher_year(today)) * 12 + today.month)
    assert all(approved[m] > 0 for m in year_so_far[:-1]), approved
    assert all(paid[m] > 0 for m in year_so_far[:-1]), paid
    if today.day >= 6:  # the first days of a month may not have had a working day with a decision yet
        assert approved[year_so_far[-1]] > 0, approved
        assert paid[year_so_far[-1]] > 0, paid


def test_claims_are_submitted_in_office_hours_never_two_in_the_same_minute(demo_app):
    from portal.core import clock
    from portal.vouchers.models import Claim

    submitted = [c.submitted_at for c in db.session.scalars(select(Claim)) if c.submitted_at]
    assert len(submitted) > 60
    minutes = {clock.to_local(at).replace(second=0, microsecond=0) for at in submitted}
    assert len(minutes) == len(submitted)
    for at in map(clock.to_local, submitted):
        assert at.weekday() < 5 and (8, 30) <= (at.hour, at.minute) <= (17, 30), at
        assert not (12, 0) <= (at.hour, at.minute) < (13, 30), at


def test_utilisation_spreads_like_a_real_network(demo_app):
    from portal.core import clock
    from portal.dashboard import services as dashboard

    # The last twelve months, which the demo's bookings cover (the year so far is a week in January).
    months = _months_back(clock.local_today(), 12)
    period = dashboard.Period(months[0], months[-1])
    ratios_cte = dashboard._ratios(period, None)  # booked ÷ open per instrument, as the page counts it
    ratios = [float(ratio) for (ratio,) in db.session.execute(select(ratios_cte.c.ratio))]
    assert len(ratios) in (1202, 1204)  # the Shanghai centre's two have no opening hours
    idle = sum(r < 0.01 for r in ratios)
    middle = sum(0.05 <= r <= 0.60 for r in ratios)
    full = sum(r >= 0.8 for r in ratios)
    assert 0.03 * len(ratios) <= idle <= 0.15 * len(ratios)  # a few idle (most awaiting repair)
    assert middle >= 0.65 * len(ratios)  # most between 5 % and 60 %
    assert 10 <= full <= 0.05 * len(ratios)  # a few near full
    assert max(ratios) <= 1.0


def test_controllers_and_contacts_have_plausible_names(demo_app):
    import re

    from portal.demo import data

    controllers = [
        e.actual_controller
        for e in db.session.scalars(select(Enterprise).where(Enterprise.actual_controller.is_not(None)))
    ]
    assert len(controllers) > 400
    people = [u.full_name for u in db.session.scalars(select(User))] + controllers
    placeholder = re.compile(r"[0-9]|控制人|联系人|用户|测试")
    assert [name for name in people if placeholder.search(name or "")] == []
    for name in controllers:
        assert name[0] in data.SURNAMES and name[1:] in data.GIVEN_NAMES, name
    # Some enterprises share a controller (the group cap groups them); no namesakes by accident.
    shared = {c for c in controllers if controllers.count(c) > 1}
    assert shared and all(controllers.count(c) in (2, 3) for c in shared)


def test_the_demo_has_a_request_that_expires_in_its_first_minutes(demo_app):
    from datetime import timedelta

    from portal.booking.models import Booking, BookingState
    from portal.core.models import AuditEvent

    loaded = db.session.scalar(select(AuditEvent.created_at).where(AuditEvent.action == "demo.loaded"))
    ttl = timedelta(hours=demo_app.config["BOOKING_REQUEST_TTL_HOURS"])
    requests = db.session.scalars(select(Booking).where(Booking.state == BookingState.REQUESTED)).all()
    due = [b.created_at + ttl - loaded for b in requests]
    assert all(d > timedelta(0) for d in due)  # none was already overdue when the demo was loaded
    assert any(d <= timedelta(minutes=10) for d in due)
    # And a public notice that ends within a day or two: the scheduler makes it payable then.
    from portal.core import clock
    from portal.vouchers.models import Claim, ClaimState

    ends = [
        c.notice_ends_on for c in db.session.scalars(select(Claim).where(Claim.state == ClaimState.IN_NOTICE))
    ]
    assert ends and min(ends) <= clock.local_today(loaded) + timedelta(days=3)


def test_the_demo_scheduler_runs_the_beat_tasks_so_requests_expire(
    app, fake_clock, make_instrument, make_user, make_booking
):
    from datetime import timedelta

    from portal import BEAT_SCHEDULE
    from portal.booking.models import Booking, BookingState
    from portal.demo.scheduler import DemoScheduler

    instrument = make_instrument()
    owner = make_user(Role.ENTERPRISE)
    starts = fake_clock() + timedelta(days=10)
    booking = make_booking(instrument, owner, starts, starts + timedelta(hours=2))
    scheduler = DemoScheduler(app)
    # Every interval task runs at once; the nightly ones (tallies, the end of admissions' notice) wait
    # for their hour.
    ran = scheduler.run_due()
    nightly = {"nightly-tallies", "nightly-usage-tallies", "end-admission-notice"}
    assert set(ran) == set(BEAT_SCHEDULE) - nightly
    assert db.session.get(Booking, booking.id, populate_existing=True).state is BookingState.REQUESTED
    assert scheduler.run_due() == []  # nothing is due again within the minute
    fake_clock.advance(hours=app.config["BOOKING_REQUEST_TTL_HOURS"] + 1)
    later = scheduler.last_run["expire-unanswered-booking-requests"] + timedelta(seconds=61)
    assert "expire-unanswered-booking-requests" in scheduler.run_due(later)
    db.session.rollback()  # the scheduler worked in a session of its own: read past our snapshot
    assert db.session.get(Booking, booking.id, populate_existing=True).state is BookingState.EXPIRED


def test_demo_serve_points_mail_links_at_its_port(app, monkeypatch):
    from portal.demo.cli import serving_base_url

    monkeypatch.delenv("PORTAL_BASE_URL", raising=False)
    assert serving_base_url("127.0.0.1", 8123) == "http://127.0.0.1:8123"
    monkeypatch.setenv("PORTAL_BASE_URL", "https://kjj.example.cn/portal")
    assert serving_base_url("127.0.0.1", 8123) == "https://kjj.example.cn/portal"


def test_the_national_fields_and_a_year_of_internal_use_give_the_evaluation_a_spread(demo_app):
    """Issue 19: every instrument has its national fields; the evaluation of the last full year (the
    page's default, whatever the month of the load) shows some instruments above their norm and most
    below, and its figures equal a direct computation over the rows."""
    from collections import defaultdict
    from decimal import Decimal

    from portal.booking.models import Booking, BookingState, ServiceRecord
    from portal.catalog.models import Instrument
    from portal.core import clock
    from portal.reporting import services
    from portal.reporting.hours import Scope, year_bounds
    from portal.usage.models import InternalUse, UsageSession

    instruments = db.session.scalars(select(Instrument)).all()
    assert all(i.acquisition and i.subject_area and i.department for i in instruments)
    assert 0 < sum(i.customs_supervised for i in instruments) < len(instruments)
    assert 0 < sum(i.specialised for i in instruments) < len(instruments) // 3
    year = clock.local_today().year - 1  # the last full year, which the page shows by default
    result = services.evaluate(Scope(), year)
    above = [s for s in result.instruments if not s.below_norm]
    assert 0 < len(above) < len(result.instruments) // 4, len(above)

    start, end = year_bounds(year)

    def hours(a, b) -> Decimal:
        return Decimal((b - a).total_seconds()) / 3600

    busiest = sorted(result.instruments, key=lambda s: s.hours.effective_hours)[-3:]
    for score in [*busiest, result.instruments[0], result.instruments[len(result.instruments) // 2]]:
        instrument_id = score.instrument.id
        metered: dict[int, Decimal] = defaultdict(Decimal)
        for s in db.session.scalars(
            select(UsageSession).where(
                UsageSession.instrument_id == instrument_id, UsageSession.ended_at.is_not(None)
            )
        ):
            if s.booking_id is not None:
                metered[s.booking_id] += hours(s.started_at, s.ended_at)
        service = Decimal(0)
        for booking, record in db.session.execute(
            select(Booking, ServiceRecord)
            .join(ServiceRecord, ServiceRecord.booking_id == Booking.id)
            .where(Booking.instrument_id == instrument_id, Booking.state == BookingState.COMPLETED)
        ):
            when = booking.starts_at or record.recorded_at
            if start <= when < end:
                service += metered[booking.id] if booking.id in metered else (record.hours or Decimal(0))
        internal = sum(
            (
                hours(u.started_at, u.ended_at)
                for u in db.session.scalars(
                    select(InternalUse).where(InternalUse.instrument_id == instrument_id)
                )
                if start <= u.started_at < end
            ),
            Decimal(0),
        )
        assert abs(score.hours.service_hours - service) <= Decimal("0.02"), score.instrument.code
        assert abs(score.hours.internal_hours - internal) <= Decimal("0.01"), score.instrument.code


@pytest.mark.parametrize(
    ("today", "years"),
    [
        (date(2026, 11, 30), [2026]),
        (date(2026, 12, 1), [2026, 2027]),
        (date(2026, 12, 31), [2026, 2027]),
        (date(2027, 1, 1), [2026, 2027]),
        (date(2027, 1, 31), [2026, 2027]),
        (date(2027, 2, 1), [2027]),
    ],
)
def test_from_december_the_demo_publishes_next_years_scheme_too(today, years):
    from portal.demo.vouchers import scheme_years

    assert scheme_years(today) == years


def test_the_demo_has_a_scheme_for_every_year_it_publishes(demo_app):
    from portal.core import clock
    from portal.demo.vouchers import scheme_years
    from portal.vouchers.models import Scheme

    held = set(db.session.scalars(select(Scheme.year)))
    assert held == set(scheme_years(clock.local_today()))


def test_one_institutions_report_is_final_and_nothing_changed_since(demo_app):
    from portal.reporting import submissions
    from portal.reporting.models import ReportSnapshot

    (snapshot,) = db.session.scalars(select(ReportSnapshot)).all()
    host = db.session.get(Institution, snapshot.institution_id)
    assert (host.name, snapshot.version) == ("聊城大学", 1)
    assert submissions.differences(snapshot) == []


def test_the_scheme_offers_both_modes_and_an_out_of_province_claim_waits(demo_app):
    from portal.core import clock
    from portal.demo.vouchers import voucher_year
    from portal.vouchers.models import Claim, ClaimState, Scheme

    scheme = db.session.scalar(select(Scheme).where(Scheme.year == voucher_year(clock.local_today())))
    assert scheme.redemption_modes == ["reimbursement", "at_payment"]
    assert str(scheme.out_of_province_rate) == "0.3000" and scheme.redemption_days == 30
    (host,) = db.session.scalars(select(Institution).where(Institution.in_province.is_(False)))
    assert host.is_local is False
    assert count(Instrument, Instrument.institution_id == host.id) == 2
    (claim,) = db.session.scalars(select(Claim).where(Claim.out_of_province.is_(True)))
    assert claim.state is ClaimState.SUBMITTED and claim.institution_id == host.id
    assert claim.enterprise_id == db.session.scalar(
        select(User.enterprise_id).where(User.username == "enterprise")
    )
    assert len(claim.justification) >= 20
    assert claim.fund_amounts() == {"province": claim.fee_fen * 30 // 100, "city": 0}
    assert all(c["passed"] for c in claim.checks)


def test_one_providers_admission_is_in_public_notice_and_the_rest_are_admitted(demo_app, demo_client):
    """Issue 21: one host applied a few days ago and is in its public notice; the others are admitted."""
    noticed = db.session.scalars(select(ProviderAdmission)).all()
    assert [a.state for a in noticed] == [AdmissionState.IN_NOTICE]
    assert 0 < (noticed[0].notice_ends_on - clock.local_today()).days <= 7  # ends in a few days
    states = dict(
        db.session.execute(
            select(Institution.name, Institution.admission).where(Institution.in_province.is_(True))
        ).all()
    )
    assert states.pop(noticed[0].institution.name) == "in_notice"
    assert set(states.values()) == {"admitted"}
    # The Shanghai test centre is outside the scheme's admission: its services are decided case by case.
    outside = db.session.scalars(select(Institution.admission).where(Institution.in_province.is_(False)))
    assert set(outside) == {"none"}
    assert noticed[0].institution.name in demo_client.get("/admission/notices").get_data(as_text=True)
