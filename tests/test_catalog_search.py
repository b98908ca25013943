"""Catalogue search over the demo network: every filter returns exactly the rows a plain scan finds."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from pypinyin import lazy_pinyin
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from portal.accounts.models import Institution
from portal.catalog.models import Instrument, InstrumentStatus, SearchSynonym
from portal.catalog.services import InstrumentQuery, _filtered, normalize_query
from portal.core.text import normalize
from portal.extensions import db

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


def everything() -> list[Instrument]:
    return list(
        db.session.scalars(
            select(Instrument).options(joinedload(Instrument.category), joinedload(Instrument.institution))
        )
    )


def spoken(text: str) -> list[str]:
    """The pinyin and initials of the Chinese in `text`, straight from pypinyin."""
    syllables = lazy_pinyin(text, errors="ignore")
    return ["".join(syllables), "".join(s[0] for s in syllables)] if syllables else []


def alternatives(term: str) -> list[list[str]]:
    """What the synonym table says a term stands for, read directly from the table."""
    out = [[term]]
    for short, expansion in db.session.execute(select(SearchSynonym.term, SearchSynonym.expansion)):
        if (short.isascii() and term == short) or (not short.isascii() and short in term):
            out.append(term.replace(short, expansion).split())
    return out


def holds(fields: list[str], pinyin: list[str], may_be_pinyin: bool, alts: list[list[str]]) -> bool:
    """A term is in the pinyin, or every word of one of its alternatives is in some field."""
    if may_be_pinyin and any(alts[0][0] in p for p in pinyin):
        return True
    return any(all(any(w in f for f in fields) for w in words) for words in alts)


def oracle(
    rows: list[Instrument],
    q: str = "",
    institution_id: int | None = None,
    category: str | None = None,
    status: str | None = None,
    county: str | None = None,
    fee_min_fen: int | None = None,
    fee_max_fen: int | None = None,
    fee_unit: str = "hour",
) -> list[str]:
    """The expected codes, by a direct Python scan over every instrument (no SQL, no index).

    A term matches a field, the host's name, the pinyin of the name or the host's name (a latin term
    that is not a short form of the synonym table), or all the words of one of its synonyms.
    """
    short_forms = {t for t in db.session.scalars(select(SearchSynonym.term)) if t.isascii()}
    # Per term: whether it may be pinyin, and the word lists it stands for.
    terms = [
        (t.isascii() and t.isalpha() and t not in short_forms, alternatives(t)) for t in normalize(q).split()
    ]
    out = []
    for row in rows:
        fields = [
            normalize(getattr(row, f) or "") for f in ("code", "name", "name_en", "model", "manufacturer")
        ]
        fields.append(normalize(row.institution.name))
        pinyin = [*spoken(row.name), *spoken(row.institution.name)]
        if not all(holds(fields, pinyin, may_be_pinyin, alts) for may_be_pinyin, alts in terms):
            continue
        # The enterprise price per hour or per sample, never the one for the other (issue 17).
        fee = row.fee_per_hour_fen if fee_unit == "hour" else row.fee_per_sample_fen
        if institution_id is not None and row.institution_id != institution_id:
            continue
        if category and not (row.category.code == category or row.category.code[:2] == category):
            continue
        if status and row.status.value != status:
            continue
        if county and row.county != county:
            continue
        if fee_min_fen is not None and (fee is None or fee < fee_min_fen):
            continue
        if fee_max_fen is not None and (fee is None or fee > fee_max_fen):
            continue
        out.append(row.code)
    return sorted(out)


def api_codes(client, **params) -> tuple[list[str], int]:
    codes: list[str] = []
    page = 1
    while True:
        body = client.get(
            "/api/v1/instruments", query_string={**params, "sort": "code", "per_page": 100, "page": page}
        ).json
        codes.extend(item["code"] for item in body["items"])
        if page * 100 >= body["total"]:
            return codes, body["total"]
        page += 1


def test_the_demo_network_has_1202_instruments(demo_client):
    # The city's 1202, and the two of the demo's out-of-province provider (a Shanghai test centre).
    assert demo_client.get("/api/v1/instruments").json["total"] == 1204


KEYWORDS = [
    "质谱",
    "谱",
    "电子显微镜",
    "agilent",
    "AGILENT",
    "Thermo Fisher",
    "液相 质谱",
    "色谱仪",
    "不存在的仪器",
    "ＧＣ",
    "zhipu",
    "ZP",
    "聊城大学",
    "扫描电镜",
    "液质",
    "xrd",
    "gc-ms",
    "dianjing lcdx",
]


@pytest.mark.parametrize("q", KEYWORDS)
def test_keyword_search_returns_exactly_the_matching_rows(demo_client, q):
    expected = oracle(everything(), q=q)
    codes, total = api_codes(demo_client, q=q)
    assert codes == expected
    assert total == len(expected)


def test_keyword_search_finds_a_model_a_code_and_a_manufacturer(demo_client):
    rows = everything()
    sample = rows[len(rows) // 3]
    for q in (sample.model, sample.code, sample.manufacturer):
        codes, _total = api_codes(demo_client, q=q)
        assert sample.code in codes
        assert codes == oracle(rows, q=q)
    assert api_codes(demo_client, q=sample.code)[0][0] == sample.code


def test_best_match_puts_the_exact_code_first(demo_client):
    rows = everything()
    code = rows[10].code
    first = demo_client.get("/api/v1/instruments", query_string={"q": code.lower()}).json["items"][0]
    assert first["code"] == code


FILTERS = [
    {"category": "01"},
    {"category": "0102"},
    {"category": "0201"},
    {"category": "15"},
    {"status": InstrumentStatus.AWAITING_REPAIR.value},
    {"status": InstrumentStatus.NORMAL.value},
    {"county": "高新区"},
    {"county": "东昌府区"},
    {"fee_min_fen": 10000, "fee_max_fen": 30000},
    {"fee_max_fen": 15000},
    {"fee_min_fen": 80000},
    {"fee_min_fen": 10000, "fee_max_fen": 30000, "fee_unit": "sample"},
    {"fee_max_fen": 15000, "fee_unit": "sample"},
    {"q": "仪", "county": "东昌府区", "category": "01", "fee_max_fen": 50000},
]


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_each_filter_returns_exactly_the_matching_rows(demo_client, params):
    expected = oracle(everything(), **params)
    assert expected or params.get("county"), "the demo data should exercise this filter"
    codes, total = api_codes(demo_client, **params)
    assert codes == expected
    assert total == len(expected)


def test_institution_filter(demo_client):
    lcu = db.session.scalar(select(Institution).where(Institution.name == "聊城大学"))
    expected = oracle(everything(), institution_id=lcu.id)
    assert len(expected) > 100
    assert api_codes(demo_client, institution_id=lcu.id)[0] == expected


def test_the_page_and_the_api_agree(demo_client):
    params = {"q": "质谱", "county": "东昌府区"}
    expected = oracle(everything(), **params)
    page = demo_client.get(
        "/instruments/", query_string={**params, "sort": "code", "per_page": 100}
    ).get_data(as_text=True)
    shown = re.findall(r'href="/instruments/([^"]+)"', page)
    assert shown == expected[:100]
    assert f"{len(expected)}" in re.search(r'id="result-count">([^<]+)<', page).group(1)


def test_pages_partition_the_results_and_links_keep_the_filters(demo_client):
    params = {"category": "01", "per_page": 20}
    expected = oracle(everything(), category="01")
    seen: list[str] = []
    for page in range(1, len(expected) // 20 + 2):
        html = demo_client.get(
            "/instruments/", query_string={**params, "sort": "code", "page": page}
        ).get_data(as_text=True)
        seen.extend(re.findall(r'href="/instruments/([^"?]+)"', html))
    assert seen == expected
    html = demo_client.get("/instruments/", query_string={**params, "sort": "code"}).get_data(as_text=True)
    next_link = re.search(r'href="([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    args = parse_qs(urlsplit(next_link).query)
    assert args["category"] == ["01"] and args["page"] == ["2"] and args["sort"] == ["code"]


@pytest.mark.parametrize(
    ("sort", "key", "descending"),
    [
        ("fee", "fee_per_hour_fen", False),
        ("-fee", "fee_per_hour_fen", True),
        ("fee", "fee_per_sample_fen", False),
        ("-fee", "fee_per_sample_fen", True),
        ("-value", "original_value_fen", False),
        ("name", "name", False),
    ],
)
def test_sorting(demo_client, sort, key, descending):
    unit = "sample" if key == "fee_per_sample_fen" else "hour"
    items = demo_client.get(
        "/api/v1/instruments", query_string={"sort": sort, "per_page": 100, "fee_unit": unit}
    ).json["items"]
    if key.startswith("fee"):
        # The chosen price only, never mixed with the other; instruments without it come last.
        values = [i[key] for i in items]
        present = [v for v in values if v is not None]
        assert values[: len(present)] == present == sorted(present, reverse=descending)
    elif key == "original_value_fen":
        values = [i[key] for i in items]
        assert values == sorted(values, reverse=True)
    else:
        values = [i[key] for i in items]
        assert values == sorted(values)


def test_bad_filter_values_are_explained_not_crashing(demo_client):
    response = demo_client.get("/instruments/", query_string={"fee_min": "abc", "status": "broken"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "is-invalid" in page  # the fields are marked and the input kept
    api = demo_client.get("/api/v1/instruments", query_string={"category": "9x"})
    assert api.status_code == 422
    assert api.json["error"]["code"] == "validation_error"
    assert "category" in api.json["error"]["details"]["fields"]
    # Whitespace in a choice is blank, not a value (Optional() skips its check): no int("\n").
    blank = demo_client.get("/instruments/", query_string={"per_page": "\n", "sort": " ", "q": "质谱仪"})
    assert blank.status_code == 200


def test_postgres_keyword_search_can_use_the_gin_index(demo_app):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite scans its 1202 rows")
    compiled = _filtered(normalize_query(InstrumentQuery(q="质谱"))).compile(dialect=db.engine.dialect)
    connection = db.session.connection()
    # The app's connections tell the planner that random reads are cheap (SSD), or it scans the table.
    assert connection.exec_driver_sql("SHOW random_page_cost").scalar() == "1.1"
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = "\n".join(r[0] for r in connection.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params))
    assert "ix_instruments_search_grams" in plan
    db.session.rollback()
