"""Benchmark databases in minutes: the demo network, grown by set-based INSERT … SELECT on PostgreSQL.

    .venv/bin/python bench/generate.py postgresql://postgres@127.0.0.1/bench_large \
        --instruments 100000 --bookings 1000000 --claims 1000000

The database is dropped and made again, migrated, loaded with the demo network (1,202 instruments,
its institutions, enterprises, vouchers and users: realistic names for the Chinese keyword search),
then grown inside PostgreSQL itself, so no row crosses the wire:
- instruments: copies of the demo's instruments (and their opening hours) under new codes;
- bookings: spread over every instrument, one in ten holding a future slot (so the exclusion
  constraint's GiST index is as large as it would be), the rest completed, cancelled or refused;
- claims: against the demo's vouchers and providers, all approved (or paid) in one month, which is
  what the tally and the exports read.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import portal_app

INSTRUMENTS_SQL = """
INSERT INTO instruments (code, name, name_en, category_id, model, manufacturer,
    original_value_fen, status, sharing_mode, fee_per_hour_fen, fee_per_sample_fen,
    headline_fee_fen, institution_id, county, address, search_text, search_grams, search_pinyin,
    created_at, updated_at)
SELECT 'B' || g || '-' || i.code, i.name, i.name_en, i.category_id, i.model, i.manufacturer,
    i.original_value_fen, i.status, i.sharing_mode, i.fee_per_hour_fen, i.fee_per_sample_fen,
    i.headline_fee_fen, i.institution_id, i.county, i.address, i.search_text, i.search_grams, i.search_pinyin,
    i.created_at, i.updated_at
FROM (SELECT * FROM instruments WHERE id <= :last_original ORDER BY id LIMIT :per_copy) i
CROSS JOIN generate_series(CAST(:first AS integer), CAST(:last AS integer)) g
"""

OPENING_HOURS_SQL = """
INSERT INTO opening_hours (instrument_id, weekday, opens_at, closes_at)
SELECT i.id, h.weekday, h.opens_at, h.closes_at FROM instruments i
JOIN instruments o ON o.code = substr(i.code, strpos(i.code, '-') + 1)
JOIN opening_hours h ON h.instrument_id = o.id
WHERE i.id > :last_original
"""

# Booking g goes to instrument g mod n as that instrument's (g div n)-th booking, three hours after
# the one before, so no two slot-holding bookings of an instrument overlap. Holding bookings sit 70+
# days ahead, beyond the 60-day booking window the benchmark books in.
BOOKINGS_SQL = """
WITH ins AS (SELECT row_number() OVER (ORDER BY id) - 1 AS rn, id FROM instruments),
     n AS (SELECT count(*) AS n FROM instruments),
     ent AS (SELECT row_number() OVER (ORDER BY e.id) - 1 AS rn, e.id,
                    (SELECT min(u.id) FROM users u WHERE u.enterprise_id = e.id) AS user_id
             FROM enterprises e WHERE EXISTS (SELECT 1 FROM users u WHERE u.enterprise_id = e.id)),
     m AS (SELECT count(*) AS m FROM ent),
     rows AS (
        SELECT g, ins.id AS instrument_id, (g / n.n) AS k,
               CASE g % 20 WHEN 0 THEN 'confirmed' WHEN 1 THEN 'requested' WHEN 2 THEN 'cancelled'
                           WHEN 3 THEN 'rejected' WHEN 4 THEN 'expired' ELSE 'completed' END AS state
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g CROSS JOIN n
        JOIN ins ON ins.rn = g % n.n
     ),
     timed AS (
        SELECT rows.*, CASE WHEN state IN ('confirmed', 'requested')
                            THEN date_trunc('day', now()) + interval '70 days' + k * interval '3 hours'
                            ELSE date_trunc('hour', now()) - interval '1 day' - k * interval '3 hours'
                       END AS starts_at
        FROM rows
     )
INSERT INTO bookings (instrument_id, enterprise_id, requested_by_id, mode, state, starts_at, ends_at,
    held_until, purpose, created_at, updated_at)
SELECT t.instrument_id, ent.id, ent.user_id, 'slot', t.state, t.starts_at,
    t.starts_at + interval '2 hours', t.starts_at + interval '2 hours', 'bench', now(), now()
FROM timed t CROSS JOIN m JOIN ent ON ent.rn = t.g % m.m
"""

# Claims against the demo's vouchers (the claim's enterprise is its voucher's), spread over the
# providers; ten in eleven approved in :month (in notice, payable or paid in the same month), the
# rest still submitted or rejected, which the tally and the exports must skip.
CLAIMS_SQL = """
WITH v AS (SELECT row_number() OVER (ORDER BY v.id) - 1 AS rn, v.id, v.enterprise_id,
                  (SELECT min(u.id) FROM users u WHERE u.enterprise_id = v.enterprise_id) AS user_id
           FROM vouchers v WHERE EXISTS (SELECT 1 FROM users u WHERE u.enterprise_id = v.enterprise_id)),
     nv AS (SELECT count(*) AS n FROM v),
     p AS (SELECT row_number() OVER (ORDER BY id) - 1 AS rn, id FROM institutions),
     np AS (SELECT count(*) AS n FROM p),
     rows AS (
        SELECT g, CASE WHEN g % 22 = 0 THEN 'submitted' WHEN g % 11 = 0 THEN 'rejected'
                       WHEN g % 11 <= 4 THEN 'in_notice' WHEN g % 11 <= 7 THEN 'payable'
                       ELSE 'paid' END AS state,
               10000 + (g * 7919) % 2000000 AS fee
        FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) g
     ),
     made AS (
INSERT INTO claims (voucher_id, enterprise_id, state, fee_fen, limited_by,
    checks, created_by_id, created_at, submitted_at, decided_at, institution_id, approved_month,
    paid_month, paid_at)
SELECT v.id, v.enterprise_id, r.state, r.fee,
    '[]', '[]', v.user_id, now(), now(),
    CASE WHEN r.state = 'submitted' THEN NULL ELSE now() END,
    p.id,
    CASE WHEN r.state IN ('in_notice', 'payable', 'paid') THEN CAST(:month AS varchar) END,
    CASE WHEN r.state = 'paid' THEN CAST(:month AS varchar) END,
    CASE WHEN r.state = 'paid' THEN now() END
FROM rows r CROSS JOIN nv CROSS JOIN np
JOIN v ON v.rn = r.g % nv.n
JOIN p ON p.rn = (r.g / 7) % np.n
RETURNING id, fee_fen
     )
-- The published scheme's two funds (bench data): 30 % from the first, 10 % from the second for
-- two claims in three.
INSERT INTO claim_funds (claim_id, fund, position, raw_fen, amount_fen)
SELECT id, 'province', 0, fee_fen * 3 / 10, fee_fen * 3 / 10 FROM made
UNION ALL
SELECT id, 'city', 1, fee_fen / 10, CASE WHEN id % 3 = 0 THEN 0 ELSE fee_fen / 10 END FROM made
"""

CHUNK = 250_000  # rows per statement: keeps each transaction's memory and WAL moderate


@dataclass
class Sizes:
    instruments: int
    bookings: int
    claims: int


def recreate_database(url: str) -> None:
    """Drop and create the PostgreSQL database named in `url` (connecting to `postgres` to do so)."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{target.database}"')
    admin.dispose()


def counts(url: str) -> Sizes | None:
    """What the database holds now, or None when it does not exist or has no schema."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM instruments), (SELECT count(*) FROM bookings),"
                    " (SELECT count(*) FROM claims)"
                )
            ).one()
            return Sizes(*row)
    except Exception:  # a missing database or missing tables both mean: generate it
        return None
    finally:
        engine.dispose()


def _chunks(first: int, total: int):
    start = first
    while start <= total:
        yield start, min(start + CHUNK - 1, total)
        start += CHUNK


def generate(url: str, sizes: Sizes, month: str, log=print) -> Sizes:
    """Make the database from nothing; returns what it then holds."""
    from flask_migrate import upgrade

    from portal.demo.services import load_demo
    from portal.extensions import db

    started = time.perf_counter()
    recreate_database(url)
    app = portal_app(url)
    with app.app_context():
        upgrade()
        demo_bookings = min(sizes.bookings, 4000)
        load_demo(instruments=min(sizes.instruments, 1202), bookings=demo_bookings)
        log(f"  demo network loaded ({time.perf_counter() - started:.0f} s)")
        have = counts(url)
        missing = max(sizes.instruments - have.instruments, 0)
        full, partial = divmod(missing, have.instruments)
        last_original = db.session.scalar(text("SELECT max(id) FROM instruments"))
        for per_copy, first, last in ((have.instruments, 1, full), (partial, full + 1, full + 1)):
            if per_copy and last >= first:
                db.session.execute(
                    text(INSTRUMENTS_SQL),
                    {"per_copy": per_copy, "first": first, "last": last, "last_original": last_original},
                )
        if missing:
            db.session.execute(text(OPENING_HOURS_SQL), {"last_original": last_original})
            db.session.commit()
            log(f"  instruments grown to {sizes.instruments:,} ({time.perf_counter() - started:.0f} s)")
        for first, last in _chunks(have.bookings + 1, sizes.bookings):
            db.session.execute(text(BOOKINGS_SQL), {"first": first, "last": last})
            db.session.commit()
        if sizes.bookings > have.bookings:
            log(f"  bookings grown to {sizes.bookings:,} ({time.perf_counter() - started:.0f} s)")
        # `claims` approved in the month, and a tenth as many more that are not.
        for first, last in _chunks(1, sizes.claims * 11 // 10):
            db.session.execute(text(CLAIMS_SQL), {"first": first, "last": last, "month": month})
            db.session.commit()
        if sizes.claims:
            log(f"  {sizes.claims * 11 // 10:,} claims added ({time.perf_counter() - started:.0f} s)")
    with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    log(f"  vacuumed and analysed ({time.perf_counter() - started:.0f} s in all)")
    return counts(url)


def ensure(url: str, sizes: Sizes, month: str, reuse: bool, log=print) -> tuple[Sizes, bool]:
    """Reuse a database that already has at least these sizes (when asked to), else generate it;
    returns what it holds and whether it was generated."""
    have = counts(url) if reuse else None
    wanted = (sizes.instruments, sizes.bookings, sizes.claims)
    if have and all(
        h >= w for h, w in zip((have.instruments, have.bookings, have.claims), wanted, strict=True)
    ):
        log(f"  reusing {make_url(url).database}: {have}")
        return have, False
    return generate(url, sizes, month, log), True


def main() -> None:
    from portal.core import clock
    from portal.finance.services import month_of

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--instruments", type=int, default=100_000)
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=1_000_000)
    args = parser.parse_args()
    started = time.perf_counter()
    result = generate(args.url, Sizes(args.instruments, args.bookings, args.claims), month_of(clock.utcnow()))
    print(f"{result} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
