"""Catalogue search latency (service level, cache off) on a database of your choice.

    .venv/bin/python -m bench.search_latency postgresql://postgres@127.0.0.1/bench100k

Prints the median of 7 runs per query. Load the database first, e.g.
    DATABASE_URL=... .venv/bin/flask --app wsgi db upgrade
    DATABASE_URL=... .venv/bin/flask --app wsgi demo load --instruments 100000 --bookings 0 --vouchers 0
A benchmark, not a test: it prints figures and never fails.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import portal_app
from portal.catalog.services import InstrumentQuery, search_instruments
from portal.extensions import db

QUERIES = [
    InstrumentQuery(q="质谱"),
    InstrumentQuery(q="质谱", county="东昌府区", status="normal"),
    InstrumentQuery(q="agilent 7890b"),
    InstrumentQuery(q="谱"),
    InstrumentQuery(category="01", fee_max_fen=30000),
    InstrumentQuery(),
    InstrumentQuery(q="电子显微镜", sort="-fee"),
]


def main(url: str) -> None:
    app = portal_app(url)
    with app.app_context():
        print(f"{'query':60s} {'rows':>7s} {'median ms':>10s}")
        for query in QUERIES:
            times = []
            for _ in range(7):
                started = time.perf_counter()
                result = search_instruments(query)
                times.append(time.perf_counter() - started)
                db.session.rollback()
            label = {k: v for k, v in query.__dict__.items() if v not in ("", None, "relevance", 1, 20)}
            print(f"{label!s:60s} {result.total:7d} {statistics.median(times) * 1000:10.1f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///instance/portal.db")
