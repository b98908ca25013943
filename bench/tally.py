"""Tally: recomputing a month's subsidy tallies over 1,000,000 claims against a bare SQL GROUP BY.

    .venv/bin/python -m bench.tally LARGE_URL [YYYY-MM]

Ours is `finance.tally_month`: the lock, deleting the month's rows, one INSERT … SELECT that groups
the month's claims per fund, enterprise, provider and county, and the commit. The baseline is the
plainest query that reads the same rows: the month's approved claims grouped by enterprise,
provider and county, with their sums, fetched to the client. Median of 5 runs each, alternating.
"""

from __future__ import annotations

import statistics
import sys
import time

from sqlalchemy import text

from bench.common import Result, portal_app
from portal.core import clock
from portal.extensions import db
from portal.finance.services import month_of, tally_month

BARE_GROUP_BY = """
SELECT c.enterprise_id, c.institution_id, e.county, f.fund, sum(f.amount_fen), count(*)
FROM claims c JOIN claim_funds f ON f.claim_id = c.id JOIN enterprises e ON e.id = c.enterprise_id
WHERE c.approved_month = :month AND c.state IN ('in_notice', 'payable', 'paid')
GROUP BY c.enterprise_id, c.institution_id, e.county, f.fund
"""

RUNS = 5


def run(url: str, month: str | None = None) -> list[Result]:
    app = portal_app(url)
    with app.app_context():
        month = month or month_of(clock.utcnow())
        claims = db.session.scalar(
            text("SELECT count(*) FROM claims WHERE approved_month = :m OR paid_month = :m"), {"m": month}
        )
        db.session.rollback()
        ours, bare = [], []
        tally_month(month)  # warm-up: the first run also reads the table into the cache
        for _ in range(RUNS):
            started = time.perf_counter()
            rows = tally_month(month)
            ours.append(time.perf_counter() - started)
            started = time.perf_counter()
            groups = db.session.execute(text(BARE_GROUP_BY), {"month": month}).all()
            bare.append(time.perf_counter() - started)
            db.session.rollback()
    mine, baseline = statistics.median(ours) * 1000, statistics.median(bare) * 1000
    return [
        Result(
            f"tally a month of {claims:,} claims",
            mine,
            baseline,
            "ms",
            "ratio ≤ 1.5",
            mine / baseline <= 1.5,
            note=f"{rows:,} tally rows written (per fund) from {len(groups):,} groups; median of {RUNS}",
        )
    ]


if __name__ == "__main__":
    from bench.common import table

    print(table(run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
