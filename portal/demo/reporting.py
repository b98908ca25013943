"""Demo data of issue 19: the instruments' national fields, what each booking was for, and a year of
the institutions' own use, so that the evaluation shows a realistic spread (a few instruments above
their yearly norm, most below it).

A generator of its own keeps every other demo value as it was; rows go in by bulk statements.
"""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta

from sqlalchemy import bindparam, insert, select, update

from portal.accounts.models import Institution, InstitutionKind, User
from portal.booking.models import Booking
from portal.catalog.models import Category, Instrument
from portal.core import clock
from portal.core.database import table_of
from portal.core.permissions import Role
from portal.extensions import db
from portal.reporting import submissions
from portal.usage.models import InternalUse

SEED = 19
FINAL_REPORT_HOST = "聊城大学"
BATCH = 5000
# The subject an instrument mostly serves, by its first-level category.
SUBJECTS = {
    "01": "化学",
    "02": "物理学",
    "03": "计量学",
    "04": "电子与通信技术",
    "05": "机械工程",
    "06": "材料科学",
    "07": "生物学",
    "08": "环境科学技术",
    "09": "地球科学",
    "10": "天文学",
    "11": "基础医学",
    "12": "农学",
    "13": "能源科学技术",
    "14": "信息与系统科学",
    "15": "工程与技术科学基础学科",
}
FUNDS = {
    InstitutionKind.UNIVERSITY: ("中央财政", "省级财政", "省级财政", "单位自筹"),
    InstitutionKind.INSTITUTE: ("省级财政", "市级财政", "单位自筹"),
    InstitutionKind.COMPANY: ("企业自筹",),
}
DEPARTMENTS = {
    InstitutionKind.UNIVERSITY: (
        "分析测试中心",
        "化学化工学院",
        "材料科学与工程学院",
        "生命科学学院",
        "物理科学与信息工程学院",
    ),
    InstitutionKind.INSTITUTE: ("检测中心", "研发部", "技术服务部"),
    InstitutionKind.COMPANY: ("技术中心", "质量部", "研究院"),
}
REQUIREMENTS = (
    "首次自主上机须参加操作培训并取得上机资格；送样请提前预约并注明样品成分、数量和危险性；"
    "请按预约时间到场，迟到超过30分钟视为爽约。"
)
# What the demo's services were for, in this proportion (most customers are enterprises developing products).
PURPOSES = (("development", 70), ("research", 20), ("teaching", 3), ("other", 7))
# The instruments of universities and institutes used by their own people, and how much: a few busy
# ones (close to a full working year) and a wider set of light use.
BUSY_SHARE, LIGHT_SHARE = 0.08, 0.45


def _national_fields(rng: random.Random) -> int:
    kinds = dict(db.session.execute(select(Institution.id, Institution.kind)).all())
    categories = dict(db.session.execute(select(Category.id, Category.code)).all())
    rows = []
    for instrument_id, institution_id, category_id, country, in_service in db.session.execute(
        select(
            Instrument.id,
            Instrument.institution_id,
            Instrument.category_id,
            Instrument.country_of_origin,
            Instrument.in_service_on,
        ).order_by(Instrument.id)
    ):
        kind = kinds[institution_id]
        imported = bool(country) and country != "中国"
        supervised = imported and kind is not InstitutionKind.COMPANY and rng.random() < 0.4
        imported_on = (in_service or date(2018, 6, 1)) - timedelta(days=rng.randint(20, 90))
        rows.append(
            {
                "b_id": instrument_id,
                "acquisition": rng.choices(("购置", "研制", "捐赠", "其他"), (90, 5, 3, 2))[0],
                "funding_source": rng.choice(FUNDS[kind]),
                "subject_area": SUBJECTS.get(categories[category_id][:2], "化学"),
                "department": rng.choice(DEPARTMENTS[kind]),
                "user_requirements": REQUIREMENTS,
                "specialised": rng.random() < 0.15,
                "customs_supervised": supervised,
                "customs_declaration_number": f"4220{imported_on:%Y}{rng.randint(0, 10**10 - 1):010d}"
                if supervised
                else None,
                "customs_import_date": imported_on if supervised else None,
                "customs_item_number": str(rng.randint(1, 9)) if supervised else None,
            }
        )
    table = table_of(Instrument)
    statement = update(table).where(table.c.id == bindparam("b_id"))
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        db.session.execute(statement.values({k: bindparam(k) for k in chunk[0] if k != "b_id"}), chunk)
    return len(rows)


def _purposes(rng: random.Random) -> None:
    ids = list(db.session.scalars(select(Booking.id).order_by(Booking.id)))
    names = [name for name, _weight in PURPOSES]
    weights = [weight for _name, weight in PURPOSES]
    rows = [{"b_id": i, "purpose_category": rng.choices(names, weights)[0]} for i in ids]
    table = table_of(Booking)
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(purpose_category=bindparam("purpose_category"))
    )
    for start in range(0, len(rows), BATCH):
        db.session.execute(statement, rows[start : start + BATCH])


def _internal_use(rng: random.Random, today: date) -> int:
    """Stretches of own use on working days from the start of last year (the evaluation's year by
    default, so it is a full one) to today, by the host's provider."""
    providers = dict(
        db.session.execute(
            select(User.institution_id, User.id).where(User.role == Role.PROVIDER).order_by(User.id.desc())
        ).all()
    )
    academic = (
        select(Instrument.id, Instrument.institution_id)
        .join(Institution)
        .where(Institution.kind.in_((InstitutionKind.UNIVERSITY, InstitutionKind.INSTITUTE)))
    )
    first = date(today.year - 1, 1, 1)
    # Own use never overlaps a booking: a day with a slot booked on the instrument is left to it.
    booked = {
        (instrument_id, clock.local_today(starts_at))
        for instrument_id, starts_at in db.session.execute(
            select(Booking.instrument_id, Booking.starts_at).where(
                Booking.starts_at >= clock.local_datetime_to_utc(first, time(0))
            )
        )
    }
    rows = []
    for instrument_id, institution_id in db.session.execute(academic.order_by(Instrument.id)):
        recorder = providers.get(institution_id)
        pick = rng.random()
        if recorder is None or pick >= BUSY_SHARE + LIGHT_SHARE:
            continue
        busy = pick < BUSY_SHARE
        # Busy: most working days, six to nine hours; light: a day or two a month, two to four hours.
        chance, low, high = (0.85, 6, 9) if busy else (0.07, 2, 4)
        day = first
        while day < today:
            if day.weekday() < 5 and rng.random() < chance and (instrument_id, day) not in booked:
                hours = rng.randint(low, high)
                start_hour = 8 if hours > 6 else rng.choice((8, 9, 14))
                started = clock.local_datetime_to_utc(day, time(start_hour, 0))
                rows.append(
                    {
                        "instrument_id": instrument_id,
                        "started_at": started,
                        "ended_at": started + timedelta(hours=hours),
                        "user_name": rng.choice(("课题组", "研究生", "实验室老师", "博士后")),
                        "purpose_category": rng.choices(("research", "teaching", "other"), (80, 15, 5))[0],
                        "note": "",
                        "recorded_by_id": recorder,
                        "recorded_at": started + timedelta(hours=hours, minutes=30),
                    }
                )
            day += timedelta(days=1)
    for start in range(0, len(rows), BATCH):
        db.session.execute(insert(table_of(InternalUse)), rows[start : start + BATCH])
    return len(rows)


def load_final_report(now: datetime | None = None) -> int:
    """聊城大学's report of last year, submitted final by its provider (the others stay drafts);
    its version, or 0 in a demo too small to hold the university. Called when every record it
    reports is loaded (photos included), so the page shows no change since."""
    today = clock.local_today(now or clock.utcnow())
    provider = db.session.scalar(
        select(User)
        .join(Institution, Institution.id == User.institution_id)
        .where(User.role == Role.PROVIDER, Institution.name == FINAL_REPORT_HOST)
        .order_by(User.id)
    )
    if provider is None:
        return 0
    return submissions.submit_final(provider, today.year - 1).version


def load_reporting(now: datetime | None = None) -> dict[str, int]:
    """The national fields, the bookings' purposes and a year of internal use; how many of each."""
    rng = random.Random(SEED)
    instruments = _national_fields(rng)
    _purposes(rng)
    uses = _internal_use(rng, clock.local_today(now or clock.utcnow()))
    db.session.commit()
    return {"instruments": instruments, "internal_uses": uses}
