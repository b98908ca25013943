"""`make bench`: every benchmark case in one run on one machine, as one table.

    .venv/bin/python -m bench.run [--reuse] [--quick] [--only catalogue,booking,checkin,...] [--record FILE]

Two PostgreSQL databases are generated first (bench/generate.py): "small", the demo network with
1,202 instruments and 1,000 bookings, and "large", 100,000 instruments, 1,000,000 bookings and
1,000,000 claims approved in this month. `--reuse` keeps databases that are already big enough
(generation takes minutes); `--quick` shrinks the large case tenfold for a trial run; `--record`
appends the table, the command and the date to a Markdown file (bench/RESULTS.md).
Benchmarks print figures and never fail: a missed target shows as "NO" in the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.engine import make_url

from bench import generate
from bench.common import Result, table

CASES = (
    "generate",
    "catalogue",
    "search",
    "booking",
    "checkin",
    "waitlist",
    "tally",
    "exports",
    "reporting",
    "pages",
    "notifications",
)


def _database(base: str, name: str) -> str:
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL; the benchmark databases are made beside it",
    )
    parser.add_argument("--reuse", action="store_true", help="keep databases that are already big enough")
    parser.add_argument("--quick", action="store_true", help="a tenth of the large sizes, for a trial run")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases: " + ", ".join(CASES))
    parser.add_argument("--record", metavar="FILE", help="append the results to this Markdown file")
    args = parser.parse_args(argv)
    only = [case.strip() for case in args.only.split(",") if case.strip()]
    unknown = set(only) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")

    from portal.core import clock
    from portal.finance.services import month_of

    month = month_of(clock.utcnow())
    scale = 10 if args.quick else 1
    small_url = _database(args.server, "portal_bench_small")
    large_url = _database(args.server, "portal_bench_large")
    large_sizes = generate.Sizes(100_000 // scale, 1_000_000 // scale, 1_000_000 // scale)
    results: list[Result] = []
    started = time.perf_counter()

    def step(name: str, call: Callable[[], list[Result]]) -> None:
        if name not in only:
            return
        print(f"{name} …", flush=True)
        began = time.perf_counter()
        try:
            results.extend(call())
        except Exception as error:  # a broken case must not hide the others' figures
            results.append(Result(name, float("nan"), None, "", "ran", False, note=f"failed: {error!r}"))
        print(f"{name}: {time.perf_counter() - began:.0f} s", flush=True)

    def prepare() -> list[Result]:
        began = time.perf_counter()
        generate.ensure(small_url, generate.Sizes(1202, 1000, 0), month, args.reuse)
        small_seconds = time.perf_counter() - began
        began = time.perf_counter()
        have, generated = generate.ensure(large_url, large_sizes, month, args.reuse)
        seconds = time.perf_counter() - began
        return [
            Result(
                f"generate {have.instruments:,} instruments, {have.bookings:,} bookings, "
                f"{have.claims:,} claims",
                seconds / 60,
                None,
                "min",
                "minutes, not hours (≤ 10)",
                seconds <= 600,
                note=f"the small database (demo network, 1,000 bookings) took {small_seconds:.0f} s"
                + ("" if generated else "; the large one was reused, not generated"),
            )
        ]

    if "generate" in only or any(case in only for case in CASES[1:]):
        if "generate" not in only:
            only.append("generate")
        step("generate", prepare)

    from bench import (
        booking,
        catalogue,
        exports,
        notifications,
        pages,
        reporting,
        search_latency,
        tally,
        usage,
    )

    step("catalogue", lambda: catalogue.run(small_url, large_url))
    step("search", lambda: search_latency.run(small_url, large_url, explain=True))
    step("booking", lambda: booking.run(small_url, large_url))
    step("checkin", lambda: usage.run_check_in(small_url, large_url, explain=True))
    step("waitlist", lambda: usage.run_waitlist(small_url, large_url, explain=True))
    step("tally", lambda: tally.run(large_url, month))
    step("exports", lambda: exports.run(large_url, month))
    step("reporting", lambda: reporting.run(small_url, large_url))
    step("pages", lambda: pages.run(small_url, large_url))
    step("notifications", lambda: notifications.run(small_url, 10_000 // scale))

    report = table(results)
    print()
    print(report)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if args.record:
        command = ".venv/bin/python -m bench.run " + " ".join(sys.argv[1:])
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        total = time.perf_counter() - started
        with open(args.record, "a", encoding="utf-8") as handle:
            handle.write(
                f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
                f"`{command}` on {platform.node()} ({os.cpu_count()} cores, "
                f"Python {platform.python_version()}, load average at the end {load}); "
                f"{total:.0f} s in all.\n\n"
                f"{report}\n"
            )


if __name__ == "__main__":
    main()
