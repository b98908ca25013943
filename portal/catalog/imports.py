"""Catalogue files uploaded by administrators: checked on arrival, a dry run, then applied as stored.

An upload is accepted only if its content passes `portal.catalog.upload_checks` (a real XLSX workbook
or UTF-8 CSV text, within the limits); it is kept under a name of ours in the upload folder. The dry
run and the apply both run the one importer (`portal.catalog.importer`) on the stored file, so what is
applied is exactly what was checked. Small files are handled in the request, large ones by a worker
whose progress the page shows. The progress is kept in the cache: the apply is one transaction, which
cannot tell anyone how far it got before it commits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update

from portal.accounts.models import User
from portal.catalog.importer import ImportReport, Problem, Progress, import_catalog
from portal.catalog.models import IMPORT_TRANSITIONS, CatalogImport, ImportState
from portal.catalog.upload_checks import FORMATS, check_upload
from portal.core import audit, clock, outbox, uploads
from portal.core.database import changed_rows, locked, serialized_write
from portal.core.errors import Forbidden, InvalidTransition, NotFound
from portal.core.paging import Page, paginate
from portal.core.permissions import Role
from portal.extensions import cache, db

PAGE_SIZE = 20
PROGRESS_SECONDS = 6 * 3600


def _require_admin(user: User) -> None:
    if user.role is not Role.ADMIN:
        raise Forbidden(_("Only administrators import catalogue files."))


def _accept(user: User, stream: BinaryIO, filename: str | None) -> CatalogImport:
    """Check an upload, store it under our own name and open its history row (waiting for its dry run)."""
    _require_admin(user)
    checked = check_upload(stream, filename)
    content_type, suffix = FORMATS[checked.fmt]
    stored = uploads.store_checked(checked.data, suffix, filename, content_type)
    try:
        row = CatalogImport(
            original_name=stored.original_name,
            stored_name=stored.stored_name,
            fmt=checked.fmt,
            size=stored.size,
            sha256=stored.sha256,
            rows=checked.rows,
            state=ImportState.CHECKING,
            uploaded_by_id=user.id,
        )
        db.session.add(row)
        db.session.flush()
        audit.record(
            "catalog_import.uploaded",
            "catalog_import",
            row.id,
            after={"file": row.original_name, "size": row.size, "sha256": row.sha256, "rows": row.rows},
            actor_id=user.id,
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        uploads.discard(stored.stored_name)
        raise
    return row


# --- the transitions -----------------------------------------------------------------------------


def _move(row: CatalogImport, target: ImportState) -> None:
    if target not in IMPORT_TRANSITIONS[row.state]:
        raise InvalidTransition(_("This import cannot go from “%(state)s” there.", state=row.state.value))
    row.state = target


def _sources(target: ImportState) -> list[ImportState]:
    return [state for state, targets in IMPORT_TRANSITIONS.items() if target in targets]


def start_import(user: User, stream: BinaryIO, filename: str | None) -> CatalogImport:
    """The console's upload: store the file and run its dry run (a worker's job if the file is large)."""
    row = _accept(user, stream, filename)
    _run_or_queue(row.id, _is_large(row))
    return db.session.get_one(CatalogImport, row.id)


def request_apply(user: User, import_id: int) -> CatalogImport:
    """Apply a checked file, the stored one exactly as it was checked (a worker's job if it is large)."""
    row = _claim_apply(user, import_id)
    _run_or_queue(import_id, _is_large(row))
    return db.session.get_one(CatalogImport, import_id)


def import_now(user: User, stream: BinaryIO, filename: str | None, *, dry_run: bool) -> CatalogImport:
    """Check a file and, unless this is a dry run, apply it, all in this request (the API, the demo).

    The file is kept in the history either way. Bad content raises ImportRefused; a file with problems
    comes back INVALID, with nothing written to the catalogue.
    """
    row = _accept(user, stream, filename)
    run_import(row.id)
    if not dry_run and db.session.get_one(CatalogImport, row.id).state is ImportState.CHECKED:
        _claim_apply(user, row.id)
        run_import(row.id)
    return db.session.get_one(CatalogImport, row.id)


def _claim_apply(user: User, import_id: int) -> CatalogImport:
    """CHECKED -> APPLYING, by a conditional update: two administrators cannot both apply a file."""
    row = get_import(user, import_id)
    claimed = changed_rows(
        update(CatalogImport)
        .where(CatalogImport.id == import_id, CatalogImport.state.in_(_sources(ImportState.APPLYING)))
        .values(state=ImportState.APPLYING, applied_by_id=user.id, note=None)
    )
    if not claimed:  # never checked clean, or someone else applied it a moment ago
        db.session.rollback()
        raise InvalidTransition(
            _("Only a file whose dry run found no problem can be applied, and only once.")
        )
    audit.record(
        "catalog_import.apply_requested",
        "catalog_import",
        import_id,
        before={"state": ImportState.CHECKED.value},
        after={"state": ImportState.APPLYING.value},
        actor_id=user.id,
    )
    db.session.commit()
    return row


def _is_large(row: CatalogImport) -> bool:
    config = current_app.config
    return (
        row.rows is None or row.rows > config["IMPORT_ASYNC_ROWS"] or row.size > config["IMPORT_ASYNC_BYTES"]
    )


def _run_or_queue(import_id: int, large: bool) -> None:
    """Run the import's next step here, or hand it to a worker (run at once without REDIS_URL).

    The task goes through the outbox: when the broker is down it is sent as soon as it is back, and the
    progress page waits meanwhile."""
    if not large:
        run_import(import_id)
        return
    outbox.send_task("catalog.run_import", import_id)
    db.session.commit()
    db.session.rollback()  # end this session's read: what an eager task wrote must be read afresh


# --- running the importer (in the request or in a worker) ------------------------------------------


def run_import(import_id: int) -> None:
    """Do what the import waits for, its dry run or its apply; safe to run twice (the worker's task)."""
    row = db.session.get(CatalogImport, import_id)
    if row is None or not row.busy:
        return
    try:
        if row.state is ImportState.CHECKING:
            _check(import_id)
        else:
            _apply(import_id)
    except Exception:
        db.session.rollback()
        current_app.logger.exception("catalogue import %s failed", import_id)
        _fail(
            import_id,
            _("An unexpected error stopped the import; nothing was written. The log has the details."),
        )


def _check(import_id: int) -> None:
    report = _run_importer(db.session.get_one(CatalogImport, import_id), dry_run=True)

    def checked(row: CatalogImport) -> None:
        _take_report(row, report)
        row.checked_at = clock.utcnow()
        _move(row, ImportState.CHECKED if report.ok else ImportState.INVALID)

    _settle(import_id, (ImportState.CHECKING,), "catalog_import.checked", checked)


def _apply(import_id: int) -> None:
    with serialized_write():
        row = locked(CatalogImport, import_id)
        if row.state is not ImportState.APPLYING:
            db.session.rollback()
            return

        def finish(report: ImportReport) -> None:
            # Inside the import's own transaction: the history says "applied" if and only if it was.
            _take_report(row, report)
            row.applied_at = clock.utcnow()
            _move(row, ImportState.APPLIED)
            audit.record(
                "catalog_import.applied", "catalog_import", row.id, after=_summary(row), actor_id=_actor(row)
            )

        report = _run_importer(row, dry_run=False, before_commit=finish)
    if report.ok:
        return

    def refused(row: CatalogImport) -> None:  # nothing was written; the history says why
        if report.conflict:
            row.note = report.problems[-1].message
            _move(row, ImportState.CHECKED)
        else:
            _take_report(row, report)
            _move(row, ImportState.INVALID)

    _settle(import_id, (ImportState.APPLYING,), "catalog_import.refused", refused)


def _fail(import_id: int, note: str) -> None:
    def failed(row: CatalogImport) -> None:
        row.note = note
        _move(row, ImportState.FAILED)

    _settle(import_id, (ImportState.CHECKING, ImportState.APPLYING), "catalog_import.failed", failed)


def _settle(
    import_id: int, expected: tuple[ImportState, ...], action: str, change: Callable[[CatalogImport], None]
) -> None:
    """In a write transaction of its own: if the import is still as `expected`, change it and record that."""
    with serialized_write():
        row = locked(CatalogImport, import_id)
        if row is None or row.state not in expected:  # another run settled it meanwhile
            db.session.rollback()
            return
        change(row)
        audit.record(
            action, "catalog_import", row.id, after=_summary(row), reason=row.note, actor_id=_actor(row)
        )
        db.session.commit()


def _actor(row: CatalogImport) -> int:
    """Whose action this run carries out: the one who applied the file, else the one who uploaded it."""
    return row.applied_by_id or row.uploaded_by_id


def _run_importer(
    row: CatalogImport, *, dry_run: bool, before_commit: Callable[[ImportReport], None] | None = None
) -> ImportReport:
    # The importer reads the format from the name's suffix: the one our check found in the content.
    name = f"{Path(row.original_name).stem or 'upload'}.{row.fmt}"
    with uploads.stored_path(row.stored_name).open("rb") as handle:
        return import_catalog(
            handle,
            name,
            dry_run=dry_run,
            actor_id=_actor(row),
            progress=_progress_reporter(row.id),
            before_commit=before_commit,
        )


def problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as the history and the API give it: row and column are null for the whole file."""
    out = {"row": problem.row or None, "column": problem.column or None, "message": problem.message}
    if problem.code:  # a limit stopped the reading
        out["code"] = problem.code
    return out


def _take_report(row: CatalogImport, report: ImportReport) -> None:
    row.created, row.updated, row.unchanged = report.created, report.updated, report.unchanged
    row.errors = [problem_json(p) for p in report.problems[: current_app.config["IMPORT_MAX_ERRORS"]]]
    row.error_count = len(report.problems)
    if report.rows:
        row.rows = report.rows


def _summary(row: CatalogImport) -> dict[str, Any]:
    return {
        "state": row.state.value,
        "file": row.original_name,
        "created": row.created,
        "updated": row.updated,
        "unchanged": row.unchanged,
        "errors": row.error_count,
    }


# --- progress, kept in the cache -----------------------------------------------------------------


def _progress_key(import_id: int) -> str:
    return f"catalog-import:{import_id}:progress"


def _progress_reporter(import_id: int) -> Progress:
    def report(phase: str, rows: int) -> None:
        # A cache that is down costs the progress bar, never the import.
        with contextlib.suppress(Exception):
            cache.set(_progress_key(import_id), {"phase": phase, "rows": rows}, timeout=PROGRESS_SECONDS)

    return report


def progress_of(row: CatalogImport) -> dict[str, Any] | None:
    """How far a running import got: {"phase": "reading" | "writing", "rows"}; None when unknown."""
    if not row.busy:
        return None
    try:
        return cache.get(_progress_key(row.id))
    except Exception:
        return None


# --- reading the history -------------------------------------------------------------------------


def get_import(user: User, import_id: int) -> CatalogImport:
    """One import of the history (administrators only)."""
    _require_admin(user)
    row = db.session.get(CatalogImport, import_id)
    if row is None:
        raise NotFound(_("No such import."))
    return row


def import_history(user: User, page: int = 1) -> Page[CatalogImport]:
    """Every uploaded file, newest first, with who uploaded and applied it."""
    _require_admin(user)
    return paginate(select(CatalogImport).order_by(CatalogImport.id.desc()), page, PAGE_SIZE)


def stored_file(user: User, import_id: int) -> tuple[Path, CatalogImport]:
    """The kept file of an import, for download."""
    row = get_import(user, import_id)
    path = uploads.stored_path(row.stored_name)
    if not path.is_file():  # removed from the disk by hand
        raise NotFound(_("The file of this import is no longer kept."))
    return path, row
