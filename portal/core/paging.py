"""One page of a long list, as the pages' `pagination` macro shows it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select

from portal.extensions import db

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def paginate(stmt: Select, page: int, per_page: int, item: Callable[..., T] | None = None) -> Page[T]:
    """One page of what `stmt` selects (in order): each row as `item(*row)`, else its first column."""
    total = db.session.execute(select(func.count()).select_from(stmt.order_by(None).subquery())).scalar_one()
    rows = db.session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    items: list[Any] = [item(*r) if item else r[0] for r in rows]
    return Page(items, total, page, per_page)
