"""Catalogue search latency (service level, cache off) at 100,000 instruments against 1,202 (issue 16).

    .venv/bin/python -m bench.search_latency postgresql://postgres@127.0.0.1/small \
        postgresql://postgres@127.0.0.1/large [--explain]

`small` holds the demo network (1,202 instruments), `large` 100,000 (bench/generate.py). Each query
runs on both, alternating, and reports the median of 9 runs and the ratio large ÷ small (target
≤ 2×). The queries are what people type: Chinese keywords, pinyin and initials, a host's name, short
forms the synonym table expands, a model number, and a filter-only list. `--explain` prints, for the
large database, whether PostgreSQL's own plan (nothing forced) reads the keyword index.
Part of `make bench` (case "search"). A benchmark: it prints, never fails.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Result, latency_result, portal_app, table
from portal.catalog.services import InstrumentQuery, _filtered, normalize_query, search_instruments
from portal.extensions import db

QUERIES = [
    InstrumentQuery(q="质谱"),
    InstrumentQuery(q="质谱", county="东昌府区", status="normal"),
    InstrumentQuery(q="zhipu"),
    InstrumentQuery(q="zp"),
    InstrumentQuery(q="聊城大学"),
    InstrumentQuery(q="聊城大学 质谱"),
    InstrumentQuery(q="扫描电镜"),
    InstrumentQuery(q="液质"),
    InstrumentQuery(q="xrd"),
    InstrumentQuery(q="agilent 7890b"),
    InstrumentQuery(q="透射电子显微镜"),
    InstrumentQuery(category="01", fee_max_fen=30000),
]
RUNS = 9
TARGET = 2.0


def label(query: InstrumentQuery) -> str:
    return ", ".join(f"{k}={v}" for k, v in query.__dict__.items() if v not in ("", None, "relevance", 1, 20))


def _time(app, query: InstrumentQuery) -> tuple[float, int]:
    with app.app_context():
        started = time.perf_counter()
        result = search_instruments(query)
        elapsed = (time.perf_counter() - started) * 1000
        db.session.rollback()
    return elapsed, result.total


def uses_index(app, query: InstrumentQuery) -> bool:
    """Whether the planner, left to itself, reads the keyword index for this query."""
    with app.app_context():
        compiled = _filtered(normalize_query(query)).compile(dialect=db.engine.dialect)
        rows = db.session.connection().exec_driver_sql("EXPLAIN " + str(compiled), compiled.params)
        plan = "\n".join(r[0] for r in rows)
        db.session.rollback()
    return "ix_instruments_search_grams" in plan


def run(small_url: str, large_url: str, explain: bool = False) -> list[Result]:
    small, large = portal_app(small_url), portal_app(large_url)
    results = []
    for query in QUERIES:
        for app in (small, large):  # warm up: connections, the planner's caches
            _time(app, query)
        times: dict[str, list[float]] = {"small": [], "large": []}
        totals = {}
        for _ in range(RUNS):
            for name, app in (("small", small), ("large", large)):
                elapsed, totals[name] = _time(app, query)
                times[name].append(elapsed)
        ours, baseline = statistics.median(times["large"]), statistics.median(times["small"])
        note = f"{totals['large']:,} of 100k rows, {totals['small']:,} of 1,202"
        if explain and query.q:
            note += "; plan reads the index" if uses_index(large, query) else "; plan does NOT read the index"
        results.append(latency_result(f"search {label(query) or 'everything'}", ours, baseline, TARGET, note))
    return results


def main(argv: list[str]) -> None:
    explain = "--explain" in argv
    urls = [a for a in argv if not a.startswith("--")]
    if len(urls) != 2:
        sys.exit(__doc__)
    print(table(run(*urls, explain=explain)))


if __name__ == "__main__":
    main(sys.argv[1:])
