"""The demo's voucher year: the published scheme, verified enterprises with vouchers, claims in every state.

Everything goes through the real services (applications approved by the demo reviewers, claims
submitted and decided), so budgets, caps, balances, ledgers and the audit trail are consistent.
"""

from __future__ import annotations

import heapq
import io
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import exists, select

from portal.accounts import banking
from portal.accounts.models import Enterprise, User, VerificationState
from portal.booking.models import Booking, BookingState, FileKind, ServiceFile, ServiceRecord, ServiceType
from portal.catalog.models import Instrument
from portal.core import clock, uploads
from portal.core.errors import ServiceError
from portal.core.permissions import Role
from portal.demo import data
from portal.extensions import db
from portal.finance import batches
from portal.finance import services as finance
from portal.vouchers import applications as application_services
from portal.vouchers import claims as claim_services
from portal.vouchers import notice as public_notice
from portal.vouchers import review as desk
from portal.vouchers import schemes, verification, wallet
from portal.vouchers.models import Claim, ClaimItem, ClaimState, FundCondition, RedemptionMode

YUAN = 100
EVIDENCE = (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT)
# A tiny but well-formed PDF (uploads refuse one pypdf cannot read), stored once per demo document.
DEMO_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    b"xref\n0 3\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n"
    b"trailer<</Size 3/Root 1 0 R>>\nstartxref\n96\n%%EOF\n"
)


def N_(text: str) -> str:
    """A text stored untranslated and translated where it is shown (`make extract-messages` finds it)."""
    return text


def published_scheme(year: int) -> tuple[dict, list[schemes.FundSettings]]:
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
        # Both ways of paying (DESIGN section 13); a provider outside Shandong at 30 %, never the city's.
        "redemption_modes": [RedemptionMode.REIMBURSEMENT.value, RedemptionMode.AT_PAYMENT.value],
        "out_of_province_rate": Decimal("0.30"),
        "redemption_days": 30,
    }
    # The funds' names are the API's (`province`, `city`); their labels are texts of the catalogue,
    # so each page shows them in its language.
    funds = [
        schemes.FundSettings(
            "province",
            Decimal("0.60"),
            FundCondition.ALWAYS.value,
            4_000_000 * YUAN,
            True,
            label=N_("Provincial voucher"),
        ),
        schemes.FundSettings(
            "city",
            Decimal("0.30"),
            FundCondition.LOCAL_PROVIDER.value,
            2_000_000 * YUAN,
            label=N_("Liaocheng top-up"),
        ),
    ]
    return values, funds


def _user(username: str) -> User:
    return db.session.execute(select(User).where(User.username == username)).scalar_one()


def _attach_evidence(record: ServiceRecord, uploader_id: int) -> None:
    for kind in EVIDENCE:
        stored = uploads.store_upload(io.BytesIO(DEMO_PDF), f"{kind.value}-{record.id}.pdf")
        db.session.add(ServiceFile.from_upload(stored, record.id, kind, uploader_id))


def _decide(application_or_claim: str, item_id: int, amount_fen: int | None, reviewers: list[User]) -> None:
    """Approve, with the second reviewer when the amount needs four eyes."""
    for reviewer in reviewers:
        try:
            if application_or_claim == "application":
                application = application_services.approve_application(
                    reviewer, item_id, amount_fen=amount_fen
                )
                if application.state.value == "approved":
                    return
            else:
                claim = desk.approve_claim(reviewer, item_id)
                if claim.state is ClaimState.IN_NOTICE:
                    return
        except ServiceError:
            return


@contextmanager
def simulated_clock(start: datetime) -> Iterator[list[datetime]]:
    """The application's clock stands at the moment in the yielded list (change it to move time), so the
    real services date what they do back into the demo's year. Stored rows' defaults follow it too."""
    moment = [start]
    saved = clock.utcnow

    def now() -> datetime:
        return moment[0]

    clock.utcnow = now  # every module reads `clock.utcnow()` at call time, so one assignment moves all
    try:
        yield moment
    finally:
        clock.utcnow = saved


class _Year:
    """The voucher year as a queue of dated events, run in order on the simulated clock: applications,
    their review, claims a few days after the services, review, the end of public notice (as the
    hourly task would), and finance's monthly disbursement batch."""

    def __init__(self, rng: random.Random, now: datetime, reviewers: list[User], year: int) -> None:
        self.rng, self.now, self.reviewers = rng, now, reviewers
        self.today = clock.local_today(now)
        self.first_day = date(year, 1, 1)
        # The day after the scheme's service window: services from then on are not the year's.
        self.window_ends = date(year + 1, 1, 1)
        self.approval_months: set[tuple[int, int]] = set()  # months with an approval to come
        self.span = max((self.today - self.first_day).days, 1)
        self.events: list[tuple[datetime, int, Callable[..., object], tuple]] = []
        self.sequence = 0
        self.minutes: set[datetime] = set()  # no two claims submitted in the same minute
        self.counts = {"vouchers": 0, "claims": 0, "paid": 0}
        self.clerk = _user("finance")
        self.recent = 0
        self.moment: list[datetime] = [now]
        # Finance pays twice a month, on the 1st and the 20th (or the next working day), whatever has
        # become payable since.
        month = self.first_day
        while month <= self.today:  # in January, through last year's months and into this one
            for day_of_month in (1, 20):
                day = month.replace(day=day_of_month)
                while day.weekday() >= 5:
                    day += timedelta(days=1)
                self.push(clock.local_datetime_to_utc(day, time(10, 0)), self.pay)
            month = (month + timedelta(days=31)).replace(day=1)

    def push(self, at: datetime, action: Callable[..., object], *args) -> None:
        if at < self.now:
            self.sequence += 1
            heapq.heappush(self.events, (at, self.sequence, action, args))

    def working_day_moment(self, day: date) -> datetime:
        """A minute in office hours on `day`, or on the working day before."""
        while day.weekday() >= 5:
            day -= timedelta(days=1)
        return self.working_moment(day)

    def working_moment(self, day: date) -> datetime:
        """A minute in office hours (Beijing time) on `day`, or on the next working day."""
        while day.weekday() >= 5:
            day += timedelta(days=1)
        minute = self.rng.randint(8 * 60 + 40, 17 * 60 + 20)
        if 12 * 60 <= minute < 13 * 60 + 30:
            minute += 90  # nobody works through lunch
        return clock.local_datetime_to_utc(day, time(minute // 60, minute % 60))

    def run(self, moment: list[datetime]) -> None:
        self.moment = moment
        while self.events:
            at, _n, action, args = heapq.heappop(self.events)
            moment[0] = at
            action(*args)
        moment[0] = self.now

    def apply(self, user: User) -> None:
        amount = self.rng.choice((30_000, 50_000, 80_000, 100_000, 150_000)) * YUAN
        try:
            application = application_services.apply_for_voucher(
                user, amount, "围绕新产品研发开展检测分析，预计使用大型仪器共享服务。"
            )
        except ServiceError:
            return
        later = self.working_moment(
            clock.local_today(clock.utcnow()) + timedelta(days=self.rng.randint(1, 4))
        )
        self.push(later, self.approve_application, user, application.id, amount)

    def approve_application(self, user: User, application_id: int, amount: int) -> None:
        _decide("application", application_id, amount, self.reviewers)
        voucher = next(iter(wallet.vouchers_for(user)), None)
        if voucher is None:
            return
        self.counts["vouchers"] += 1
        _bank_accounts(self.rng, [user], self.reviewers[0])
        issued = clock.local_today(voucher.issued_at)
        if user.username == "enterprise":
            # The demo enterprise makes its own claim, from the pages: its latest services have evidence.
            for record, _host in self.records(user, issued, self.today)[-6:]:
                _attach_evidence(record, record.recorded_by_id or user.id)
            db.session.commit()
            return
        # Two to four claims on days drawn from the voucher's first days to the last week (so every
        # month has some), each for the latest services at one provider.
        room = max((self.today - issued).days - 4, 1)
        offsets = sorted(self.rng.randint(1, room) for _n in range(self.rng.randint(2, 4)))
        if issued.month == 1:
            offsets[0] = self.rng.randint(1, 4)  # January's vouchers are used at once
        else:
            # Every voucher's first claim comes within its first weeks: vouchers are issued from
            # January to June, so each of those months has claims whatever the date of the load.
            offsets[0] = self.rng.randint(1, min(room, 25))
        if issued.month == 1 and len(offsets) > 1:
            offsets[1] = max(offsets[1], 32 - issued.day + self.rng.randint(0, 20))  # and again in February
        for offset in offsets:
            day = issued + timedelta(days=offset)
            self.push(self.working_moment(day), self.claim, user, voucher.id)
        if self.recent < len(RECENT) and voucher.valid_until >= self.today:
            # By construction, the last weeks hold claims in every stage: approved a week ago (its notice
            # ends today or tomorrow), approved in the last days (in notice), waiting for review.
            approved_ago, submitted_ago = RECENT[self.recent]
            self.recent += 1
            day = self.today - timedelta(days=submitted_ago)
            self.push(self.working_moment(day), self.claim, user, voucher.id, approved_ago)

    def records(self, user: User, since: date, until: date) -> list[tuple[ServiceRecord, int]]:
        """The enterprise's rated, unclaimed services in the days given (within the scheme's service
        window), oldest first, with their provider."""
        until = min(until, self.window_ends + timedelta(days=1))  # `until` is a day past the last
        return [
            (record, host)
            for record, host in db.session.execute(
                select(ServiceRecord, Instrument.institution_id)
                .join(Booking, Booking.id == ServiceRecord.booking_id)
                .join(Instrument, Instrument.id == Booking.instrument_id)
                .where(
                    Booking.enterprise_id == user.enterprise_id,
                    Booking.state == BookingState.COMPLETED,
                    ServiceRecord.rating.is_not(None),
                    ServiceRecord.recorded_at >= clock.local_datetime_to_utc(since, time(0)),
                    ServiceRecord.recorded_at
                    < clock.local_datetime_to_utc(until - timedelta(days=1), time(0)),
                    ~exists().where(ClaimItem.service_record_id == ServiceRecord.id),
                )
                .order_by(ServiceRecord.recorded_at, ServiceRecord.id)
            )
        ]

    def claim(self, user: User, voucher_id: int, approved_ago: int | None = None) -> None:
        submitted = clock.utcnow()
        while submitted in self.minutes:  # another minute of the same day's office hours
            submitted = self.working_moment(clock.local_today(submitted))
        self.minutes.add(submitted)
        self.moment[0] = submitted
        records = self.records(user, self.first_day, clock.local_today(submitted))
        if not records:
            return
        # One claim per provider: the latest services at the provider of the latest one.
        chosen = [r for r, host in records if host == records[-1][1]][-3:]
        for record in chosen:
            _attach_evidence(record, record.recorded_by_id or user.id)
        db.session.commit()
        try:
            claim = claim_services.create_claim(user, voucher_id, [r.id for r in chosen])
            claim_services.submit_claim(user, claim.id)
        except ServiceError as error:
            current_app.logger.info("demo claim refused: %s", error)
            db.session.rollback()
            return
        self.counts["claims"] += 1
        fate = self.rng.random()
        # Reviewed within a week; in January, when little else waits, the next day (so that January's
        # first claims are through their notice and paid within the month).
        wait = 1 if clock.local_today(submitted).month == 1 else self.rng.randint(1, 6)
        decided = self.working_moment(clock.local_today(submitted) + timedelta(days=wait))
        month = (clock.local_today(decided).year, clock.local_today(decided).month)
        if month not in self.approval_months:
            fate = 0.0  # every month of the year has an approval, whatever the draws of the year
        if approved_ago is not None:
            if approved_ago >= 0:
                self.push(
                    self.working_day_moment(self.today - timedelta(days=approved_ago)),
                    self.approve_claim,
                    claim.id,
                )
        elif fate < 0.85:
            self.approval_months.add(month)
            self.push(decided, self.approve_claim, claim.id)
        elif fate < 0.93:
            self.push(decided, self.return_claim, claim.id)

    def approve_claim(self, claim_id: int) -> None:
        _decide("claim", claim_id, None, self.reviewers)
        claim = db.session.get_one(Claim, claim_id)
        if claim.state is ClaimState.IN_NOTICE and claim.notice_ends_on is not None:
            # The hourly task ends the notice in the small hours of its last day.
            end = clock.local_datetime_to_utc(claim.notice_ends_on, time(0, 5))
            self.push(end, public_notice.end_public_notice, claim.notice_ends_on)

    def return_claim(self, claim_id: int) -> None:
        desk.return_claim(self.reviewers[0], claim_id, "请补充付款凭证的清晰扫描件")

    def pay(self) -> None:
        if not finance.claims_waiting_for_batch():
            return
        try:
            batch = batches.build_batch(self.clerk, finance.month_of(clock.utcnow()))
        except ServiceError:
            db.session.rollback()
            return
        batches.export_batch(self.clerk, batch.id)
        paid_on = self.working_moment(clock.local_today(clock.utcnow()) + timedelta(days=2))
        self.push(paid_on, self.mark_paid, batch.id)

    def mark_paid(self, batch_id: int) -> None:
        batch = batches.mark_batch_paid(
            self.clerk, batch_id, f"DEMO-{clock.local_today(clock.utcnow()):%Y%m%d}-001"
        )
        self.counts["paid"] += batch.claims


# The last weeks' claims by construction: (approved how many days ago, or -1 for not yet; submitted how
# many days ago). A week ago: the notice ends today (the demo's scheduler makes it payable at once) or
# tomorrow; two and four days ago: in notice; one still waiting for a reviewer.
RECENT = ((7, 10), (6, 9), (4, 6), (2, 5), (-1, 2))

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
        enterprise = db.session.get_one(Enterprise, user.enterprise_id)
        bank, length = rng.choice(DEMO_BANKS)
        details = banking.BankAccountData(enterprise.name, bank, _bank_number(rng, length))
        try:
            account = banking.record_bank_account(user, details)
            banking.decide_bank_account(reviewer, account.id, "verify")
        except ServiceError:
            continue
        if user.username == "enterprise":
            # A change of bank, for a reviewer to look at.
            bank, length = next((b, n) for b, n in DEMO_BANKS if b != details.bank_name)
            banking.record_bank_account(
                user, banking.BankAccountData(enterprise.name, bank, _bank_number(rng, length))
            )


def voucher_year(today: date) -> int:
    """The scheme year whose work the demo shows: this one, except in January, when the new year's
    vouchers are only being applied for and last year's claims are still coming in, reviewed and paid:
    then last year's, run up to today."""
    return today.year - 1 if today.month == 1 else today.year


def scheme_years(today: date) -> list[int]:
    """The years the demo has a scheme for: the voucher year's, and in December and January the
    following year's too, as the bureau publishes it on the first working day of December (so a demo
    loaded in late December still has a scheme for the days after New Year, where a test's clock may
    stand)."""
    year = voucher_year(today)
    return [year, year + 1] if today.month in (12, 1) else [year]


def load_voucher_year(
    rng: random.Random, vouchers: int = 40, also: Callable[[_Year], None] | None = None
) -> dict[str, int]:
    """The voucher year's scheme (this year's; in January last year's), verified enterprises with
    vouchers, and claims in every state; `also` may queue more events into the year before it runs."""
    now = clock.utcnow()
    today = clock.local_today(now)
    year_number = voucher_year(today)
    admin, reviewers = _user("admin"), [_user("reviewer"), _user("reviewer2")]
    with simulated_clock(clock.local_datetime_to_utc(date(year_number - 1, 12, 10), time(10, 0))):
        schemes.save_scheme(admin, *published_scheme(year_number))
    if year_number + 1 in scheme_years(today):
        # Published on the first working day of December, before anything below happens.
        with simulated_clock(min(now, clock.local_datetime_to_utc(date(year_number, 12, 1), time(10, 0)))):
            schemes.copy_scheme_to_next_year(admin, year_number)
    verified = db.session.execute(
        select(User, Enterprise)
        .join(Enterprise, Enterprise.id == User.enterprise_id)
        .where(User.role == Role.ENTERPRISE, Enterprise.verification_state == VerificationState.VERIFIED)
        .order_by(User.id)
    ).all()
    # Every enterprise is controlled by a person; some share one (three at a time among every fifth
    # enterprise), so the group cap has something to group. Names are drawn without repeats, so no two
    # enterprises are grouped by an accidental namesake.
    taken: set[str] = set()
    shared: dict[int, str] = {}
    for index, (_user_row, enterprise) in enumerate(verified):
        if index % 5 == 0:
            if index // 15 not in shared:
                shared[index // 15] = data.person_name(rng, taken)
            enterprise.actual_controller = shared[index // 15]
        else:
            enterprise.actual_controller = data.person_name(rng, taken)
        enterprise.controller_group = verification.controller_key(enterprise.actual_controller)
    db.session.commit()

    chosen = [row for row in verified if row[0].username in ("enterprise", "enterprise2")]
    others = [row for row in verified if row[0].username not in ("enterprise", "enterprise2")]
    chosen += rng.sample(others, min(vouchers, len(others)))
    year = _Year(rng, now, reviewers, year_number)
    with simulated_clock(now) as moment:
        for index, (user, _enterprise) in enumerate(chosen):
            # Applications come in over the first half of the year (the demo accounts' and a few
            # others' in the first days of January, so that January has claims).
            days = 1 + index if index < 8 else 1 + index * year.span // (2 * len(chosen))
            asked = year.working_moment(year.first_day + timedelta(days=days))
            year.push(asked, year.apply, user)
        if also is not None:
            also(year)
        year.run(moment)
    current_app.logger.info("demo voucher year: %s", year.counts)
    return year.counts
