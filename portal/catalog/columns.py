"""The catalogue file's columns and the rule each cell is judged by.

The import checks every cell with these rules, and so does an edit of a single instrument on its page
or through the API (portal.catalog.editing): what an import would refuse cannot come in by another door.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from flask_babel import gettext as _

from portal.catalog import price_import
from portal.catalog.models import ACQUISITIONS, NATIONAL_FIELDS, STATUS_FILE_NAMES, InstrumentStatus
from portal.core.money import wan_to_fen, yuan_to_fen
from portal.core.text import strip_control

CODE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
PHONE_PATTERN = re.compile(r"^[0-9+()\- ,;/、]{5,40}$")


class RowError(ValueError):
    """A value that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class Column:
    header: str
    attr: str
    required: bool = False
    parse: Callable[[str], Any] | None = None
    max_length: int | None = None


def _parse_money(parse: Callable[[str], int]) -> Callable[[str], int]:
    def inner(text: str) -> int:
        try:
            return parse(text)
        except ValueError as error:
            reason = str(error)
            if reason == "not a number":
                raise RowError(_("“%(value)s” is not a number.", value=text)) from None
            if reason == "must not be negative":
                raise RowError(_("Must not be negative.")) from None
            if reason == "too large":
                raise RowError(_("“%(value)s” is too large.", value=text)) from None
            raise RowError(_("At most two decimal places.")) from None

    return inner


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text[:10] if len(text) > 10 and text[10] in " T" else text)
    except ValueError:
        raise RowError(_("“%(value)s” is not a date in the form YYYY-MM-DD.", value=text)) from None


def _parse_code(text: str) -> str:
    if not CODE_PATTERN.match(text):
        raise RowError(_("Use at most 40 letters, digits, dot, dash or underscore."))
    return text


def _parse_status(text: str) -> InstrumentStatus:
    for status, label in STATUS_FILE_NAMES.items():
        if text in (label, status.value):
            return status
    raise RowError(
        _(
            "“%(value)s” is not a status; use one of %(allowed)s.",
            value=text,
            allowed=" / ".join(STATUS_FILE_NAMES.values()),
        )
    )


def _parse_price_table(text: str) -> list[dict[str, Any]]:
    try:
        return price_import.parse_table(text)
    except ValueError as error:
        raise RowError(str(error)) from None


def _parse_phone(text: str) -> str:
    if not PHONE_PATTERN.match(text):
        raise RowError(_("“%(value)s” is not a phone number.", value=text))
    return text


def _parse_acquisition(text: str) -> str:
    if text not in ACQUISITIONS:
        raise RowError(
            _(
                "“%(value)s” is not a source; use one of %(allowed)s.",
                value=text,
                allowed=" / ".join(ACQUISITIONS),
            )
        )
    return text


YES, NO = ("是", "yes", "1", "true"), ("否", "no", "0", "false")


def _parse_yes_no(text: str) -> bool:
    if text.lower() in YES:
        return True
    if text.lower() in NO:
        return False
    raise RowError(_("“%(value)s” is neither 是 nor 否.", value=text))


COLUMNS: tuple[Column, ...] = (
    Column("仪器编码", "code", required=True, parse=_parse_code),
    Column("仪器名称", "name", required=True, max_length=120),
    Column("英文名称", "name_en", max_length=200),
    Column("仪器分类代码", "category_code", required=True),
    Column("规格型号", "model", max_length=120),
    Column("生产制造商", "manufacturer", max_length=120),
    Column("产地国别", "country_of_origin", max_length=40),
    Column("原值(万元)", "original_value_fen", required=True, parse=_parse_money(wan_to_fen)),
    Column("启用日期", "in_service_on", parse=_parse_date),
    Column("依托单位", "institution_name", required=True),
    Column("所在区县", "county"),
    Column("安放地址", "address", max_length=200),
    Column("运行状态", "status", parse=_parse_status),
    Column("收费标准(元/小时)", "fee_per_hour_fen", parse=_parse_money(yuan_to_fen)),
    Column("收费标准(元/样)", "fee_per_sample_fen", parse=_parse_money(yuan_to_fen)),
    # The price table (issue 17; portal.catalog.price_text). Files without it still import: their two
    # fee columns are the enterprise price.
    Column("收费标准明细", "price_table", parse=_parse_price_table, max_length=4000),
    Column("主要技术指标", "specs", max_length=4000),
    Column("主要功能", "functions", max_length=4000),
    Column("服务内容", "service_content", max_length=4000),
    Column("联系人", "operator_name", max_length=40),
    Column("联系电话", "operator_phone", parse=_parse_phone),
    # The national platform's fields (issue 19). A file without one of these columns leaves the stored
    # value as it is (NATIONAL_ATTRS), so older files still import without erasing them.
    Column("仪器来源", "acquisition", parse=_parse_acquisition),
    Column("主要购置经费来源", "funding_source", max_length=60),
    Column("主要学科领域", "subject_area", max_length=60),
    Column("所属单位内部门", "department", max_length=80),
    Column("用户须知", "user_requirements", max_length=4000),
    Column("专用仪器", "specialised", parse=_parse_yes_no),
    Column("海关监管", "customs_supervised", parse=_parse_yes_no),
    Column("报关单号", "customs_declaration_number", max_length=40),
    Column("进口日期", "customs_import_date", parse=_parse_date),
    Column("项号", "customs_item_number", max_length=20),
)
NATIONAL_ATTRS = frozenset(NATIONAL_FIELDS)
YES_NO_ATTRS = frozenset({"specialised", "customs_supervised"})
HEADERS = [c.header for c in COLUMNS]
COLUMN_OF = {c.attr: c for c in COLUMNS}
# Instrument attributes a file sets directly (the others are looked up: category, institution).
PLAIN_ATTRS = [
    c.attr
    for c in COLUMNS
    if c.attr not in {"category_code", "institution_name", "county", "status", "price_table"}
]


def parse_cell(column: Column, text: str) -> Any:
    """One cell's value by its column's rules; an empty optional cell is None, anything wrong a RowError.

    The import checks every cell with it, and so does an edit of a single instrument (the same rules).
    """
    if not text:
        if column.required:
            raise RowError(_("Required, but empty."))
        return None
    if strip_control(text) != text:
        # NUL and the like: PostgreSQL refuses them, and an XLSX export could not hold them.
        raise RowError(_("Contains control characters; remove them."))
    if column.max_length and len(text) > column.max_length:
        raise RowError(_("At most %(n)d characters (this has %(m)d).", n=column.max_length, m=len(text)))
    return column.parse(text) if column.parse else text
