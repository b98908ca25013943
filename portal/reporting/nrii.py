"""The national platform's (NRII) names for our records, in one place.

Field names and codes are those of the national interface as public client code shows it: a change of
the interface is a change here and nowhere else. Amounts go out in yuan and original values in 万元
(two decimals, as strings, so no float ever rounds them), times as `YYYY-MM-DD HH` in Beijing time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from portal.core import clock
from portal.core.money import fen_to_wan, fen_to_yuan

SERVICE_WAYS = ("占用", "技术", "委托", "远程", "其他")
SERVICE_TYPE_INTERNAL = "120"  # the owning institution's own people
SERVICE_TYPE_EXTERNAL = "130"  # anyone else
DIRECTIONS = {"research": "135", "development": "136", "teaching": "137", "other": "138"}
AUDIT_DRAFT, AUDIT_FINAL = -1, 0

# A first-level category of ours whose national code differs from its own digits: 15 其他仪器 is 99.
FIRST_LEVEL_ALIASES = {"15": "99"}


def category_code(code: str) -> str:
    """The 6-digit national category code of one of ours: padded with zeros (0102 → 010200, 01 →
    010000, 0299 → 029900), the first level translated where the national list numbers it otherwise
    (15 其他仪器 → 990000)."""
    if not (code.isdigit() and len(code) in (2, 4, 6)):
        raise ValueError(f"not a category code: {code!r}")
    first = FIRST_LEVEL_ALIASES.get(code[:2], code[:2])
    return (first + code[2:]).ljust(6, "0")


def service_type(tier: str | None) -> str:
    """Internal (120) when the customer was priced as the owning institution's own, else external."""
    return SERVICE_TYPE_INTERNAL if tier == "internal" else SERVICE_TYPE_EXTERNAL


def service_direction(purpose_category: str | None) -> str:
    """What the service was for; a booking made before the form asked reports as "other"."""
    return DIRECTIONS.get(purpose_category or "other", DIRECTIONS["other"])


def service_way(stored: str | None, mode: str, operation: str | None) -> str:
    """The way stored on the service record; else the booking's: samples are 委托, staff-operated
    time 技术, self-operated time 占用."""
    if stored in SERVICE_WAYS:
        return stored
    if mode == "sample":
        return "委托"
    return "技术" if operation == "staff" else "占用"


def hour_text(moment: datetime | None) -> str | None:
    """`YYYY-MM-DD HH` in Beijing time."""
    return None if moment is None else clock.to_local(moment).strftime("%Y-%m-%d %H")


def two_places(value: Decimal | float | int | None) -> str | None:
    if value is None:
        return None
    return f"{Decimal(value).quantize(Decimal('0.01'))}"


def day_text(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


@dataclass(frozen=True)
class InstrumentFacts:
    """What the instrument record needs beyond the instrument row: the host's view of it."""

    category_code: str
    fee_text: str
    service_url: str
    image_url: str | None
    run_hours: Decimal
    service_hours: Decimal
    final: bool = False


def instrument_record(instrument: Any, facts: InstrumentFacts) -> dict[str, Any]:
    """One instrument in the national record's field names (plus our `institution_id`)."""
    return {
        "innerId": instrument.code,
        "cname": instrument.name,
        "ename": instrument.name_en,
        "instrCategory": category_code(facts.category_code),
        "worth": f"{fen_to_wan(instrument.original_value_fen):.2f}",
        "beginDate": day_text(instrument.in_service_on),
        "instrVersion": instrument.model,
        "manufacturer": instrument.manufacturer,
        "nation": instrument.country_of_origin,
        "instrSource": instrument.acquisition,
        "funds": instrument.funding_source,
        "subject": instrument.subject_area,
        "insideDepart": instrument.department,
        "address": instrument.address,
        "technical": instrument.specs,
        "function": instrument.functions,
        "serviceContent": instrument.service_content,
        "requirement": instrument.user_requirements,
        "fee": facts.fee_text,
        "serviceUrl": facts.service_url,
        "contacts": instrument.operator_name,
        "phone": instrument.operator_phone,
        "image": facts.image_url,
        "instrSupervise": 1 if instrument.customs_supervised else 0,
        "declarationNumber": instrument.customs_declaration_number if instrument.customs_supervised else None,
        "importDate": day_text(instrument.customs_import_date) if instrument.customs_supervised else None,
        "itemNumber": instrument.customs_item_number if instrument.customs_supervised else None,
        "runMachine": two_places(facts.run_hours),
        "serviceMachine": two_places(facts.service_hours),
        "auditStatus": AUDIT_FINAL if facts.final else AUDIT_DRAFT,
        "institution_id": instrument.institution_id,
    }


def service_record(row: Mapping[str, Any], *, final: bool = False) -> dict[str, Any]:
    """One service in the national record's field names. `row` holds the booking's and the record's
    columns (portal.reporting.services.SERVICE_COLUMNS)."""
    hours = row["metered_hours"] if row["metered_hours"] is not None else row["hours"]
    sample = row["mode"] == "sample"
    return {
        "innerId": row["instrument_code"],
        "serviceId": row["record_id"],
        "amount": f"{fen_to_yuan(row['fee_fen']):.2f}",
        "startTime": hour_text(row["starts_at"] or row["recorded_at"]),
        "endTime": hour_text(row["ends_at"] or row["recorded_at"]),
        "serviceWay": service_way(row["service_way"], row["mode"], row["operation"]),
        "serviceType": service_type(row["tier"]),
        "serviceDirection": service_direction(row["purpose_category"]),
        "serviceTime": None if sample and hours is None else two_places(hours or 0),
        "sampleNum": row["samples"] if sample else None,
        "applicant": row["applicant"],
        "applicantUnit": row["enterprise_name"],
        "rating": row["rating"],
        "auditStatus": AUDIT_FINAL if final else AUDIT_DRAFT,
        "institution_id": row["institution_id"],
    }


# The national fields as people read them: the header row of the XLSX and CSV files, in column order.
INSTRUMENT_HEADERS = {
    "innerId": "仪器编号",
    "cname": "仪器名称",
    "ename": "英文名称",
    "instrCategory": "仪器分类代码",
    "worth": "原值(万元)",
    "beginDate": "启用日期",
    "instrVersion": "规格型号",
    "manufacturer": "生产制造商",
    "nation": "产地国别",
    "instrSource": "仪器来源",
    "funds": "主要购置经费来源",
    "subject": "主要学科领域",
    "insideDepart": "所属单位内部门",
    "address": "安放地址",
    "technical": "主要技术指标",
    "function": "主要功能",
    "serviceContent": "服务内容",
    "requirement": "用户须知",
    "fee": "收费标准",
    "serviceUrl": "预约服务网址",
    "contacts": "联系人",
    "phone": "联系电话",
    "image": "仪器图片",
    "instrSupervise": "是否海关监管",
    "declarationNumber": "报关单号",
    "importDate": "进口日期",
    "itemNumber": "项号",
    "runMachine": "年运行机时",
    "serviceMachine": "年服务机时",
    "auditStatus": "状态",
}
SERVICE_HEADERS = {
    "innerId": "仪器编号",
    "serviceId": "服务记录号",
    "amount": "服务金额(元)",
    "startTime": "服务开始时间",
    "endTime": "服务结束时间",
    "serviceWay": "服务方式",
    "serviceType": "服务类型",
    "serviceDirection": "服务方向",
    "serviceTime": "服务机时",
    "sampleNum": "样品数",
    "applicant": "申请人",
    "applicantUnit": "申请人单位",
    "rating": "服务评价",
    "auditStatus": "状态",
}


def table_rows(headers: Mapping[str, str], items: Iterable[Mapping[str, Any]]) -> Iterator[list[Any]]:
    """A file's rows: the people's header, then each record's national fields in the same order."""
    yield list(headers.values())
    for item in items:
        yield [item.get(key) for key in headers]
