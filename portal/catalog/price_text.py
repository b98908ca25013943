"""A price table in one catalogue-file cell (the 收费标准明细 column), and back.

    企业/自主上机=300/小时 最低1 超时450; 企业/代为操作=450/小时; 科技型中小企业/送样=80/样 阶梯11:60|51:40

Entries are separated by ";" (or "；" or a new line): customer category / mode = price in yuan /
unit, then optionally 最低 (minimum billable units), 超时 (overtime price per hour, yuan) and 阶梯
(quantity steps, from-unit:price, separated by "|"). The English codes (enterprise/self=300/hour
min1 overtime450 steps11:60|51:40) are read too. Pure functions: no database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from portal.core.money import fen_to_yuan, yuan_to_fen

CUSTOMER_WORDS = {"本单位": "internal", "高校院所": "academic", "企业": "enterprise", "科技型中小企业": "sme"}
MODE_WORDS = {"自主上机": "self", "代为操作": "staff", "送样": "sample"}
UNIT_WORDS = {"小时": "hour", "样": "sample"}
OPTION_WORDS = {"最低": "min", "超时": "overtime", "阶梯": "steps"}
_ENTRY = re.compile(
    r"^(?P<customer>[^/=\s]+)/(?P<mode>[^/=\s]+)=(?P<price>[^/\s]+)(?:/(?P<unit>\S+))?(?P<options>.*)$"
)
_OPTION = re.compile(r"(最低|超时|阶梯|min|overtime|steps)\s*([^\s]+)")


def _word(table: Mapping[str, str], text: str, what: str) -> str:
    if text in table.values():
        return text
    if text in table:
        return table[text]
    raise ValueError(f"unknown {what} “{text}”; use {' / '.join(table)}")


def parse_price_table(text: str) -> list[dict[str, Any]]:
    """The rows a cell gives (fen), in the API's shape; ValueError names the first thing wrong."""
    rows = []
    for part in re.split(r"[;；\n]", text):
        entry = part.strip().replace("＝", "=").replace("：", ":")
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(f"“{entry}” is not category/mode=price/unit")
        mode = _word(MODE_WORDS, match["mode"], "mode")
        unit = _word(UNIT_WORDS, match["unit"] or ("样" if mode == "sample" else "小时"), "unit")
        row: dict[str, Any] = {
            "customer": _word(CUSTOMER_WORDS, match["customer"], "customer category"),
            "mode": mode,
            "unit": unit,
            "unit_price_fen": yuan_to_fen(match["price"]),
            "min_units": 0,
            "steps": [],
            "overtime_unit_price_fen": None,
        }
        for name, value in _OPTION.findall(match["options"]):
            option = OPTION_WORDS.get(name, name)
            if option == "min":
                row["min_units"] = int(value)
            elif option == "overtime":
                row["overtime_unit_price_fen"] = yuan_to_fen(value)
            else:
                for step in value.split("|"):
                    units, _sep, price = step.partition(":")
                    row["steps"].append({"from_units": int(units), "unit_price_fen": yuan_to_fen(price)})
        if _OPTION.sub("", match["options"]).strip():
            raise ValueError(f"“{match['options'].strip()}”: use 最低N, 超时P, 阶梯a:p|b:q")
        rows.append(row)
    return rows


def format_price_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """The cell for these rows (as parse_price_table reads them back)."""
    customers = {v: k for k, v in CUSTOMER_WORDS.items()}
    modes = {v: k for k, v in MODE_WORDS.items()}
    units = {v: k for k, v in UNIT_WORDS.items()}
    entries = []
    for row in rows:
        text = (
            f"{customers[row['customer']]}/{modes[row['mode']]}="
            f"{fen_to_yuan(row['unit_price_fen'])}/{units[row['unit']]}"
        )
        if row.get("min_units"):
            text += f" 最低{row['min_units']}"
        if row.get("overtime_unit_price_fen") is not None:
            text += f" 超时{fen_to_yuan(row['overtime_unit_price_fen'])}"
        if row.get("steps"):
            steps = "|".join(f"{s['from_units']}:{fen_to_yuan(s['unit_price_fen'])}" for s in row["steps"])
            text += f" 阶梯{steps}"
        entries.append(text)
    return "; ".join(entries)
