"""The review desk's queue and finance's count of a period keep plans that stay fast at province scale
(issue 20): checked on PostgreSQL's own plans (EXPLAIN, nothing run), as bench/pages.py measures them
on the large benchmark database.

A test database is tiny, and on a tiny table PostgreSQL reads the table whole whatever indexes there are;
the plans are asked for with sequential scans (and, for the count, bitmap scans) priced out, so that
what they show is whether an index can serve the statement as the page sends it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.common import recorded_statements
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import login

COUNTY = "东昌府区"


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("EXPLAIN is PostgreSQL's")


def scans_of_claims(statement: str, parameters: Any, *priced_out: str) -> list[dict[str, Any]]:
    """The plan nodes that read the claims table, planned with the given scan kinds priced out."""
    connection = db.session.connection()
    for kind in ("seqscan", *priced_out):
        connection.exec_driver_sql(f"SET LOCAL enable_{kind} = off")
    plan = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    db.session.rollback()
    nodes, found = [(json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]], []
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        if node.get("Relation Name") == "claims":
            found.append(node)
    return found


def statements_on_claims(seen: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [
        (sql, params) for sql, params in seen if sql.lstrip().startswith("SELECT") and "FROM claims" in sql
    ]


def bounds(node: dict[str, Any]) -> str:
    """What an index gives the scan: the conditions it looks up, not the ones it filters by afterwards."""
    return node.get("Index Cond", "") + node.get("Recheck Cond", "")


def test_the_review_queue_finds_a_countys_waiting_claims_by_index_before_summing_amounts(client, make_user):
    """The county's enterprises bound the scan of claims (with the waiting states: at province scale
    through `ix_claims_state_enterprise`), so a claim's amount (a sum over its fund rows, the amount
    filter) is computed only for the county's waiting claims: with the county joined from enterprises
    it was computed for every waiting claim of the province (398 + 358 ms at province scale)."""
    make_user(Role.ENTERPRISE)  # an enterprise in the county, so that the county has ids to look up
    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer.username)
    with recorded_statements() as seen:
        page = client.get("/review/", query_string={"kind": "claim", "county": COUNTY, "amount_min": "500"})
    assert page.status_code == 200
    statements = statements_on_claims(seen)
    assert len(statements) == 2  # the count of claims and the page of them
    for statement, parameters in statements:
        scans = scans_of_claims(statement, parameters)
        assert scans, statement
        for scan in scans:
            assert scan["Node Type"] != "Seq Scan", statement
            # By the county's ids themselves, not through a join to enterprises: the planner may start a
            # join from the waiting claims and meet the county only after summing each one's amount (it
            # did at province scale; here, on a tiny database, it happens to start from the county).
            assert "enterprise_id" in bounds(scan) and "enterprises." not in bounds(scan), (statement, scan)
            assert "SubPlan" in scan.get("Filter", ""), scan  # the amount, only for the rows looked up


def test_finance_counts_a_periods_claims_from_an_index_alone(client, make_user):
    """The count of the claims an export of the period holds (shown on the totals page) is read from
    `ix_claims_approved_month_state` without visiting the claims: through the export's joins it read,
    sorted and joined a year's 1,000,000 claims (720 ms at province scale)."""
    login(client, make_user(Role.FINANCE).username)
    with recorded_statements() as seen:
        page = client.get("/finance/", query_string={"month_from": "2026-01", "group_by": "county"})
    assert page.status_code == 200
    statements = statements_on_claims(seen)
    assert len(statements) == 1, statements  # the count; the totals come from the tallies
    # With the table's visibility map current (as autovacuum keeps it on a busy server), an index that
    # covers the count is read alone. Without it, a tiny table's statistics, moved by other tests,
    # once let the planner visit the rows through another index in the full run.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE claims")
    (scan,) = scans_of_claims(*statements[0], "bitmapscan")
    assert (scan["Node Type"], scan["Index Name"]) == ("Index Only Scan", "ix_claims_approved_month_state")
