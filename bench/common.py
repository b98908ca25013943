"""What every benchmark case shares: the result row, timing helpers and the table `make bench` prints.

A case measures "ours" and its baseline side by side in one run on the same machine, because absolute
times on a shared machine drift while ratios hold.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def portal_app(url: str, **overrides: Any) -> Flask:
    """The portal on the database at `url` with nothing cached: a benchmark measures the work."""
    from config import database_url
    from portal import create_app

    settings = {"SQLALCHEMY_DATABASE_URI": database_url(url, url), "CACHE_TYPE": "NullCache"}
    return create_app("development", {**settings, "CACHE_NO_NULL_WARNING": True, **overrides})


@dataclass
class Result:
    """One line of the table.

    `ratio` is ours ÷ baseline when there is a baseline; `target` says in words what must hold
    (e.g. "ratio ≤ 1.5" or "≤ 200 MB") and `met` whether it did (None: nothing to meet).
    """

    case: str
    ours: float
    baseline: float | None
    unit: str
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.ours / self.baseline


MEMORY_TARGET_MB = 200  # an export's peak resident memory, the interpreter and the portal included


def peak_mb() -> float:
    """This process's peak resident memory since it started the interpreter.

    VmHWM belongs to the process's own address space; ru_maxrss would also count the parent's memory
    that the child had between fork and exec.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def export_results(
    label: str, figures: dict, bare: dict, baseline: str, time_ratio: float | None = None
) -> list[Result]:
    """An export's two rows: its peak memory against MEMORY_TARGET_MB, its time beside the baseline's,
    within `time_ratio` times it if given (each dict as a child process printed it: rows, seconds,
    bytes, peak_mb, and cpu_seconds where measured)."""
    seconds, ratio = figures["seconds"], time_ratio
    time_target = "report" if ratio is None else f"ratio ≤ {ratio:g}"
    return [
        Result(
            f"{label}: peak memory",
            figures["peak_mb"],
            bare["peak_mb"],
            "MB",
            f"≤ {MEMORY_TARGET_MB} MB",
            figures["peak_mb"] <= MEMORY_TARGET_MB,
            note=f"{figures['bytes'] / 1e6:.0f} MB file; baseline: {baseline}",
        ),
        Result(
            f"{label}: time",
            seconds,
            bare["seconds"],
            "s",
            time_target,
            None if ratio is None else seconds <= ratio * bare["seconds"],
            # The process's own processor time: what a busy machine stretches least.
            note=f"processor time {figures['cpu_seconds']:.1f} s, baseline {bare['cpu_seconds']:.1f} s"
            if "cpu_seconds" in figures and "cpu_seconds" in bare
            else "",
        ),
    ]


def latency_result(case: str, ours: float, baseline: float, target: float, note: str = "") -> Result:
    """A row of milliseconds whose target is ours ≤ `target` × the baseline."""
    return Result(case, ours, baseline, "ms", f"ratio ≤ {target:g}", ours <= target * baseline, note=note)


def median_ms(call: Callable[[], object], runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of `call()` in milliseconds, after `warmup` unmeasured calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def nearest_rank_p95(times: list[float]) -> float:
    """The 95th percentile by nearest rank (of 15 times, the second slowest)."""
    return sorted(times)[min(len(times) - 1, round(len(times) * 0.95) - 1)]


def p90(times: list[float]) -> float:
    """The 90th percentile of the times (the slowest tenth starts there)."""
    return sorted(times)[int(len(times) * 0.9)]


@contextmanager
def recorded_statements() -> Iterator[list[tuple[str, Any]]]:
    """The SQL the current app's engine sends inside the block, as sent (statement, parameters)."""
    from sqlalchemy import event

    from portal.extensions import db

    seen: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, executemany) -> None:
        if not executemany:
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


BIG_TABLE_ROWS = 10_000


def sequential_scans(statements: list[tuple[str, Any]], rows_over: int = BIG_TABLE_ROWS) -> list[str]:
    """Which of these statements PostgreSQL's own plans (EXPLAIN, nothing run) answer by reading a
    table of more than `rows_over` rows (as last analysed) whole: "table: statement", one per scan,
    empty when none. A latency that grows with the table usually shows here first, as a missing index."""
    from sqlalchemy import text

    from portal.extensions import db

    big = set(
        db.session.scalars(
            text("SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples > :rows"),
            {"rows": rows_over},
        )
    )
    cursor = db.session.connection().connection.cursor()
    found = []
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            continue
        cursor.execute("EXPLAIN " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        for table in re.findall(r"Seq Scan on (\w+)", plan):
            if table in big:
                found.append(f"{table}: {' '.join(statement.split())[:120]}")
    db.session.rollback()
    return found


def _figure(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(results: list[Result]) -> str:
    """The results as a Markdown table (readable in a terminal and pasteable into RESULTS.md)."""
    head = ["case", "ours", "baseline", "ratio", "target", "met"]
    rows = []
    for r in results:
        met = "–" if r.met is None else ("yes" if r.met else "NO")
        rows.append(
            [
                r.case,
                f"{_figure(r.ours)} {r.unit}",
                f"{_figure(r.baseline)} {r.unit}" if r.baseline is not None else "–",
                _figure(r.ratio),
                r.target,
                met,
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    notes = [f"- {r.case}: {r.note}" for r in results if r.note]
    return "\n".join(lines + (["", *notes] if notes else []))
