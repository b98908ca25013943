"""Catalogue rules: searching, instrument records, and the cache version that keeps them fresh."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

from flask import current_app, has_request_context, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, Text, and_, case, false, func, or_, select, type_coerce, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import joinedload, selectinload

from portal.accounts.models import Institution
from portal.catalog.models import (
    NATIONAL_FIELDS,
    VERSION_ATTRIBUTE,
    CatalogState,
    Category,
    Instrument,
    InstrumentPhoto,
    InstrumentStatus,
    forget_catalog_version,
)
from portal.catalog.synonyms import Synonyms, expand, is_short_form, synonym_map
from portal.core.errors import NotFound, ValidationFailed
from portal.core.text import is_pinyin_like, like_escape, normalize, query_grams
from portal.extensions import cache, db

MAX_PER_PAGE = 100
MAX_TERMS = 8

SORTS = {
    "relevance": _l("Best match"),
    "code": _l("Code"),
    "name": _l("Instrument name"),
    "fee": _l("Fee, low to high"),
    "-fee": _l("Fee, high to low"),
    "-value": _l("Original value, high to low"),
    "-in_service": _l("Newest first"),
}


FEE_UNITS = {"hour": _l("per hour"), "sample": _l("per sample")}


@dataclass(frozen=True)
class InstrumentQuery:
    """Everything a catalogue search can ask for; the page and the API both build one."""

    q: str = ""
    institution_id: int | None = None
    category: str | None = None
    status: str | None = None
    county: str | None = None
    fee_min_fen: int | None = None
    fee_max_fen: int | None = None
    # The enterprise price the fee filter and sort use: per hour or per sample, never mixed (issue 17).
    fee_unit: str = "hour"
    sort: str = "relevance"
    page: int = 1
    per_page: int = 20

    def cache_key(self, version: str) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:32]
        return f"catalog:{version}:search:{digest}"


@dataclass
class SearchResult:
    items: list[dict[str, Any]]
    total: int
    page: int
    per_page: int
    query: InstrumentQuery = field(default_factory=InstrumentQuery)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def catalog_version() -> str:
    """The token every catalogue change replaces; caches keyed by it can never serve stale data.

    Read once per request (a search page keys its page, results, categories and hosts by it); a
    change made during the request forgets the remembered value (see models).
    """
    if has_request_context():
        remembered = getattr(request, VERSION_ATTRIBUTE, None)
        if remembered is not None:
            return remembered
    version = db.session.scalar(select(CatalogState.version).where(CatalogState.id == 1)) or "0"
    if has_request_context():
        setattr(request, VERSION_ATTRIBUTE, version)
    return version


def bump_catalog_version() -> None:
    """For bulk writes that bypass the ORM; ORM changes bump the version by themselves (see models)."""
    # A random token, not a counter: after a database restore an old counter value would come back
    # and match cache entries written for different data.
    db.session.execute(update(CatalogState).where(CatalogState.id == 1).values(version=uuid.uuid4().hex))
    forget_catalog_version()


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _category_ids(code: str) -> list[int]:
    """The category and, for a first-level code, all its children."""
    rows = db.session.execute(
        select(Category.id, Category.code).where((Category.code == code) | (Category.code.like(f"{code}__")))
    ).all()
    if not any(c == code for _id, c in rows):
        raise ValidationFailed(_("Unknown category code."), {"category": _("Unknown category code.")})
    return [row_id for row_id, c in rows if len(code) == 2 or c == code]


def normalize_query(query: InstrumentQuery) -> InstrumentQuery:
    """Check a query's values and bring them into canonical form (so equal searches share a cache entry)."""
    fields: dict[str, str] = {}
    if query.status and query.status not in InstrumentStatus.__members__.values():
        fields["status"] = _("Unknown status.")
    if query.county and query.county not in current_app.config["COUNTIES"]:
        fields["county"] = _("Unknown county.")
    if query.category and not (query.category.isdigit() and len(query.category) in (2, 4)):
        fields["category"] = _("A category code has 2 or 4 digits.")
    if query.sort not in SORTS:
        fields["sort"] = _("Unknown sort order.")
    if query.fee_unit not in FEE_UNITS:
        fields["fee_unit"] = _("Per hour or per sample.")
    for name in ("fee_min_fen", "fee_max_fen"):
        if getattr(query, name) is not None and getattr(query, name) < 0:
            fields[name] = _("Must not be negative.")
    if (
        query.fee_min_fen is not None
        and query.fee_max_fen is not None
        and query.fee_min_fen > query.fee_max_fen
    ):
        fields["fee_max_fen"] = _("The maximum fee is below the minimum.")
    if query.page < 1:
        fields["page"] = _("Pages start at 1.")
    if not 1 <= query.per_page <= MAX_PER_PAGE:
        fields["per_page"] = _("Between 1 and %(n)d.", n=MAX_PER_PAGE)
    if len(query.q) > 200:
        fields["q"] = _("At most 200 characters.")
    if fields:
        raise ValidationFailed(_("Some search fields are not valid."), fields)
    return replace(query, q=" ".join(normalize(query.q).split()[:MAX_TERMS]))


def _word_matches(word: str, *, pinyin: bool) -> ColumnElement[bool]:
    """The row holds `word` in its fields (and, for a latin word, in its pinyin too)."""
    pattern = f"%{like_escape(word)}%"
    found: ColumnElement[bool] = Instrument.search_text.like(pattern, escape="\\")
    if pinyin:
        found = or_(found, Instrument.search_pinyin.like(pattern, escape="\\"))
    return found


def _term_matches(term: str, synonyms: Synonyms) -> ColumnElement[bool]:
    """One query term: the term itself or any of its synonyms' expansions (each all of its words)."""
    pinyin = is_pinyin_like(term) and not is_short_form(term, synonyms)
    alternatives = []
    for index, words in enumerate(expand(term, synonyms)):
        conditions = [_word_matches(w, pinyin=pinyin and index == 0) for w in words]
        if _dialect() == "postgresql":
            # The GIN index finds rows holding every gram; LIKE then checks the grams are in order.
            needed = sorted({g for w in words for g in query_grams(w)})
            grams_column = type_coerce(Instrument.search_grams, postgresql.ARRAY(Text))
            conditions.insert(0, grams_column.contains(needed))
        alternatives.append(and_(*conditions))
    return or_(*alternatives)


def _filtered(query: InstrumentQuery) -> Select:
    stmt = select(Instrument.id)
    terms = query.q.split()
    synonyms = synonym_map(catalog_version()) if terms else {}
    for term in terms:
        stmt = stmt.where(_term_matches(term, synonyms))
    if query.institution_id is not None:
        stmt = stmt.where(Instrument.institution_id == query.institution_id)
    if query.category:
        stmt = stmt.where(Instrument.category_id.in_(_category_ids(query.category)))
    if query.status:
        stmt = stmt.where(Instrument.status == InstrumentStatus(query.status))
    if query.county:
        stmt = stmt.where(Instrument.county == query.county)
    fee = _fee_column(query)
    if query.fee_min_fen is not None:
        stmt = stmt.where(fee >= query.fee_min_fen)
    if query.fee_max_fen is not None:
        stmt = stmt.where(fee <= query.fee_max_fen)
    return stmt


def _fee_column(query: InstrumentQuery):
    """The enterprise price per hour or per sample (the two fee columns), as the query asks."""
    return Instrument.fee_per_sample_fen if query.fee_unit == "sample" else Instrument.fee_per_hour_fen


def _ordering(query: InstrumentQuery) -> list:
    sort = query.sort
    if sort == "relevance" and not query.q:
        sort = "code"
    if sort == "relevance":
        whole = like_escape(query.q)
        terms = query.q.split()
        first = like_escape(terms[0])
        name = func.lower(Instrument.name)
        # What a one-word query also stands for (扫描电镜: 扫描电子显微镜): a name equal to it is exact too.
        expanded = (
            [" ".join(words) for words in expand(terms[0], synonym_map(catalog_version()))[1:]]
            if len(terms) == 1
            else []
        )
        rank = case(
            (or_(func.lower(Instrument.code) == query.q, name == query.q), 0),
            (name.in_(expanded) if expanded else false(), 1),
            (Instrument.search_text.like(f"%{whole}%", escape="\\"), 2),
            (name.like(f"{first}%", escape="\\"), 3),
            else_=4,
        )
        return [rank, Instrument.code]
    fee = _fee_column(query)
    orderings: dict[str, list[Any]] = {
        "code": [Instrument.code],
        "name": [Instrument.name, Instrument.code],
        "fee": [fee.is_(None), fee, Instrument.code],
        "-fee": [fee.is_(None), fee.desc(), Instrument.code],
        "-value": [Instrument.original_value_fen.desc(), Instrument.code],
        "-in_service": [Instrument.in_service_on.is_(None), Instrument.in_service_on.desc(), Instrument.code],
    }
    return orderings[sort]


def photo_url(code: str, name: str) -> str:
    """Where a photo file of an instrument is served (a path on this site), in a request or outside one."""
    values: dict[str, Any] = {"code": code, "name": name}
    if has_request_context():
        return url_for("catalog.photo", **values)
    return current_app.url_map.bind("localhost").build("catalog.photo", values)


def photo_json(code: str, photo: InstrumentPhoto) -> dict[str, Any]:
    return {
        "id": photo.id,
        "url": photo_url(code, photo.stored_name),
        "thumbnail_url": photo_url(code, photo.thumbnail_name),
        "width": photo.width,
        "height": photo.height,
        "caption": photo.caption,
        "is_main": photo.is_main,
    }


def summary(instrument: Instrument) -> dict[str, Any]:
    """An instrument as a list row (the API's list item)."""
    category = instrument.category
    main = instrument.main_photo
    return {
        "code": instrument.code,
        "name": instrument.name,
        "name_en": instrument.name_en,
        "category": {
            "code": category.code,
            "name": category.name,
            "name_en": category.name_en,
            "parent_code": category.parent_code,
        },
        "model": instrument.model,
        "manufacturer": instrument.manufacturer,
        "institution": {"id": instrument.institution.id, "name": instrument.institution.name},
        "county": instrument.county,
        "status": instrument.status.value,
        "fee_per_hour_fen": instrument.fee_per_hour_fen,
        "fee_per_sample_fen": instrument.fee_per_sample_fen,
        "original_value_fen": instrument.original_value_fen,
        "operator_name": instrument.operator_name,
        "thumbnail_url": photo_url(instrument.code, main.thumbnail_name) if main else None,
    }


def search_instruments(query: InstrumentQuery) -> SearchResult:
    """One page of instruments matching `query`, with the total; cached per catalogue version."""
    query = normalize_query(query)
    key = query.cache_key(catalog_version())
    cached = cache.get(key)
    if cached is not None:
        return SearchResult(**cached, query=query)
    filtered = _filtered(query)
    offset = (query.page - 1) * query.per_page
    ordered = filtered.order_by(*_ordering(query)).limit(query.per_page).offset(offset)
    counted = select(func.count()).select_from(filtered.subquery())
    if query.q:
        # A keyword's rows come from the index in no useful order, so every match is read anyway: the
        # page and the total in one pass (a big host's name matches a third of the catalogue). A page
        # past the end counts separately.
        page = db.session.execute(ordered.add_columns(func.count().over())).all()
        ids = [row[0] for row in page]
        total = page[0][1] if page else db.session.execute(counted).scalar_one()
    else:
        # Filters only: the page can stop early along an index (code, fee), so it counts apart.
        total = db.session.execute(counted).scalar_one()
        ids = list(db.session.scalars(ordered))
    rows = db.session.scalars(
        select(Instrument)
        .where(Instrument.id.in_(ids))
        .options(
            joinedload(Instrument.category),
            joinedload(Instrument.institution),
            selectinload(Instrument.photos),
        )
    ).all()
    by_id = {row.id: row for row in rows}
    data: dict[str, Any] = {
        "items": [summary(by_id[i]) for i in ids],
        "total": total,
        "page": query.page,
        "per_page": query.per_page,
    }
    cache.set(key, data)
    return SearchResult(**data, query=query)


def get_instrument(code: str) -> Instrument:
    """The instrument with this code, or NotFound."""
    instrument = db.session.scalar(
        select(Instrument)
        .where(Instrument.code == code)
        .options(
            joinedload(Instrument.category).joinedload(Category.parent),
            joinedload(Instrument.institution),
            selectinload(Instrument.opening_hours),
            selectinload(Instrument.photos),
        )
    )
    if instrument is None:
        raise NotFound(_("No instrument has the code %(code)s.", code=code))
    return instrument


def detail(instrument: Instrument, *, with_contact: bool) -> dict[str, Any]:
    """The full record (the API's detail); the operator's phone only for signed-in users."""
    data = summary(instrument)
    data.update(
        {
            "country_of_origin": instrument.country_of_origin,
            "in_service_on": instrument.in_service_on.isoformat() if instrument.in_service_on else None,
            "specs": instrument.specs,
            "functions": instrument.functions,
            "service_content": instrument.service_content,
            "sharing_mode": instrument.sharing_mode.value,
            "address": instrument.address,
            "operator_phone": instrument.operator_phone if with_contact else None,
            "opening_hours": [
                {
                    "weekday": h.weekday,
                    "opens_at": h.opens_at.strftime("%H:%M"),
                    "closes_at": h.closes_at.strftime("%H:%M"),
                }
                for h in instrument.opening_hours
            ],
            "photos": [photo_json(instrument.code, photo) for photo in instrument.photos],
            **{field: _plain_value(getattr(instrument, field)) for field in NATIONAL_FIELDS},
        }
    )
    return data


def _plain_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _cached(name: str, compute):
    key = f"catalog:{catalog_version()}:{name}"
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value)
    return value


def _category_ref(category: Category) -> dict[str, Any]:
    return {
        "code": category.code,
        "name": category.name,
        "name_en": category.name_en,
        "parent_code": category.parent_code,
    }


def category_tree() -> list[dict[str, Any]]:
    """First-level categories, each with its children, in code order (cached per catalogue version)."""

    def compute() -> list[dict[str, Any]]:
        parents = db.session.scalars(
            select(Category)
            .where(Category.parent_id.is_(None))
            .options(selectinload(Category.children))
            .order_by(Category.code)
        )
        return [{**_category_ref(p), "children": [_category_ref(c) for c in p.children]} for p in parents]

    return _cached("categories", compute)


def institution_summaries() -> list[dict[str, Any]]:
    """Every host institution with its number of instruments, in id order (cached per catalogue version)."""

    def compute() -> list[dict[str, Any]]:
        counts = (
            select(Instrument.institution_id, func.count().label("n"))
            .group_by(Instrument.institution_id)
            .subquery()
        )
        rows = db.session.execute(
            select(Institution, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.institution_id == Institution.id)
            .order_by(Institution.id)
        ).all()
        return [
            {
                "id": i.id,
                "name": i.name,
                "kind": i.kind.value,
                "county": i.county,
                "instrument_count": n,
                "in_province": i.in_province,
            }
            for i, n in rows
        ]

    return _cached("institutions", compute)
