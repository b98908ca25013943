"""The one lock order of every money path.

Every transaction that moves money, or the room money is measured against, takes its row locks
through this module, in this order of ranks, and only forwards:

    0. finance's advisory lock (`serialized_write((LOCK_TALLY, 0))`): building and paying a batch
       take it as their first statement, before any row
    1. BATCH           the disbursement batch being paid
    2. CLAIMS          claims, by id (the claim being decided; every claim of a batch being paid)
    3. APPLICATION     the voucher application being decided
    4. SCHEME          the scheme (its allocation: issuing a voucher, expiring one, saving the scheme)
    5. FUNDS           the scheme's funds, by id (committed at approval, paid at payment, budgets)
    6. CAPS            the enterprise's cap row, then the controller group's ("enterprise" < "group")
    7. VOUCHERS        vouchers, by id (their balance)

So, for example: approval takes claim → funds → caps → voucher; payment takes advisory lock → batch
→ claims → funds → vouchers; expiry takes scheme → voucher; issuing a voucher takes application →
scheme; saving a scheme takes scheme → funds. A transaction may skip ranks but never goes back to an
earlier one, and takes each rank once, in one statement that locks its rows in id order. Two
transactions that both want rows of ranks i < j therefore both ask for i first: neither can hold a
row of rank j while waiting for one of rank i, so they cannot deadlock each other. Taking a rank
out of order raises `LockOrderError` at once, on SQLite too, so a test of the path shows it.

Rows a transaction only reads, or locks implicitly by inserting a row that refers to them (a ledger
line, an audit row), are outside the order: PostgreSQL's key-share lock of a foreign key does not
wait for a row locked FOR UPDATE by the same transaction, and every path locks the voucher and
claims it writes ledger lines for. Non-money paths that lock one claim (submit, revise, return,
reject, the end of the public notice) take rank CLAIMS and nothing of a higher rank.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any, TypeVar

from sqlalchemy import event, select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import ColumnElement

from portal.extensions import db

RANK_TAKEN = "money_lock_rank"

Row = TypeVar("Row")


class Rank(IntEnum):
    BATCH = 1
    CLAIMS = 2
    APPLICATION = 3
    SCHEME = 4
    FUNDS = 5
    CAPS = 6
    VOUCHERS = 7


class LockOrderError(RuntimeError):
    """A money path asked for a lock of a rank at or before one it already holds: a programming error."""


def _take(rank: Rank) -> None:
    info = db.session().info
    held = info.get(RANK_TAKEN)
    if held is not None and rank <= held:
        raise LockOrderError(f"{rank.name} after {Rank(held).name}: see portal/core/locks.py for the order")
    info[RANK_TAKEN] = int(rank)


def lock_where(
    rank: Rank, model: type[Row], *conditions: ColumnElement[bool], order_by: Any = None
) -> list[Row]:
    """The rows of `model` matching `conditions`, locked FOR UPDATE in id order (or `order_by`) and read
    afresh after the wait, as the step `rank` of this transaction's lock order."""
    _take(rank)
    key = order_by if order_by is not None else model.id  # type: ignore[attr-defined]
    return list(
        db.session.scalars(
            select(model)
            .where(*conditions)
            .order_by(key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


def lock_ids(rank: Rank, model: type[Row], ids: Iterable[int]) -> dict[int, Row]:
    """The rows with these ids, locked in id order as the step `rank`; by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = lock_where(rank, model, model.id.in_(wanted))  # type: ignore[attr-defined]
    return {row.id: row for row in rows}  # type: ignore[attr-defined]


def lock_one(rank: Rank, model: type[Row], object_id: int) -> Row | None:
    """One row locked as the step `rank` (None when there is no such row)."""
    return lock_ids(rank, model, [object_id]).get(object_id)


def lock_existing(rank: Rank, model: type[Row], object_id: int) -> Row:
    """One row that must exist (its id read a moment ago, or a row's foreign key), locked as the step
    `rank`; like `Session.get_one`, a missing row is an error, NoResultFound."""
    row = lock_one(rank, model, object_id)
    if row is None:
        raise NoResultFound(f"No {model.__name__} {object_id}")
    return row


@event.listens_for(Session, "after_transaction_end")
def _forget_ranks(session: Session, transaction: SessionTransaction) -> None:
    # The order is per transaction: a new one starts again from nothing.
    if transaction.parent is None:
        session.info.pop(RANK_TAKEN, None)
