"""Dashboard latency at province scale: each figure's query, and the whole page, on a database you name.

    .venv/bin/python bench/dashboard_latency.py postgresql://postgres@127.0.0.1/dashbench [--grow]

`--grow` first copies the demo's instruments (with their opening hours) up to 100,000 and its
bookings up to 1,000,000 with INSERT … SELECT (a minute, not hours); load the demo before it:
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

from config import database_url
from portal import create_app
from portal.core import clock
from portal.dashboard import services
from portal.extensions import db
from portal.finance.services import month_of

INSTRUMENTS, BOOKINGS = 100_000, 1_000_000

GROW = [
    # Copies of the existing instruments under new codes, until there are INSTRUMENTS.
    """
    INSERT INTO instruments (code, name, name_en, category_id, model, manufacturer,
        original_value_fen, status, sharing_mode, fee_per_hour_fen, fee_per_sample_fen,
        headline_fee_fen, institution_id, county, address, search_text, search_grams,
        created_at, updated_at)
    SELECT 'X' || g || '-' || i.code, i.name, i.name_en, i.category_id, i.model, i.manufacturer,
        i.original_value_fen, i.status, i.sharing_mode, i.fee_per_hour_fen, i.fee_per_sample_fen,
        i.headline_fee_fen, i.institution_id, i.county, i.address, i.search_text, i.search_grams,
        i.created_at, i.updated_at
    FROM instruments i CROSS JOIN generate_series(1, :copies) g
    WHERE i.code NOT LIKE 'X%'
    """,
    """
    INSERT INTO opening_hours (instrument_id, weekday, opens_at, closes_at)
    SELECT i.id, h.weekday, h.opens_at, h.closes_at FROM instruments i
    JOIN instruments o ON o.code = substr(i.code, strpos(i.code, '-') + 1)
    JOIN opening_hours h ON h.instrument_id = o.id
    WHERE i.code LIKE 'X%'
    """,
    # Completed bookings (outside the no-double-booking constraint, which covers held slots),
    # spread over the year and over every instrument.
    """
    INSERT INTO bookings (instrument_id, enterprise_id, requested_by_id, mode, state, starts_at,
        ends_at, held_until, purpose, created_at, updated_at)
    SELECT (SELECT min(id) FROM instruments) + (g % (SELECT count(*) FROM instruments)),
        b.enterprise_id, b.requested_by_id, 'slot', 'completed',
        date_trunc('hour', now()) - (g % 8000) * interval '1 hour',
        date_trunc('hour', now()) - (g % 8000) * interval '1 hour' + interval '2 hours',
        date_trunc('hour', now()) - (g % 8000) * interval '1 hour' + interval '2 hours',
        'bench', now(), now()
    FROM generate_series(1, :bookings) g
    CROSS JOIN LATERAL (SELECT enterprise_id, requested_by_id FROM bookings ORDER BY id LIMIT 1) b
    """,
]


def grow() -> None:
    have = db.session.scalar(text("SELECT count(*) FROM instruments"))
    if have < INSTRUMENTS:
        copies = (INSTRUMENTS - have) // have
        db.session.execute(text(GROW[0]), {"copies": copies})
        db.session.execute(text(GROW[1]))
    bookings = db.session.scalar(text("SELECT count(*) FROM bookings"))
    if bookings < BOOKINGS:
        db.session.execute(text(GROW[2]), {"bookings": BOOKINGS - bookings})
    db.session.commit()
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def timed(call) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        call()
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main(url: str, do_grow: bool) -> None:
    app = create_app("development", {"SQLALCHEMY_DATABASE_URI": database_url(url, url)})
    with app.app_context():
        if do_grow:
            grow()
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
