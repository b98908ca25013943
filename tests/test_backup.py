"""`flask backup` and `flask restore`: a restore into an empty database finds every row and every file.

Each test runs on SQLite and on PostgreSQL. The commands run through Flask's CLI runner against real
databases, real pg_dump/pg_restore and real files; the target of a restore is a new, empty database
and a new, empty upload folder.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import tarfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from flask import Flask
from sqlalchemy import select

from portal.accounts import tokens
from portal.accounts.models import (
    AccountToken,
    ApiToken,
    Enterprise,
    EnterpriseKind,
    Institution,
    Invitation,
    TokenPurpose,
    User,
)
from portal.booking.models import Blackout, BlackoutKind, Booking, BookingPolicy, BookingSeries, RepeatUnit
from portal.catalog.models import Instrument
from portal.core import audit, clock, uploads
from portal.core.models import QueuedTask
from portal.core.permissions import Role
from portal.credit.models import CreditRules, Violation, ViolationKind
from portal.demo.services import load_demo
from portal.extensions import db
from portal.finance.models import DisbursementBatch, ExportJob, ExportState, PeriodClose, SubsidyTally
from portal.qualifications.models import TrainingEnrolment, TrainingSession
from portal.reporting.models import PurchaseCheck, ReportSnapshot, ScoreSheet
from portal.usage.models import DeviceKey, EventKind, UsageEvent, UsageSession, UsageSource
from portal.vouchers.models import EnterpriseRelation, RelationKind, Scheme, VerificationRequest
from portal.waitlist.models import WaitlistEntry
from tests.conftest import create_pg_database, drop_pg_database, make_app, service_missing
from tests.pdf_samples import minimal_pdf

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

# Every byte value, so that "byte-identical" is tested on more than text.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
PDF = minimal_pdf("检测报告".encode() * 100)
_names = itertools.count(1)


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_target_name(pg_database: str | None) -> Iterator[str | None]:
    """One restore-target database per test run, emptied again only when a test has filled it."""
    if pg_database is None:
        yield None
        return
    name = f"{sa.engine.make_url(pg_database).database}_restore"
    create_pg_database(name)
    yield name
    drop_pg_database(name)


def _pg_is_empty(url: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """An empty (not even migrated) database of either backend: a new SQLite file, or the run's
    PostgreSQL restore target, re-created when a previous test left tables in it."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'restored-{next(_names)}.db'}"
        name = request.getfixturevalue("pg_target_name")
        if name is None:
            service_missing("PostgreSQL")
        url = sa.engine.make_url(request.getfixturevalue("pg_database")).set(database=name)
        url = url.render_as_string(hide_password=False)
        return url if _pg_is_empty(url) else create_pg_database(name)

    return make


@pytest.fixture
def restore_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Apps on restore targets, each with its own new upload folder; their connections closed after."""
    made: list[Flask] = []

    def make(url: str, uploads_dir: Path | None = None) -> Flask:
        folder = uploads_dir or tmp_path / f"restored-uploads-{next(_names)}"
        target = make_app(url, UPLOAD_FOLDER=str(folder))
        made.append(target)
        return target

    yield make
    for target in made:
        with target.app_context():
            db.engine.dispose()


def run(app: Flask, *args: str) -> Result:
    # The command runs in this app's own context: Flask's CLI would otherwise reuse whichever app's
    # context the test has pushed (the source's, when running against a restore target).
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every table's full rows, ordered by primary key."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            out = {}
            for name in inspector.get_table_names():
                key = inspector.get_pk_constraint(name)["constrained_columns"]
                order = key or [c["name"] for c in inspector.get_columns(name)]
                query = sa.select(sa.text("*")).select_from(sa.table(name)).order_by(*map(sa.column, order))
                out[name] = [tuple(row) for row in conn.execute(query)]
            return out
    finally:
        engine.dispose()


def pg_sequences(url: str) -> dict[str, int | None]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT sequencename, last_value FROM pg_sequences"))
            return {name: value for name, value in rows}
    finally:
        engine.dispose()


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def rewrite(archive: Path, target: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """Copy an archive member by member; `change` returns new content, or None to leave one out."""
    with tarfile.open(archive) as src, tarfile.open(target, "w") as dst:
        for member in src.getmembers():
            data = change(member.name, src.extractfile(member).read())
            if data is not None:
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))


def fill_every_table(upload_folder: Path) -> None:
    """Rows for the tables a small demo network leaves empty, with their files in the upload folder."""
    admin = db.session.scalar(select(User).where(User.role == Role.ADMIN))
    enterprise = db.session.scalar(select(Enterprise).order_by(Enterprise.id))
    instrument = db.session.scalar(select(Instrument).order_by(Instrument.id))
    institution = db.session.scalar(select(Institution).order_by(Institution.id))
    now = clock.utcnow()
    certificate = uploads.store_upload(io.BytesIO(PNG), "营业执照.png")
    export_name = "export-0123456789abcdef.csv"
    (upload_folder / export_name).write_bytes("\ufeff月份,金额\n2026-11,12345\n".encode())
    db.session.add_all(
        [
            ApiToken(user_id=admin.id, token_hash="ab" * 32, expires_at=now + timedelta(days=1)),
            QueuedTask(name="finance.tally_month", args=["2026-11"], created_at=now, attempts=1),
            Blackout(
                instrument_id=instrument.id,
                kind=BlackoutKind.MAINTENANCE,
                starts_at=now,
                ends_at=now + timedelta(hours=4),
                reason="年度校准",
                created_by_id=admin.id,
            ),
            BookingPolicy(instrument_id=instrument.id, step_minutes=15, buffer_minutes=10),
            EnterpriseRelation(
                enterprise_id=enterprise.id,
                institution_id=institution.id,
                kind=RelationKind.CO_BUILT,
                declared_by_id=admin.id,
            ),
            ExportJob(
                user_id=admin.id,
                params={"month_from": "2026-01", "month_to": "2026-11"},
                fmt="csv",
                state=ExportState.DONE,
                total_rows=1,
                done_rows=1,
                stored_name=export_name,
                finished_at=now,
            ),
            PeriodClose(month="2026-10", closed_by_id=admin.id),
            # A year the demo never reports (its final report is last year's).
            ReportSnapshot(
                institution_id=institution.id,
                year=2019,
                version=1,
                content='{"annual":{}}',
                sha256="0" * 64,
                submitted_by_id=admin.id,
            ),
            PurchaseCheck(
                category_code="0102",
                name="气质联用仪",
                price_fen=1_200_000_00,
                year=2019,
                threshold_hours=1200,
                findings=[],
                flagged=False,
                conclusion="同意购置",
                reviewer_id=admin.id,
            ),
            ScoreSheet(
                institution_id=institution.id,
                year=2019,
                version=1,
                items={"rules": {"score": "8", "computed": False}},
                total="8.00",
                weights="40,20,40",
                signed_by_id=admin.id,
            ),
            # Whether a small demo year reaches these depends on the day the test runs.
            SubsidyTally(
                month="2020-01",
                fund="province",
                enterprise_id=enterprise.id,
                institution_id=institution.id,
                county="东昌府区",
                approved_fen=98_765_432_100,  # past 2**31: the big integers survive too
                claims=1,
            ),
            DisbursementBatch(
                month="2020-01", fund_amounts={"province": 98_765_432_100}, created_by_id=admin.id
            ),
            VerificationRequest(
                enterprise_id=enterprise.id,
                kind=EnterpriseKind.HIGH_TECH,
                actual_controller="王五",
                certificate_name=certificate.original_name,
                certificate_stored=certificate.stored_name,
                certificate_type=certificate.content_type,
                certificate_size=certificate.size,
                submitted_by_id=admin.id,
            ),
        ]
    )
    # Accounts (issue 13): a one-time link and an invitation (only hashes of their secrets).
    holder = db.session.scalar(select(User).where(User.enterprise_id == enterprise.id, User.is_holder))
    link = AccountToken(
        user_id=admin.id, purpose=TokenPurpose.PASSWORD_RESET, expires_at=now + timedelta(hours=1)
    )
    invitation = Invitation(
        enterprise_id=enterprise.id,
        email="colleague@example.cn",
        invited_by_id=holder.id,
        expires_at=now + timedelta(days=7),
    )
    for row in (link, invitation):
        tokens.seal(row, tokens.kind_of(row))
    db.session.add_all([link, invitation])
    # Use rules (issue 17): a training session with one enrolment.
    training = TrainingSession(
        instrument_id=instrument.id,
        starts_at=now + timedelta(days=3),
        ends_at=now + timedelta(days=3, hours=2),
        capacity=8,
        created_by_id=admin.id,
    )
    db.session.add(training)
    db.session.flush()
    db.session.add(TrainingEnrolment(session_id=training.id, user_id=holder.id))
    # Issue 18: use at the instrument (a device key, its event, a session), credit and the waitlist.
    booking = db.session.scalars(select(Booking).order_by(Booking.id)).first()
    assert booking is not None
    key = DeviceKey(
        instrument_id=instrument.id, label="PC", key_hash="0" * 64, prefix="dk_0", created_by_id=admin.id
    )
    used = UsageSession(
        booking_id=booking.id,
        instrument_id=booking.instrument_id,
        started_at=now - timedelta(hours=2),
        ended_at=now - timedelta(hours=1),
        source=UsageSource.DEVICE,
    )
    db.session.add_all([key, used])
    db.session.flush()
    db.session.add(
        UsageEvent(
            instrument_id=instrument.id,
            device_key_id=key.id,
            idempotency_key="backup-1",
            event=EventKind.START,
            at=used.started_at,
            session_id=used.id,
            booking_id=booking.id,
        )
    )
    db.session.add(
        CreditRules(
            scheme_id=db.session.scalar(select(Scheme.id)),
            max_violations=3,
            window_days=90,
            suspension_days=30,
        )
    )
    db.session.add(
        Violation(
            enterprise_id=booking.enterprise_id,
            booking_id=booking.id,
            kind=ViolationKind.NO_SHOW,
            occurred_at=now,
        )
    )
    db.session.add(
        WaitlistEntry(
            instrument_id=instrument.id,
            enterprise_id=enterprise.id,
            requested_by_id=holder.id,
            starts_at=now + timedelta(days=2),
            ends_at=now + timedelta(days=2, hours=2),
        )
    )
    # Issue 18: a recurring booking, the first booking one of its occurrences.
    recurring = BookingSeries(
        instrument_id=booking.instrument_id,
        enterprise_id=booking.enterprise_id,
        requested_by_id=booking.requested_by_id,
        starts_at=now + timedelta(days=3),
        ends_at=now + timedelta(days=3, hours=1),
        repeat_every=RepeatUnit.WEEK,
        repeat_interval=1,
        repeat_weekdays=[2, 4],
        repeat_count=4,
        skipped=[
            {"starts_at": "2026-12-16T01:00:00Z", "ends_at": "2026-12-16T02:00:00Z", "conflict": "closed"}
        ],
    )
    db.session.add(recurring)
    db.session.flush()
    booking.series_id = recurring.id
    audit.record("test.note", "catalog", None, after={"text": "备份测试", "list": [1, 2]})
    db.session.commit()


@pytest.fixture
def small_source(app: Flask, tmp_path: Path) -> Flask:
    """A migrated database with two uploaded files: enough for the refusal tests."""
    for data, name in ((PDF, "report.pdf"), (PNG, "photo.png")):
        uploads.store_upload(io.BytesIO(data), name)
    audit.record("test.note", "catalog", None, after={"text": "备份"})
    db.session.commit()
    return app


def backend_of(app: Flask) -> str:
    return db.engine.dialect.name


# --- the round trip ------------------------------------------------------------------------------


def test_restore_into_empty_database_finds_every_row_and_file(
    app: Flask,
    database_url: str,
    tmp_path: Path,
    fresh_database,
    restore_app,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="portal")
    upload_folder = Path(app.config["UPLOAD_FOLDER"])
    load_demo(instruments=20, enterprise_users=10, bookings=80, vouchers=4)
    fill_every_table(upload_folder)
    db.session.remove()
    source_rows = table_rows(database_url)
    # The test only proves something about tables that have rows: every table must have some.
    expected_tables = {t.name for t in db.metadata.sorted_tables} | {"alembic_version"}
    assert expected_tables <= set(source_rows)
    assert [name for name, rows in source_rows.items() if not rows] == []
    source_files = folder_bytes(upload_folder)
    assert len(source_files) > 20

    archive = tmp_path / "portal.tar.gz"
    result = run(app, "backup", str(archive))
    assert result.exit_code == 0, result.output
    assert archive.stat().st_mode & 0o077 == 0  # password hashes and enterprises' files: owner only
    assert not list(tmp_path.glob(".portal-backup-*")) and not list(tmp_path.glob("*.partial"))
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["backend"] == backend_of(app)
    assert manifest["alembic_revision"] == source_rows["alembic_version"][0][0]
    assert manifest["tables"] == {name: len(rows) for name, rows in source_rows.items()}
    assert set(manifest["uploads"]) == set(source_files)

    assert f"backup written to {archive}" in caplog.text

    # A backup never overwrites a file, nor writes itself into the folder it archives.
    again = run(app, "backup", str(archive))
    assert again.exit_code != 0 and "already exists" in again.output
    inside = run(app, "backup", str(upload_folder / "portal.tar"))
    assert inside.exit_code != 0 and "inside the upload folder" in inside.output
    assert folder_bytes(upload_folder) == source_files

    target_url = fresh_database(backend_of(app))
    target_uploads = tmp_path / "new-server" / "uploads"
    target = restore_app(target_url, target_uploads)
    result = run(target, "restore", str(archive))
    assert result.exit_code == 0, result.output
    assert "every count and checksum matches" in result.output
    assert f"backup {archive} restored" in caplog.text

    assert table_rows(target_url) == source_rows
    assert folder_bytes(target_uploads) == source_files
    assert [p.name for p in target_uploads.parent.iterdir()] == ["uploads"]  # staging cleaned up
    if backend_of(app) == "postgresql":
        assert pg_sequences(target_url) == pg_sequences(database_url)

    # The restored portal carries on: new rows get new keys, and files are where the portal looks.
    with target.app_context():
        event = audit.record("test.after_restore", "catalog", None)
        db.session.commit()
        assert event.id > max(row[0] for row in source_rows["audit_events"])
        request = db.session.scalar(select(VerificationRequest))
        assert uploads.stored_path(request.certificate_stored).read_bytes() == PNG
        db.session.remove()


# --- refusals ------------------------------------------------------------------------------------


def test_damaged_or_altered_archive_is_refused_before_anything_is_written(
    small_source: Flask, tmp_path: Path, fresh_database, restore_app
) -> None:
    archive = tmp_path / "portal.tar"
    assert run(small_source, "backup", str(archive)).exit_code == 0
    checked = run(small_source, "restore", "--check-only", str(archive))
    assert checked.exit_code == 0 and "is intact" in checked.output
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        upload_name = sorted(manifest["uploads"])[0]

    def flip_last_byte(data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1])

    alterations = {
        "upload changed": lambda name, data: (
            flip_last_byte(data) if name == f"uploads/{upload_name}" else data
        ),
        "dump changed": lambda name, data: flip_last_byte(data) if name.startswith("database.") else data,
        "upload removed": lambda name, data: None if name == f"uploads/{upload_name}" else data,
    }
    target_url = fresh_database(backend_of(small_source))
    for what, change in alterations.items():
        altered = tmp_path / f"{what}.tar"
        rewrite(archive, altered, change)
        target_uploads = tmp_path / what / "uploads"
        target = restore_app(target_url, target_uploads)
        result = run(target, "restore", str(altered))
        assert result.exit_code != 0, what
        assert "corrupt or was altered; nothing was restored" in result.output, what
        assert run(target, "restore", "--check-only", str(altered)).exit_code != 0, what
        assert table_rows(target_url) == {}, what
        assert not target_uploads.exists(), what

    # A file slipped into the archive is not in the manifest.
    extra = tmp_path / "extra.tar"
    rewrite(archive, extra, lambda name, data: data)
    with tarfile.open(extra, "a") as tar:
        info = tarfile.TarInfo("uploads/extra.pdf")
        info.size = len(PDF)
        tar.addfile(info, io.BytesIO(PDF))
    result = run(restore_app(target_url), "restore", str(extra))
    assert result.exit_code != 0 and "in the archive but not in the manifest" in result.output
    assert table_rows(target_url) == {}

    # A truncated archive (a copy cut short) cannot be read.
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = run(restore_app(target_url), "restore", str(cut))
    assert result.exit_code != 0 and ("cannot be read" in result.output or "altered" in result.output)
    assert table_rows(target_url) == {}


def test_restore_reports_a_database_that_differs_from_the_manifest(
    small_source: Flask, tmp_path: Path, fresh_database, restore_app
) -> None:
    archive = tmp_path / "portal.tar"
    assert run(small_source, "backup", str(archive)).exit_code == 0

    def add_a_user(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest["tables"]["users"] += 1
        return json.dumps(manifest).encode()

    altered = tmp_path / "altered.tar"
    rewrite(archive, altered, add_a_user)
    result = run(restore_app(fresh_database(backend_of(small_source))), "restore", str(altered))
    assert result.exit_code != 0
    assert "table users has 0 rows, the manifest says 1" in result.output
    assert "does not match the manifest" in result.output


def test_restore_refuses_a_target_that_is_not_empty(
    small_source: Flask, database_url: str, tmp_path: Path, fresh_database, restore_app
) -> None:
    archive = tmp_path / "portal.tar"
    assert run(small_source, "backup", str(archive)).exit_code == 0
    before = table_rows(database_url)

    # Restoring over the live database itself.
    result = run(small_source, "restore", str(archive))
    assert result.exit_code != 0
    assert "the target database is not empty" in result.output
    assert table_rows(database_url) == before

    # An empty database but an upload folder that already holds files: nothing is written anywhere.
    target_url = fresh_database(backend_of(small_source))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.pdf").write_bytes(PDF)
    result = run(restore_app(target_url, occupied), "restore", str(archive))
    assert result.exit_code != 0 and "is not empty" in result.output
    assert table_rows(target_url) == {}
    assert folder_bytes(occupied) == {"keep.pdf": PDF}


def test_restore_refuses_the_other_backend(
    small_source: Flask, tmp_path: Path, fresh_database, restore_app
) -> None:
    archive = tmp_path / "portal.tar"
    assert run(small_source, "backup", str(archive)).exit_code == 0
    other = "postgresql" if backend_of(small_source) == "sqlite" else "sqlite"
    target_url = fresh_database(other)
    result = run(restore_app(target_url), "restore", str(archive))
    assert result.exit_code != 0
    assert f"holds a {backend_of(small_source)} database and the target is {other}" in result.output
    assert table_rows(target_url) == {}


HOSTILE_MEMBERS = [
    ("../escaped.pdf", tarfile.REGTYPE),
    ("uploads/../../escaped.pdf", tarfile.REGTYPE),
    ("/tmp/escaped.pdf", tarfile.REGTYPE),  # noqa: S108 - a hostile member name, never written
    ("uploads/link.pdf", tarfile.SYMTYPE),
    ("uploads/hard.pdf", tarfile.LNKTYPE),
    ("elsewhere.txt", tarfile.REGTYPE),
]


def test_restore_refuses_archive_members_that_could_escape(
    small_source: Flask, tmp_path: Path, fresh_database, restore_app
) -> None:
    archive = tmp_path / "portal.tar"
    assert run(small_source, "backup", str(archive)).exit_code == 0
    target_url = fresh_database(backend_of(small_source))
    for member, kind in HOSTILE_MEMBERS:
        hostile = tmp_path / "hostile.tar"
        hostile.write_bytes(archive.read_bytes())
        with tarfile.open(hostile, "a") as tar:
            info = tarfile.TarInfo(member)
            info.type = kind
            if kind == tarfile.REGTYPE:
                info.size = len(PDF)
                tar.addfile(info, io.BytesIO(PDF))
            else:
                info.linkname = "/etc/passwd"
                tar.addfile(info)
        target_uploads = tmp_path / "target" / "uploads"
        result = run(restore_app(target_url, target_uploads), "restore", str(hostile))
        assert result.exit_code != 0, member
        assert f"member {member!r} is" in result.output, member
        assert table_rows(target_url) == {}, member
        assert not target_uploads.exists(), member
        assert not list(tmp_path.rglob("escaped.pdf")), member
        assert not Path("/tmp/escaped.pdf").exists(), member  # noqa: S108


def test_pg_tools_get_the_password_from_the_environment_not_the_command_line() -> None:
    from portal.operations.shared import libpq

    uri, env = libpq(
        sa.engine.make_url("postgresql+psycopg://portal:s%40cret@db.example:5433/portal?sslmode=require")
    )
    assert uri == "postgresql://portal@db.example:5433/portal?sslmode=require"
    assert env["PGPASSWORD"] == "s@cret"
