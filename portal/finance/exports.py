"""The subsidy export (CSV and XLSX of the approved claims, a totals row equal to the ledger) and
the export jobs a worker runs for the large ones."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select, update

from portal.accounts.models import PAYEE_KIND_LABELS, Enterprise, Institution, User
from portal.core import clock, outbox, uploads
from portal.core.errors import NotFound
from portal.core.exports import Code, XlsxBook, csv_cell
from portal.core.money import fen_to_yuan_number, fen_to_yuan_text
from portal.extensions import db
from portal.finance.models import MODE_LABELS, ExportJob, ExportState
from portal.finance.services import MONEY_FORMAT, PAYEE_OF_MODE, require_finance
from portal.vouchers.labels import CLAIM_STATE_LABELS, fund_labels
from portal.vouchers.models import COMMITTED_STATES, Claim, ClaimFund, RedemptionMode


def export_funds(month_from: str, month_to: str) -> list[str]:
    """The funds of the claims an export holds, in their schemes' order: one column each."""
    claims = claims_query(month_from, month_to).with_only_columns(Claim.id).order_by(None).subquery()
    rows = db.session.execute(
        select(ClaimFund.fund, func.min(ClaimFund.position))
        .where(ClaimFund.claim_id.in_(select(claims.c.id)))
        .group_by(ClaimFund.fund)
        .order_by(func.min(ClaimFund.position), ClaimFund.fund)
    ).all()
    return [fund for fund, _position in rows]


def export_headers(funds: list[str]) -> list[str]:
    labels = fund_labels()
    return [
        _("Claim"),
        _("Approved in"),
        _("Enterprise"),
        _("Unified social credit code"),
        _("County or district"),
        _("Provider"),
        *(_("%(fund)s (yuan)", fund=labels.get(fund, fund)) for fund in funds),
        _("Total (yuan)"),
        _("State"),
        _("Paid in"),
        _("Batch"),
        # After the amounts, so the columns an existing spreadsheet reads keep their places.
        _("Redemption mode"),
        _("Payee kind"),
        _("Payee"),
    ]


# The columns before the amounts, one per fund and the total.
LEADING_COLUMNS = 6


def _exported(month_from: str, month_to: str) -> tuple[Any, ...]:
    """The claims an export holds: approved in the months (inclusive), with a provider (the export
    names it)."""
    return (
        Claim.state.in_(COMMITTED_STATES),
        Claim.approved_month >= month_from,
        Claim.approved_month <= month_to,
        Claim.institution_id.is_not(None),
    )


def claims_query(month_from: str, month_to: str):
    return (
        select(
            Claim.id,
            Claim.approved_month,
            Enterprise.name,
            Enterprise.uscc,
            Enterprise.county,
            Institution.name,
            Claim.state,
            Claim.paid_month,
            Claim.batch_id,
            Claim.mode,
        )
        .join(Enterprise, Enterprise.id == Claim.enterprise_id)
        .join(Institution, Institution.id == Claim.institution_id)
        .where(*_exported(month_from, month_to))
        .order_by(Claim.approved_month, Claim.id)
    )


def count_export_rows(month_from: str, month_to: str) -> int:
    """How many rows the export of the months has: its claims, counted without the joins that name
    their enterprise and provider (each claim has exactly one of each: the foreign keys hold them, the
    provider's not being null is in `_exported`). So PostgreSQL counts from `ix_claims_approved_month_state`
    alone; through the joins it read and sorted every claim of the period (700 ms for a year's
    1,000,000 at province scale)."""
    return db.session.execute(select(func.count()).where(*_exported(month_from, month_to))).scalar_one()


# Claims read from the database at a time (a server-side cursor on PostgreSQL), and how often a job's
# progress is saved.
EXPORT_BATCH_ROWS = 2000
PROGRESS_ROWS = 1000


def _export_query(month_from: str, month_to: str, funds: list[str]):
    """The claims of claims_query with one column per fund: the claim's fen from that fund or None.
    One row per claim (a claim has each fund once: uq_claim_funds_pair), so nothing is grouped in
    Python and half as many rows cross the wire as with a join of the funds."""
    amounts = [
        select(ClaimFund.amount_fen)
        .where(ClaimFund.claim_id == Claim.id, ClaimFund.fund == fund)
        .scalar_subquery()
        for fund in funds
    ]
    return claims_query(month_from, month_to).add_columns(*amounts)


@dataclass
class ExportCount:
    """What an export wrote, known once its rows are read: claims and their total fen."""

    rows: int = 0
    total_fen: int = 0


def export_table(
    month_from: str,
    month_to: str,
    funds: list[str],
    money: Callable[[int], Any],
    count: ExportCount,
    progress: Callable[[int], None] | None = None,
) -> Iterator[list[Any]]:
    """The export's rows: the headers, one row per approved claim (an amount column per fund of
    `export_funds`, each amount as `money(fen)`), and a totals row that is the sum of the rows above
    it; then `count` holds the claims and total fen.

    A million claims pass through here, so the loop does per row only what the row needs: the state
    labels are translated once, the amounts come one column per fund from the database, and the
    writer (csv_cell, XlsxBook) makes the cells formula-safe.
    """
    yield export_headers(funds)
    labels = {state: str(label) for state, label in CLAIM_STATE_LABELS.items()}
    # Per mode: its label, the payee kind's label, and whether the payee is the provider.
    modes = {
        mode.value: (
            str(MODE_LABELS[mode.value]),
            str(PAYEE_KIND_LABELS[PAYEE_OF_MODE[mode.value]]),
            mode is RedemptionMode.AT_PAYMENT,
        )
        for mode in RedemptionMode
    }
    totals = [0] * len(funds)
    rows = 0
    stmt = _export_query(month_from, month_to, funds).execution_options(yield_per=EXPORT_BATCH_ROWS)
    # On the session's connection without the ORM's row handling (a third of the time per row), in
    # the session's transaction all the same.
    result = db.session.connection().execute(stmt)
    for cid, approved, enterprise, uscc, county, provider, state, paid, batch, mode, *given in result:
        amounts = [fen or 0 for fen in given]
        mode_label, payee_label, to_provider = modes[getattr(mode, "value", mode)]
        totals = [total + fen for total, fen in zip(totals, amounts, strict=True)]
        yield [
            cid,
            approved,
            enterprise,  # typed by people: the writers make every text cell formula-safe
            Code(uscc),
            county,
            provider,
            *map(money, amounts),
            money(sum(amounts)),
            labels[state],
            paid or "",
            batch or "",
            mode_label,
            payee_label,
            provider if to_provider else enterprise,
        ]
        rows += 1
        if progress and rows % PROGRESS_ROWS == 0:
            progress(rows)
    total = sum(totals)
    yield [_("Total"), *[""] * (LEADING_COLUMNS - 1), *map(money, totals), money(total), *[""] * 6]
    count.rows, count.total_fen = rows, total


def write_csv(handle, month_from: str, month_to: str, progress=None) -> tuple[int, int]:
    """UTF-8 with BOM (so Excel shows Chinese), a totals row; returns (rows, total fen)."""
    handle.write("\ufeff")
    count = ExportCount()
    # Every cell formula-safe, headers too: a fund's label is typed by an administrator.
    csv.writer(handle).writerows(
        [csv_cell(cell) for cell in row]
        for row in export_table(
            month_from, month_to, export_funds(month_from, month_to), fen_to_yuan_text, count, progress
        )
    )
    return count.rows, count.total_fen


def write_xlsx(path, month_from: str, month_to: str, progress=None) -> tuple[int, int]:
    """The XLSX of core.exports (constant memory, every cell formula-safe); amounts as numbers in yuan
    with two decimals shown; returns (rows, total fen)."""
    count = ExportCount()
    funds = export_funds(month_from, month_to)
    rows = export_table(month_from, month_to, funds, fen_to_yuan_number, count, progress)
    book = XlsxBook(path)  # the amounts and the total of each row and of the totals row in yuan
    book.sheet(
        _("Subsidies"),
        rows,
        dict.fromkeys(range(LEADING_COLUMNS, LEADING_COLUMNS + len(funds) + 1), MONEY_FORMAT),
    )
    book.close()
    return count.rows, count.total_fen


def csv_text(month_from: str, month_to: str) -> str:
    buffer = io.StringIO()
    write_csv(buffer, month_from, month_to)
    return buffer.getvalue()


def start_export_job(user: User, month_from: str, month_to: str, fmt: str) -> ExportJob:
    """A large export, written by a worker; the user follows its progress."""
    require_finance(user)
    job = ExportJob(
        user_id=user.id,
        params={"month_from": month_from, "month_to": month_to},
        fmt=fmt,
        total_rows=count_export_rows(month_from, month_to),
    )
    db.session.add(job)
    db.session.flush()
    job_id = job.id
    outbox.send_task("finance.run_export", job_id)
    db.session.commit()
    return db.session.get_one(ExportJob, job_id)


def run_export_job(job_id: int) -> None:
    job = db.session.get(ExportJob, job_id)
    if job is None or job.state is not ExportState.QUEUED:
        return
    job.state = ExportState.RUNNING
    db.session.commit()
    name = f"export-{uuid.uuid4().hex}.{job.fmt}"
    path = uploads.upload_root() / name

    def progress(rows: int) -> None:
        # On a connection of its own: committing the session would end the transaction whose
        # server-side cursor the export is still reading (PostgreSQL closes it: "cursor does not exist").
        with db.engine.begin() as connection:
            connection.execute(update(ExportJob).where(ExportJob.id == job_id).values(done_rows=rows))

    try:
        params = job.params
        if job.fmt == "csv":
            with path.open("w", encoding="utf-8", newline="") as handle:
                rows, _total = write_csv(handle, params["month_from"], params["month_to"], progress)
        else:
            rows, _total = write_xlsx(path, params["month_from"], params["month_to"], progress)
    except Exception as error:
        db.session.rollback()
        db.session.execute(
            update(ExportJob)
            .where(ExportJob.id == job_id)
            .values(state=ExportState.FAILED, error=str(error)[:1000])
        )
        db.session.commit()
        raise
    # A new transaction for the result: on SQLite the export's, which began before the progress was
    # written, may read on but can no longer write.
    db.session.commit()
    db.session.execute(
        update(ExportJob)
        .where(ExportJob.id == job_id)
        .values(state=ExportState.DONE, done_rows=rows, stored_name=name, finished_at=clock.utcnow())
    )
    db.session.commit()


def get_export_job(user: User, job_id: int) -> ExportJob:
    job = db.session.get(ExportJob, job_id)
    if job is None or job.user_id != user.id:
        raise NotFound(_("No such export."))
    return job
