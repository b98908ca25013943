"""National reporting at province scale: the evaluation page on its first visit, and the year's
service-record export streamed.

    .venv/bin/python -m bench.reporting SMALL_URL LARGE_URL

The large database (bench/generate.py) holds bookings but no service records: this case first
records a service for every completed booking (two hours each, a third of them rated, set-based
INSERT … SELECT), then counts the usage tallies (months and years) once, as the nightly task would. Both are
kept for the next run.

- The evaluation page (`/reports/evaluation`, as a reviewer, through the whole Flask stack) for the
  province and for one county, each request with nothing cached: median and p95 of 15, against
  300 ms / 500 ms; the same page on the demo network (city scale) against 50 ms.
- The year's service records as CSV and XLSX, each downloaded through the test client in a fresh
  child process that writes the streamed body to a file: peak resident memory (VmHWM) against
  200 MB, with `csv.writer` over the same query as the baseline for time.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from sqlalchemy import text

from bench import pages
from bench.common import ROOT, Result, export_results, nearest_rank_p95, peak_mb, portal_app

SERVICES_SQL = """
INSERT INTO service_records (booking_id, hours, computed_fee_fen, fee_fen, recorded_by_id, recorded_at,
    result_summary, service_type, service_way, rating)
SELECT b.id, 2, 60000 + (b.id % 7) * 10000, 60000 + (b.id % 7) * 10000, b.requested_by_id, b.ends_at,
    'bench', 'analysis', '占用', CASE WHEN b.id % 3 = 0 THEN 3 + b.id % 3 END
FROM bookings b
WHERE b.state = 'completed' AND b.starts_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM service_records r WHERE r.booking_id = b.id)
"""
PAGE_MEDIAN_MS, PAGE_P95_MS, CITY_MEDIAN_MS = 300, 500, 50
RUNS = 15
COUNTY = "东昌府区"


def prepare(url: str, log=print) -> tuple[int, int]:
    """Service records for the completed bookings that have none, and the tallies, unless there."""
    from portal.extensions import db
    from portal.usage import tallies

    app = portal_app(url)
    with app.app_context():
        began = time.perf_counter()
        added = db.session.scalar(text("SELECT count(*) FROM service_records WHERE result_summary = 'bench'"))
        if not added:
            db.session.execute(text(SERVICES_SQL))
            db.session.commit()
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        if not added or not db.session.scalar(text("SELECT count(*) FROM usage_tallies")):
            tallies.tally_all()
            log(f"  service records and tallies added ({time.perf_counter() - began:.0f} s)")
        records = db.session.scalar(text("SELECT count(*) FROM service_records"))
        return records, db.session.scalar(text("SELECT count(*) FROM usage_tallies"))


def page_times(url: str, query: str) -> list[float]:
    """RUNS visits of the evaluation page as the reviewer, each timed whole (bench/pages.py)."""
    from portal.core import clock

    path = f"/reports/evaluation?year={clock.local_today().year}{query}"
    return pages.visit_times(pages.signed_in(portal_app(url), "reviewer"), path, RUNS)


def _child(kind: str, url: str, path: str) -> None:
    from flask_login import login_user
    from sqlalchemy import select

    from portal.accounts.models import User
    from portal.core import clock
    from portal.extensions import db
    from portal.reporting import services
    from portal.reporting.hours import Scope

    app = portal_app(url)
    year = clock.local_today().year
    started = time.perf_counter()
    rows = 0
    if kind == "bare":
        with app.app_context(), open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            query = services.service_rows(Scope(), year).execution_options(yield_per=2000)
            for row in db.session.execute(query):
                writer.writerow(row)
                rows += 1
    else:
        # The view through Flask's request handling, signed in without the login form (whose password
        # hash alone would take more memory than the export).
        with app.test_request_context(f"/reports/service-records.{kind}?year={year}"):
            login_user(db.session.scalar(select(User).where(User.username == "reviewer")))
            response = app.full_dispatch_request()
            if response.status_code != 200:
                raise RuntimeError(f"the {kind} export answered {response.status_code}")
            with open(path, "wb") as handle:
                for chunk in response.response:
                    handle.write(chunk if isinstance(chunk, bytes) else chunk.encode())
            response.close()
        if kind == "csv":
            with open(path, encoding="utf-8-sig") as handle:
                rows = sum(1 for _ in csv.reader(handle)) - 1
    seconds = time.perf_counter() - started
    print(
        json.dumps({"rows": rows, "seconds": seconds, "bytes": os.path.getsize(path), "peak_mb": peak_mb()})
    )


def _measure(kind: str, url: str, folder: str) -> dict:
    path = os.path.join(folder, f"services.{kind}")
    out = subprocess.run(
        [sys.executable, "-m", "bench.reporting", "--child", kind, url, path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.remove(path)
    return json.loads(out.strip().splitlines()[-1])


def run(small_url: str, large_url: str) -> list[Result]:
    prepare(small_url)  # the demo network: its services are recorded; tallies, if it has none
    records, tallied = prepare(large_url)
    results = []
    for label, url, query, scale in (
        ("province", large_url, "", "large"),
        (f"one county ({COUNTY})", large_url, f"&county={COUNTY}", "large"),
        ("city (demo network)", small_url, "", "small"),
    ):
        times = page_times(url, query)
        median = statistics.median(times)
        if scale == "large":
            results.append(
                Result(
                    f"evaluation page, {label}, nothing cached: median",
                    median,
                    None,
                    "ms",
                    f"≤ {PAGE_MEDIAN_MS} ms",
                    median <= PAGE_MEDIAN_MS,
                    note=f"{records:,} service records, {tallied:,} usage tally rows (months and years); "
                    f"{RUNS} requests",
                )
            )
            p95 = nearest_rank_p95(times)
            results.append(
                Result(
                    f"evaluation page, {label}: p95",
                    p95,
                    None,
                    "ms",
                    f"≤ {PAGE_P95_MS} ms",
                    p95 <= PAGE_P95_MS,
                )
            )
        else:
            results.append(
                Result(
                    f"evaluation page, {label}: median",
                    median,
                    None,
                    "ms",
                    f"≤ {CITY_MEDIAN_MS} ms",
                    median <= CITY_MEDIAN_MS,
                )
            )
    with tempfile.TemporaryDirectory() as folder:
        bare = _measure("bare", large_url, folder)
        for kind in ("csv", "xlsx"):
            figures = _measure(kind, large_url, folder)
            label = f"{kind.upper()} service records of the year ({bare['rows']:,} rows), streamed"
            results += export_results(label, figures, bare, "csv.writer over the same query")
    return results


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        _child(*sys.argv[2:5])
    else:
        from bench.common import table

        print(table(run(sys.argv[1], sys.argv[2])))
