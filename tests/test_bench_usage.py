"""The check-in and waitlist-offer benchmark (bench/usage.py, `make bench` cases "checkin" and
"waitlist") run on a tiny database, both sides on the same one, so that the code cannot rot between
the rare runs at 1,000,000 bookings: every measured call does what it should, and the database is
left as it was (but for the audit log, which only grows)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bench import usage
from bench.common import sequential_scans
from portal.core.permissions import Role
from portal.extensions import db

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

RUNS = 2  # measured calls per side, after the warm-up


@pytest.fixture
def tiny(app, database_url, make_institution, make_instrument, make_user) -> str:
    """The two demo enterprises' users, and instruments open on weekday mornings: one per check-in
    of each side (the waitlist takes the first)."""
    host = make_institution()
    for _ in range(2 * (RUNS + 1)):
        make_instrument(institution=host)
    make_user(Role.PROVIDER, institution=host)
    make_user(Role.ENTERPRISE, username=usage.HOLDER)
    make_user(Role.ENTERPRISE, username=usage.WAITING)
    return database_url


def _rows() -> dict[str, int]:
    """Rows per table, but the audit log's."""
    tables = [t for t in sa.inspect(db.engine).get_table_names() if t != "audit_events"]
    counts = {t: db.session.scalar(sa.text(f'SELECT count(*) FROM "{t}"')) for t in tables}
    db.session.rollback()  # no read transaction of ours may keep the bench's writes waiting (SQLite)
    return counts


def _check(results, labels: int, backend: str) -> None:
    assert len(results) == labels
    for result in results:
        assert result.ours > 0 and result.baseline and result.baseline > 0
        assert result.met in (True, False)
        # Every call, the warm-up's too, did what it should on both sides.
        assert f"did what it should {RUNS + 1} and {RUNS + 1} times of {RUNS + 1}" in result.note
    if backend == "postgresql":  # the plans were read, and the tiny tables need no index
        assert "plans: none" in results[0].note


def test_check_in_bench_checks_in_and_leaves_the_database(tiny: str, backend: str) -> None:
    before = _rows()
    results = usage.run_check_in(tiny, tiny, runs=RUNS, explain=backend == "postgresql")
    _check(results, 2, backend)
    assert "check in" in results[1].case
    assert _rows() == before


def test_waitlist_bench_offers_and_leaves_the_database(tiny: str, backend: str) -> None:
    before = _rows()
    results = usage.run_waitlist(tiny, tiny, runs=RUNS, explain=backend == "postgresql")
    _check(results, 2, backend)
    assert "cancel" in results[0].case and "offer alone" in results[1].case
    assert _rows() == before


def test_plans_name_a_table_read_whole(app, backend: str) -> None:
    """What --explain notes: a statement PostgreSQL answers by reading a table whole is named."""
    if backend != "postgresql":
        pytest.skip("EXPLAIN is PostgreSQL's")
    by_purpose = ("SELECT id FROM bookings WHERE purpose = %(purpose)s", {"purpose": "bench"})
    by_id = ("SELECT id FROM bookings WHERE id = %(id)s", {"id": 1})
    # Any size counts here (a table never analysed has -1 rows): the tiny table stands for a big one,
    # whose primary key the planner would read for one id (an empty table it may read whole instead).
    db.session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    assert sequential_scans([by_purpose, by_id], rows_over=-2) == [f"bookings: {by_purpose[0]}"]
    assert sequential_scans([by_purpose]) == []  # an empty table is not a big one
