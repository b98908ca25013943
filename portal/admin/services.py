"""What the admin console's pages show: institutions, enterprises, categories and schemes.

The console changes things only through the services of the area that owns them
(`accounts.services.save_institution`, `vouchers.schemes.copy_scheme_to_next_year`,
`catalog.imports`); this module gathers the lists, which cross areas (an enterprise and its latest
verification request, an institution and its instruments and providers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from portal.accounts.models import Enterprise, EnterpriseKind, Institution, User, VerificationState
from portal.catalog.models import Category, Instrument
from portal.catalog.services import category_tree
from portal.core.errors import Forbidden, NotFound
from portal.core.paging import Page, paginate
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers.models import VerificationRequest

PAGE_SIZE = 50


def require_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators use the admin console."))


# --- institutions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstitutionRow:
    institution: Institution
    instruments: int
    providers: int


def institution_page(user: User, q: str = "", page: int = 1) -> Page[InstitutionRow]:
    """Host institutions by name, with their instruments and provider accounts; `q` searches name and code."""
    require_admin(user)
    instruments = (
        select(Instrument.institution_id, func.count().label("n"))
        .group_by(Instrument.institution_id)
        .subquery()
    )
    providers = (
        select(User.institution_id, func.count().label("n"))
        .where(User.role == Role.PROVIDER)
        .group_by(User.institution_id)
        .subquery()
    )
    stmt = (
        select(Institution, func.coalesce(instruments.c.n, 0), func.coalesce(providers.c.n, 0))
        .outerjoin(instruments, instruments.c.institution_id == Institution.id)
        .outerjoin(providers, providers.c.institution_id == Institution.id)
        .order_by(Institution.name, Institution.id)
    )
    q = (q or "").strip()
    if q:
        stmt = stmt.where(
            or_(
                Institution.name.contains(q, autoescape=True),
                Institution.uscc.contains(q.upper(), autoescape=True),
            )
        )
    return paginate(stmt, page, PAGE_SIZE, InstitutionRow)


def get_institution(user: User, institution_id: int) -> Institution:
    require_admin(user)
    institution = db.session.get(Institution, institution_id)
    if institution is None:
        raise NotFound(_("No such institution."))
    return institution


# --- enterprises ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnterpriseFilter:
    q: str = ""
    county: str | None = None
    kind: EnterpriseKind | None = None
    state: VerificationState | None = None


@dataclass(frozen=True)
class EnterpriseRow:
    enterprise: Enterprise
    users: int
    # The enterprise's latest verification request, whose review page the list links to.
    request_id: int | None


def enterprise_page(user: User, filters: EnterpriseFilter, page: int = 1) -> Page[EnterpriseRow]:
    """Enterprises, newest registration first; `q` searches the name and the credit code."""
    require_admin(user)
    users = select(User.enterprise_id, func.count().label("n")).group_by(User.enterprise_id).subquery()
    latest = (
        select(VerificationRequest.enterprise_id, func.max(VerificationRequest.id).label("id"))
        .group_by(VerificationRequest.enterprise_id)
        .subquery()
    )
    stmt = (
        select(Enterprise, func.coalesce(users.c.n, 0), latest.c.id)
        .outerjoin(users, users.c.enterprise_id == Enterprise.id)
        .outerjoin(latest, latest.c.enterprise_id == Enterprise.id)
        .order_by(Enterprise.id.desc())
    )
    q = (filters.q or "").strip()
    if q:
        stmt = stmt.where(
            or_(
                Enterprise.name.contains(q, autoescape=True),
                Enterprise.uscc.contains(q.upper(), autoescape=True),
            )
        )
    if filters.county:
        stmt = stmt.where(Enterprise.county == filters.county)
    if filters.kind:
        stmt = stmt.where(Enterprise.kind == filters.kind)
    if filters.state:
        stmt = stmt.where(Enterprise.verification_state == filters.state)
    return paginate(stmt, page, PAGE_SIZE, EnterpriseRow)


# --- categories ----------------------------------------------------------------------------------


def category_table(user: User) -> list[dict[str, Any]]:
    """The two-level code table, each with its instruments (a first level's count includes its children's)."""
    require_admin(user)
    counts: dict[str, int] = {
        code: n
        for code, n in db.session.execute(
            select(Category.code, func.count(Instrument.id))
            .join(Instrument, Instrument.category_id == Category.id)
            .group_by(Category.code)
        )
    }
    table = []
    for parent in category_tree():
        children = [{**child, "instruments": counts.get(child["code"], 0)} for child in parent["children"]]
        total = counts.get(parent["code"], 0) + sum(child["instruments"] for child in children)
        table.append({**parent, "children": children, "instruments": total})
    return table
