"""Dashboard latency at province scale: each figure's query, and the whole page, on a database you name.

    .venv/bin/python -m bench.dashboard_latency postgresql://postgres@127.0.0.1/dashbench [--grow]

`--grow` first makes the database anew with bench/generate.py: the demo network, its instruments
copied up to 100,000 and bookings up to 1,000,000 by INSERT … SELECT (minutes, not hours), unless it
already holds that many. Without it, load the demo yourself:
    export DATABASE_URL=...
    .venv/bin/flask --app wsgi db upgrade && .venv/bin/flask --app wsgi demo load
Prints the median of 5 runs per figure. A benchmark, not a test: it prints and never fails.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench import generate
from config import database_url
from portal import create_app
from portal.core import clock
from portal.dashboard import services
from portal.extensions import db
from portal.finance.services import month_of

INSTRUMENTS, BOOKINGS = 100_000, 1_000_000


def grow(url: str) -> None:
    """The demo network grown to INSTRUMENTS instruments and BOOKINGS bookings (bench/generate.py),
    unless the database already holds that many."""
    generate.ensure(url, generate.Sizes(INSTRUMENTS, BOOKINGS, 0), month_of(clock.utcnow()), reuse=True)


def timed(call) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        call()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main(url: str, do_grow: bool) -> None:
    if do_grow:
        grow(database_url(url, url))
    app = create_app("development", {"SQLALCHEMY_DATABASE_URI": database_url(url, url)})
    with app.app_context():
        counts = db.session.execute(
            text("SELECT (SELECT count(*) FROM instruments), (SELECT count(*) FROM bookings)")
        ).one()
        this_month = month_of(clock.utcnow())
        period = services.Period(this_month[:4] + "-01", this_month)
        today = clock.local_today()
        cases = {
            "headline figures": lambda: services.figures(period),
            "headline figures, one county": lambda: services.figures(period, "东昌府区"),
            "burn-down": lambda: services.burn_down(today.year, today),
            "utilisation": lambda: services.utilisation(period),
            "bookings by county": lambda: services.bookings_by_county(period),
            "bookings by category": lambda: services.bookings_by_category(period),
            "subsidy by enterprise type": lambda: services.subsidies_by_enterprise_kind(period),
            "public headline": lambda: services.public_headline(today),
            "most used": lambda: services.most_used(today),
        }
        print(f"{counts[0]:,} instruments, {counts[1]:,} bookings; {period.month_from}..{period.month_to}")
        for name, call in cases.items():
            print(f"{name:32s} {timed(call):8.1f} ms")
        print("(the page runs these plus the previous period's figures, then renders)")


if __name__ == "__main__":
    main(sys.argv[1], "--grow" in sys.argv[2:])
