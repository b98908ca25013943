"""The deterministic demo network: the same seed always gives the same institutions, instruments and users.

Rows are inserted in bulk (not object by object) so that the same code fills a benchmark database
with 100,000 instruments in reasonable time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import event, insert, select
from stdnum.cn import uscc as stdnum_uscc

from portal.accounts.models import (
    Enterprise,
    EnterpriseKind,
    Institution,
    InstitutionKind,
    User,
    VerificationState,
)
from portal.accounts.services import hash_password
from portal.catalog.models import Category, Instrument, InstrumentStatus, OpeningHours, SharingMode
from portal.catalog.services import bump_catalog_version
from portal.core import audit
from portal.core.permissions import Role
from portal.demo import (
    DEFAULT_BOOKINGS,
    DEFAULT_ENTERPRISE_USERS,
    DEFAULT_INSTRUMENTS,
    DEFAULT_VOUCHERS,
    DEMO_PASSWORD,
    activity,
    data,
    fairness,
    usage,
    use_rules,
)
from portal.demo import admission as demo_admission
from portal.demo import photos as demo_photos
from portal.demo import province as demo_province
from portal.demo import redemptions as demo_redemptions
from portal.demo import reporting as demo_reporting
from portal.demo import series as demo_series
from portal.demo import vouchers as voucher_demo
from portal.demo.catalog_imports import load_catalog_imports
from portal.extensions import db
from portal.usage import tallies

BATCH = 2000

# Administrative division codes used in credit codes (Liaocheng is 3715xx).
COUNTY_DIVISIONS = {
    "东昌府区": "371502",
    "茌平区": "371503",
    "阳谷县": "371521",
    "莘县": "371522",
    "东阿县": "371524",
    "冠县": "371525",
    "高唐县": "371526",
    "临清市": "371581",
    "高新区": "371571",
    "经开区": "371572",
    "度假区": "371573",
}
STATUS_WEIGHTS = {
    InstrumentStatus.NORMAL: 82,
    InstrumentStatus.STANDBY: 7,
    InstrumentStatus.OCCASIONAL_FAULT: 5,
    InstrumentStatus.FREQUENT_FAULT: 1,
    InstrumentStatus.AWAITING_REPAIR: 4,
    InstrumentStatus.AWAITING_SCRAP: 1,
}
ENTERPRISE_KIND_WEIGHTS = {
    EnterpriseKind.TECH_SME: 62,
    EnterpriseKind.HIGH_TECH: 20,
    EnterpriseKind.MAKER_TEAM: 10,
    EnterpriseKind.OTHER: 8,
}
STAFF_ACCOUNTS = (
    ("admin", Role.ADMIN, "系统管理员"),
    ("reviewer", Role.REVIEWER, "王审核"),
    ("reviewer2", Role.REVIEWER, "李复核"),
    ("finance", Role.FINANCE, "赵财务"),
)


@dataclass
class DemoSummary:
    institutions: int = 0
    instruments: int = 0
    enterprise_users: int = 0
    staff_users: int = 0
    bookings: int = 0
    vouchers: int = 0
    claims: int = 0
    photos: int = 0


def make_uscc(rng: random.Random, division: str, *, public_body: bool = False) -> str:
    """A well-formed credit code with a correct check character (fictional, never a real company's)."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    head = ("12" if public_body else "91") + division
    organisation = "".join(rng.choice(alphabet[:10] if i < 8 else alphabet) for i in range(9))
    body = head + organisation
    return body + stdnum_uscc.calc_check_digit(body)


def _person(rng: random.Random) -> str:
    return data.person_name(rng)


def _room(rng: random.Random) -> str:
    return f"{rng.randint(1, 12)}号楼{rng.randint(1, 6)}{rng.randint(1, 30):02d}室"


def _weighted(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _shares(total: int, weights: list[int]) -> list[int]:
    """Split `total` in proportion to `weights` exactly (largest remainder)."""
    whole = sum(weights)
    raw = [total * w / whole for w in weights]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _round_fee(rng: random.Random, span: tuple[int, int] | None) -> int | None:
    if span is None:
        return None
    low, high = span
    return rng.randint(low // 10, max(low // 10, high // 10)) * 10 * 100


def _opening_hours(rng: random.Random, instrument_id: int) -> list[dict]:
    rows = []
    late = rng.random() < 0.15
    saturday = rng.random() < 0.25
    # Two labs in three run their instruments through the lunch hour; the rest close from 12 to 2.
    lunch_break = instrument_id % 3 == 0
    for weekday in range(5):
        closes = time(21, 0) if late else time(17, 30)
        if lunch_break:
            rows.append(
                dict(
                    instrument_id=instrument_id, weekday=weekday, opens_at=time(8, 30), closes_at=time(12, 0)
                )
            )
        rows.append(
            dict(
                instrument_id=instrument_id,
                weekday=weekday,
                opens_at=time(14, 0) if lunch_break else time(8, 30),
                closes_at=closes,
            )
        )
    if saturday:
        rows.append(dict(instrument_id=instrument_id, weekday=5, opens_at=time(9, 0), closes_at=time(12, 0)))
    return rows


def database_has_data() -> bool:
    return db.session.scalar(select(Instrument.id).limit(1)) is not None or (
        db.session.scalar(select(User.id).limit(1)) is not None
    )


def load_demo(
    *,
    instruments: int = DEFAULT_INSTRUMENTS,
    enterprise_users: int = DEFAULT_ENTERPRISE_USERS,
    bookings: int = DEFAULT_BOOKINGS,
    vouchers: int = DEFAULT_VOUCHERS,
    seed: int = 2026,
) -> DemoSummary:
    """Fill an empty, migrated database with the demo network and the demo accounts."""
    with _quick_sqlite_commits():
        return _load_demo(instruments, enterprise_users, bookings, vouchers, seed)


@contextmanager
def _quick_sqlite_commits() -> Iterator[None]:
    """SQLite waits for the disk at every commit (synchronous=FULL); the voucher year commits a few
    thousand times through the real services. In WAL mode NORMAL is still safe from corruption (a
    power cut loses the last commits, here: of a demo being loaded), and the load takes half as long."""
    if db.engine.dialect.name != "sqlite":
        yield
        return

    def relax(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(db.engine, "checkout", relax)
    try:
        db.session.commit()
        db.session.close()  # the next statement checks a connection out, and relaxes it
        yield
    finally:
        event.remove(db.engine, "checkout", relax)


def _load_demo(
    instruments: int, enterprise_users: int, bookings: int, vouchers: int, seed: int
) -> DemoSummary:
    rng = random.Random(seed)
    summary = DemoSummary()
    password_hash = hash_password(DEMO_PASSWORD)  # hashed once: every demo account shares the password

    institutions = _load_institutions(rng)
    summary.institutions = len(institutions)
    summary.instruments = _load_instruments(rng, institutions, instruments)
    summary.staff_users = _load_staff(rng, institutions, password_hash)
    summary.enterprise_users = _load_enterprises(rng, password_hash, enterprise_users)
    summary.bookings = activity.load_bookings(rng, bookings)
    db.session.commit()
    if vouchers:
        # A redemption at payment early in the year's queue, so that one of its batches pays it.
        year = voucher_demo.load_voucher_year(rng, vouchers, demo_redemptions.schedule_paid_redemption)
        summary.vouchers, summary.claims = year["vouchers"], year["claims"]
        demo_province.load_out_of_province()  # a Shanghai provider, and a claim for its service waiting
        demo_redemptions.load_redemptions()  # vouchers at payment, a redemption in each state
    load_catalog_imports()
    use_rules.load_use_rules()  # qualifications and price tables, on the instruments and bookings above
    usage.load_usage()  # metered use of the completed bookings
    demo_reporting.load_reporting()  # the national fields, the bookings' purposes, internal use
    fairness.load_credit()  # the no-shows' violations: one enterprise suspended
    demo_series.load_weekly_series()  # a confirmed weekly series ahead
    # A generator of its own, so the photos leave every other demo value as it was.
    summary.photos = demo_photos.load_photos(random.Random(seed))
    _analyze()  # the report below reads every table: let PostgreSQL plan with the rows just loaded
    tallies.tally_all()  # the usage tallies (months and years) of everything loaded above (the evaluation's)
    demo_reporting.load_final_report()  # one institution's report of the year, final (issue 19)
    demo_admission.load_admission()  # one host's admission in its public notice (issue 21)
    bump_catalog_version()
    activity.keep_the_expiring_request_due()
    fairness.load_waitlist()  # last: its offer's window runs from the end of the load
    audit.record("demo.loaded", "catalog", None, after={"seed": seed, **summary.__dict__})
    db.session.commit()
    _analyze()
    return summary


def _analyze() -> None:
    """Fresh statistics on PostgreSQL, so the planner knows the new rows before autovacuum gets round
    to them."""
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def _load_institutions(rng: random.Random) -> list[tuple[data.Host, Institution]]:
    out = []
    for host in data.HOSTS:
        institution = Institution(
            name=host.name,
            uscc=make_uscc(
                rng, COUNTY_DIVISIONS.get(host.county, "371500"), public_body=host.kind != "company"
            ),
            kind=InstitutionKind(host.kind),
            county=host.county,
            address=host.address,
            is_local=True,
            admission="admitted",  # the demo's admission in notice is made in portal.demo.admission
        )
        db.session.add(institution)
        out.append((host, institution))
    db.session.flush()
    return out


def _kinds_for(host: data.Host) -> tuple[list[data.Kind], list[int]]:
    focus = set(host.focus)
    kinds = list(data.KINDS)
    # Mostly the host's own fields, with a thin spread of everything else.
    weights = [12 if k.category_code[:2] in focus else 1 for k in kinds]
    return kinds, weights


def _load_instruments(
    rng: random.Random, institutions: list[tuple[data.Host, Institution]], total: int
) -> int:
    categories = {c.code: c.id for c in db.session.scalars(select(Category))}
    counts = _shares(total, [host.weight for host, _inst in institutions])
    start = date(2008, 1, 1)
    span_days = (date(2025, 6, 30) - start).days
    rows: list[dict] = []
    for (host, institution), count in zip(institutions, counts, strict=True):
        kinds, weights = _kinds_for(host)
        for seq in range(1, count + 1):
            kind = rng.choices(kinds, weights=weights)[0]
            make = rng.choice(kind.makes)
            values = {
                "code": f"{host.short}-{seq:05d}",
                "name": kind.name,
                "name_en": kind.name_en,
                "category_id": categories[kind.category_code],
                "model": rng.choice(make.models),
                "manufacturer": make.manufacturer,
                "country_of_origin": make.country,
                "original_value_fen": rng.randint(kind.value_wan[0] * 100, kind.value_wan[1] * 100) * 10_000,
                "in_service_on": start + timedelta(days=rng.randint(0, span_days)),
                "specs": kind.specs,
                "functions": kind.functions,
                "service_content": kind.service,
                "status": _weighted(rng, STATUS_WEIGHTS),
                "sharing_mode": SharingMode.OPEN if rng.random() < 0.85 else SharingMode.CONDITIONAL,
                "fee_per_hour_fen": _round_fee(rng, kind.fee_per_hour_yuan),
                "fee_per_sample_fen": _round_fee(rng, kind.fee_per_sample_yuan),
                "institution_id": institution.id,
                "county": host.county,
                "address": host.address + _room(rng),
                "operator_name": _person(rng),
                "operator_phone": f"0635-{rng.randint(8100000, 8599999)}",
            }
            values.update(Instrument.derived_values(values, institution.name))
            rows.append(values)
    for offset in range(0, len(rows), BATCH):
        db.session.execute(insert(Instrument), rows[offset : offset + BATCH])
    ids = db.session.scalars(select(Instrument.id).order_by(Instrument.id)).all()
    hours: list[dict] = []
    for instrument_id in ids:
        hours.extend(_opening_hours(rng, instrument_id))
        if len(hours) >= BATCH * 5:
            db.session.execute(insert(OpeningHours), hours)
            hours = []
    if hours:
        db.session.execute(insert(OpeningHours), hours)
    return len(rows)


def _load_staff(
    rng: random.Random, institutions: list[tuple[data.Host, Institution]], password_hash: str
) -> int:
    def user(username: str, role: Role, full_name: str, **extra) -> User:
        return User(
            username=username,
            role=role,
            full_name=full_name,
            password_hash=password_hash,
            email=f"{username}@example.cn",
            **extra,
        )

    users = [user(name, role, full_name) for name, role, full_name in STAFF_ACCOUNTS]
    # The two published provider logins; every other host gets an instrument manager of its own.
    named = {
        "聊城大学": ("provider", "13806350001"),
        "鲁西化工集团股份有限公司": ("provider2", "13806350002"),
    }
    for host, institution in institutions:
        username, phone = named.get(institution.name, (f"provider-{host.short.lower()}", None))
        users.append(user(username, Role.PROVIDER, _person(rng), institution=institution, phone=phone))
    db.session.add_all(users)
    db.session.flush()
    return len(users)


def _company_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        place = rng.choice(("聊城", "聊城", "山东", "聊城市"))
        name = (
            place
            + rng.choice(data.COMPANY_PREFIXES)
            + rng.choice(data.COMPANY_INDUSTRIES)
            + rng.choice(data.COMPANY_SUFFIXES)
        )
        if name not in taken:
            taken.add(name)
            return name


def _load_enterprises(rng: random.Random, password_hash: str, total: int) -> int:
    counties = list(current_app.config["COUNTIES"])
    taken: set[str] = set()
    usccs: set[str] = set()
    named = (
        ("enterprise", VerificationState.VERIFIED, EnterpriseKind.TECH_SME),
        ("enterprise2", VerificationState.VERIFIED, EnterpriseKind.HIGH_TECH),
        ("newco", VerificationState.PENDING, EnterpriseKind.TECH_SME),
        # Issue 18: its online booking is suspended for no-shows (activity.SHOWCASE, demo/fairness.py).
        ("enterprise3", VerificationState.VERIFIED, EnterpriseKind.HIGH_TECH),
    )
    enterprise_rows = []
    user_rows: list[dict[str, Any]] = []
    # One of the users is a colleague at the demo enterprise (not its account holder), so there is one
    # enterprise fewer than users.
    holders = total - 1 if total > len(named) else total
    for n in range(holders):
        if n < len(named):
            username, state, kind = named[n]
        else:
            username = f"ent{n:04d}"
            state = rng.choices(
                [VerificationState.VERIFIED, VerificationState.PENDING, VerificationState.REJECTED],
                [82, 14, 4],
            )[0]
            kind = _weighted(rng, ENTERPRISE_KIND_WEIGHTS)
        county = rng.choice(counties)
        uscc = make_uscc(rng, COUNTY_DIVISIONS.get(county, "371500"))
        while uscc in usccs:
            uscc = make_uscc(rng, COUNTY_DIVISIONS.get(county, "371500"))
        usccs.add(uscc)
        enterprise_rows.append(
            {
                "uscc": uscc,
                "name": _company_name(rng, taken),
                "kind": kind,
                "county": county,
                "verification_state": state,
            }
        )
        user_rows.append(
            {
                "username": username,
                "email": f"{username}@example.cn",
                "password_hash": password_hash,
                "role": Role.ENTERPRISE,
                "full_name": _person(rng),
                "phone": f"1{rng.choice('3578')}{rng.randint(0, 999999999):09d}",
                "language": "zh",
                "is_holder": True,
                "uscc": uscc,
            }
        )
    for offset in range(0, len(enterprise_rows), BATCH):
        db.session.execute(insert(Enterprise), enterprise_rows[offset : offset + BATCH])
    ids = dict(db.session.execute(select(Enterprise.uscc, Enterprise.id)).all())
    for row in user_rows:
        row["enterprise_id"] = ids[row.pop("uscc")]
    enterprise_of_holder = {row["username"]: row["enterprise_id"] for row in user_rows[: len(named)]}
    if holders < total:
        user_rows.append(
            {
                "username": "enterprise-staff",
                "email": "enterprise-staff@example.cn",
                "password_hash": password_hash,
                "role": Role.ENTERPRISE,
                "full_name": "赵敏",
                "phone": "13806350010",
                "language": "zh",
                "is_holder": False,
                "enterprise_id": enterprise_of_holder["enterprise"],
            }
        )
    for offset in range(0, len(user_rows), BATCH):
        db.session.execute(insert(User), user_rows[offset : offset + BATCH])
    return len(user_rows)
