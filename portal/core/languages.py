"""Chinese data on English pages: fixed lists translated, free data marked with its language.

Names of places and countries come from short fixed lists, so they are interface text and have
English names. Everything else users type (instrument, institution and enterprise names, people,
addresses, descriptions) stays as typed; on an English page it is wrapped in `lang="zh"` so that a
screen reader reads it with a Chinese voice and a translator tool leaves it alone.
"""

from __future__ import annotations

import re

from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

# Chinese terms inside an English interface text (catalogue column headers), for texts shown as markup.
CHINESE = Markup('<span lang="zh">%s</span>')
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")

# The counties and zones of Liaocheng (config COUNTIES holds the stored names).
COUNTY_NAMES = {
    "东昌府区": _l("Dongchangfu District"),
    "茌平区": _l("Chiping District"),
    "临清市": _l("Linqing City"),
    "阳谷县": _l("Yanggu County"),
    "莘县": _l("Shen County"),
    "东阿县": _l("Dong'e County"),
    "冠县": _l("Guan County"),
    "高唐县": _l("Gaotang County"),
    "高新区": _l("High-tech Zone"),
    "经开区": _l("Economic Development Zone"),
    "度假区": _l("Jiangbei Shuicheng Resort Zone"),
}

# Countries of origin as providers write them.
COUNTRY_NAMES = {
    "中国": _l("China"),
    "美国": _l("United States"),
    "德国": _l("Germany"),
    "日本": _l("Japan"),
    "瑞士": _l("Switzerland"),
    "英国": _l("United Kingdom"),
    "奥地利": _l("Austria"),
    "荷兰": _l("Netherlands"),
    "丹麦": _l("Denmark"),
    "捷克": _l("Czech Republic"),
    "法国": _l("France"),
    "新加坡": _l("Singapore"),
    "加拿大": _l("Canada"),
    "意大利": _l("Italy"),
    "澳大利亚": _l("Australia"),
    "韩国": _l("South Korea"),
    "瑞典": _l("Sweden"),
    "芬兰": _l("Finland"),
    "比利时": _l("Belgium"),
    "以色列": _l("Israel"),
}


def is_english() -> bool:
    return str(get_locale()) == "en"


def has_chinese(text: object) -> bool:
    return isinstance(text, str) and bool(_CJK.search(text))


def zh(value: object) -> object:
    """Data as typed; on an English page, Chinese data wrapped in `<span lang="zh">` (escaped)."""
    if value is None or not has_chinese(value) or not is_english():
        return value
    return Markup('<span lang="zh">%s</span>') % escape(value)


def county_name(county: str | None) -> object:
    """A county in the interface language (an unknown one as data)."""
    if not county:
        return county or ""
    return COUNTY_NAMES.get(county) or zh(county)


def country_name(country: str | None) -> object:
    """A country of origin in the interface language (an unlisted one as data)."""
    if not country:
        return country or ""
    return COUNTRY_NAMES.get(country.strip()) or zh(country)


def county_choices(counties: tuple[str, ...] | list[str]) -> list[tuple[str, object]]:
    """Select options: the stored name as value, the interface-language name as label."""
    return [(c, COUNTY_NAMES.get(c, c)) for c in counties]


def zh_attrs(text: object) -> dict[str, str]:
    """Attributes for an element showing `text` (a photo's alt text, a text box's content): its
    language when it is Chinese data on an English page."""
    return {"lang": "zh"} if is_english() and has_chinese(text) else {}


def zh_attr(text: object) -> Markup:
    """The same as one HTML attribute, for hand-written tags."""
    return Markup(' lang="zh"') if zh_attrs(text) else Markup("")
