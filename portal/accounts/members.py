"""Who belongs where: the active accounts of an enterprise, of a host institution, of a role.

The areas use these to decide who hears of a change (portal.notifications re-exports them beside
`notify`, where the areas have always imported them from).
"""

from __future__ import annotations

from sqlalchemy import select

from portal.accounts.models import User
from portal.core.permissions import Role
from portal.extensions import db


def users_of_enterprise(enterprise_id: int) -> list[User]:
    return list(
        db.session.scalars(select(User).where(User.enterprise_id == enterprise_id, User.is_active_account))
    )


def users_of_institution(institution_id: int) -> list[User]:
    return list(
        db.session.scalars(
            select(User).where(
                User.institution_id == institution_id, User.role == Role.PROVIDER, User.is_active_account
            )
        )
    )


def users_with_role(role: Role) -> list[User]:
    return list(db.session.scalars(select(User).where(User.role == role, User.is_active_account)))
