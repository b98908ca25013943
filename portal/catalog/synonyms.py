"""Search synonyms: the field's short forms (扫描电镜, 核磁, XRD …) and what a search for them also finds.

A query term is expanded into alternatives, each a list of words an instrument must all hold:
- a Chinese short form inside a term is replaced by its long form (场发射扫描电镜 also finds
  场发射扫描电子显微镜), so a short form works inside a longer keyword too;
- a latin short form (xrd, sem, ms) must be the whole term: inside a longer word it is usually
  something else (a model number, another abbreviation).
The table is small and changes rarely: it is read once per catalogue version and cached.
"""

from __future__ import annotations

from pathlib import Path

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.accounts.models import User
from portal.catalog.models import SearchSynonym
from portal.core import audit
from portal.core.errors import Forbidden, NotFound, ValidationFailed
from portal.core.permissions import Role
from portal.core.text import normalize
from portal.extensions import cache, db

# At most this many alternatives per term (the term itself included): each is one more index probe.
MAX_ALTERNATIVES = 6

Synonyms = dict[str, list[str]]


# The seed of the table (migration 0017); tests that empty the database sow it again.
SEED_FILE = Path(__file__).with_name("synonyms.tsv")


def read_seed(path: Path = SEED_FILE) -> list[tuple[str, str]]:
    """The (term, expansion) pairs of a synonyms file: one pair a line, TAB between, # comments."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        term, expansion = line.split("\t")
        pairs.append((normalize(term), normalize(expansion)))
    return pairs


def synonym_map(version: str) -> Synonyms:
    """term → its expansions, from the table; cached under the catalogue version (any change bumps it)."""
    key = f"catalog:{version}:synonyms"
    cached = cache.get(key)
    if cached is not None:
        return cached
    out: Synonyms = {}
    for term, expansion in db.session.execute(
        select(SearchSynonym.term, SearchSynonym.expansion).order_by(SearchSynonym.term, SearchSynonym.id)
    ):
        out.setdefault(term, []).append(expansion)
    cache.set(key, out)
    return out


def _is_latin(term: str) -> bool:
    return term.isascii()


def expand(term: str, synonyms: Synonyms) -> list[list[str]]:
    """The alternatives a normalised query term stands for: the term itself first, then its expansions."""
    alternatives: list[list[str]] = [[term]]
    for short, expansions in synonyms.items():
        if _is_latin(short):
            if term != short:
                continue
            found = [expansion.split() for expansion in expansions]
        elif short in term:
            found = [term.replace(short, expansion).split() for expansion in expansions]
        else:
            continue
        for words in found:
            if words not in alternatives:
                alternatives.append(words)
    return alternatives[:MAX_ALTERNATIVES]


def is_short_form(term: str, synonyms: Synonyms) -> bool:
    """Whether the term is a latin short form of the table (then it is not read as pinyin: gc is not 工程)."""
    return term in synonyms and _is_latin(term)


# --- the admin console's list --------------------------------------------------------------------


def _require_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators manage search synonyms."))


def list_synonyms(user: User) -> list[SearchSynonym]:
    """Every synonym, by term."""
    _require_admin(user)
    return list(db.session.scalars(select(SearchSynonym).order_by(SearchSynonym.term, SearchSynonym.id)))


def add_synonym(user: User, term: str, expansion: str) -> SearchSynonym:
    """Add a short form and what it stands for (stored normalised); an audit row records it."""
    _require_admin(user)
    term, expansion = normalize(term), " ".join(normalize(expansion).split())
    fields: dict[str, str] = {}
    if not term:
        fields["term"] = _("Enter the short form.")
    elif " " in term:
        fields["term"] = _("A short form is one word, without spaces.")
    elif len(term) > 40:
        fields["term"] = _("At most %(n)d characters.", n=40)
    if not expansion:
        fields["expansion"] = _("Enter what it stands for.")
    elif len(expansion) > 80:
        fields["expansion"] = _("At most %(n)d characters.", n=80)
    elif expansion == term:
        fields["expansion"] = _("A synonym must differ from its short form.")
    if not fields and db.session.scalar(
        select(SearchSynonym.id).where(SearchSynonym.term == term, SearchSynonym.expansion == expansion)
    ):
        fields["expansion"] = _("This synonym is already in the table.")
    if fields:
        raise ValidationFailed(_("Please correct the marked fields."), fields)
    row = SearchSynonym(term=term, expansion=expansion, created_by_id=user.id)
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        # Another administrator added the same pair a moment ago.
        db.session.rollback()
        raise ValidationFailed(
            _("Please correct the marked fields."), {"expansion": _("This synonym is already in the table.")}
        ) from None
    audit.record(
        "search_synonym.added",
        "search_synonym",
        row.id,
        after={"term": term, "expansion": expansion},
        actor_id=user.id,
    )
    db.session.commit()
    return row


def delete_synonym(user: User, synonym_id: int) -> None:
    """Remove a synonym; the audit row keeps what it was."""
    _require_admin(user)
    row = db.session.get(SearchSynonym, synonym_id)
    if row is None:
        raise NotFound(_("No such synonym."))
    audit.record(
        "search_synonym.deleted",
        "search_synonym",
        row.id,
        before={"term": row.term, "expansion": row.expansion},
        actor_id=user.id,
    )
    db.session.delete(row)
    db.session.commit()
