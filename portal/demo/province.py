"""The demo's out-of-province provider (DESIGN section 13): a Shanghai test centre with two instruments
in the catalogue, and a claim of `enterprise` for one of its services, with the enterprise's written
justification, waiting for review at the desk."""

from __future__ import annotations

import io
from datetime import datetime, time, timedelta

from flask import current_app
from sqlalchemy import insert, select
from stdnum.cn import uscc as stdnum_uscc

from portal.accounts.models import Enterprise, Institution, InstitutionKind, User
from portal.booking.models import Booking, BookingMode, BookingState, FileKind, ServiceFile, ServiceRecord
from portal.catalog.models import Category, Instrument, InstrumentStatus, SharingMode
from portal.core import clock, uploads
from portal.core.errors import ServiceError
from portal.demo import data
from portal.demo.vouchers import simulated_clock
from portal.extensions import db
from portal.vouchers import claims as claim_services
from portal.vouchers.models import Voucher, VoucherState

HOST = "上海浦江精密测试中心"
COUNTY = "上海市嘉定区"
# Fictional, with a correct check character (Shanghai Jiading's division code).
USCC_BODY = "91310114MA1G8K3Q5"
JUSTIFICATION = (
    "本次需测定薄膜样品中痕量同位素比值（精度优于0.01%），需多接收器电感耦合等离子体质谱仪。"
    "我们逐一查询了聊城市及山东省网络内的同类仪器，均为单接收器或四极杆质谱，检出限和精度达不到要求，"
    "故委托上海浦江精密测试中心完成测试。"
)
# The same tiny, well-formed PDF the voucher year attaches (uploads refuse one pypdf cannot read).
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Count 0/Kids[]>>endobj\n"
    b"xref\n0 3\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n"
    b"trailer<</Size 3/Root 1 0 R>>\nstartxref\n96\n%%EOF\n"
)


def load_out_of_province() -> int | None:
    """The Shanghai centre and its instruments, and the waiting claim (its id; None if refused)."""
    host = Institution(
        name=HOST,
        uscc=USCC_BODY + stdnum_uscc.calc_check_digit(USCC_BODY),
        kind=InstitutionKind.COMPANY,
        county=COUNTY,
        address="上海市嘉定区叶城路 1288 号",
        is_local=False,
        in_province=False,
    )
    db.session.add(host)
    db.session.flush()
    instruments = _instruments(host)
    return _claim(instruments[0])


def _instruments(host: Institution) -> list[Instrument]:
    """Two instruments of a category the city has too, so the claim's evidence lists some."""
    kind = next((k for k in data.KINDS if "质谱" in k.name), data.KINDS[0])
    category_id = db.session.scalar(select(Category.id).where(Category.code == kind.category_code))
    make = kind.makes[0]
    rows = []
    for seq, (suffix, fee) in enumerate((("多接收器", 1_800_00), ("高分辨", 1_200_00)), start=1):
        values = {
            "code": f"SHPJ-{seq:05d}",
            "name": f"{suffix}{kind.name}",
            "name_en": f"{kind.name_en} ({'multi-collector' if seq == 1 else 'high resolution'})",
            "category_id": category_id,
            "model": make.models[0],
            "manufacturer": make.manufacturer,
            "country_of_origin": make.country,
            "original_value_fen": 1_200 * 10_000 * 100,
            "specs": kind.specs,
            "functions": kind.functions,
            "service_content": kind.service,
            "status": InstrumentStatus.NORMAL,
            "sharing_mode": SharingMode.OPEN,
            "fee_per_sample_fen": fee,
            "institution_id": host.id,
            "county": COUNTY,
            "address": f"{host.address} {seq}0{seq} 室",
            "operator_name": "周明远",
            "operator_phone": "021-5995 1288",
        }
        values.update(Instrument.derived_values(values, host.name))
        rows.append(values)
    db.session.execute(insert(Instrument), rows)
    return list(db.session.scalars(select(Instrument).where(Instrument.institution_id == host.id)))


def _claim(instrument: Instrument) -> int | None:
    """A sample service of `enterprise` at the centre ten days ago, with its evidence and rating, and
    its claim submitted with the justification (the enterprise's voucher pays at 30 %, no city top-up)."""
    user = db.session.execute(select(User).where(User.username == "enterprise")).scalar_one()
    voucher = db.session.scalar(
        select(Voucher)
        .where(Voucher.enterprise_id == user.enterprise_id, Voucher.state == VoucherState.ACTIVE)
        .order_by(Voucher.id.desc())
    )
    if voucher is None or db.session.get(Enterprise, user.enterprise_id) is None:
        return None
    now = clock.utcnow()
    scheme = voucher.scheme  # in January last year's, whose window has closed: its last days then
    first = clock.local_datetime_to_utc(scheme.service_window_start, time(10))
    last = clock.local_datetime_to_utc(scheme.service_window_end, time(10))
    done = min(max(now - timedelta(days=10), first), last)
    booking = Booking(
        instrument_id=instrument.id,
        enterprise_id=user.enterprise_id,
        requested_by_id=user.id,
        mode=BookingMode.SAMPLE,
        state=BookingState.COMPLETED,
        purpose="薄膜样品痕量同位素比值测定",
        sample_count=4,
        sample_description="镀膜硅片 4 片",
        created_at=done - timedelta(days=7),
        decided_at=done - timedelta(days=6),
    )
    db.session.add(booking)
    db.session.flush()
    fee = 4 * (instrument.fee_per_sample_fen or 0)
    record = ServiceRecord(
        booking_id=booking.id,
        samples=4,
        computed_fee_fen=fee,
        fee_fen=fee,
        result_summary="同位素比值测定报告（4 个样品）",
        recorded_by_id=user.id,
        recorded_at=done,
        rating=5,
        rated_at=done + timedelta(days=1),
        service_type="analysis",
    )
    db.session.add(record)
    db.session.flush()
    for kind in (FileKind.CONTRACT, FileKind.INVOICE, FileKind.RECEIPT):
        stored = uploads.store_upload(io.BytesIO(PDF), f"{kind.value}-{record.id}.pdf")
        db.session.add(ServiceFile.from_upload(stored, record.id, kind, user.id))
    db.session.commit()
    try:
        # Submitted on the last working day before today, in office hours, as every demo claim is.
        with simulated_clock(_last_working_morning(now)):
            claim = claim_services.create_claim(user, voucher.id, [record.id], JUSTIFICATION)
            claim_services.submit_claim(user, claim.id)
    except ServiceError as error:
        current_app.logger.info("demo out-of-province claim refused: %s", error)
        db.session.rollback()
        return None
    return claim.id


def _last_working_morning(now: datetime) -> datetime:
    day = clock.local_today(now) - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return clock.local_datetime_to_utc(day, time(9, 47))
