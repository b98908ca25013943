"""What every benchmark case shares: the result row, timing helpers and the table `make bench` prints.

A case measures "ours" and its baseline side by side in one run on the same machine, because absolute
times on a shared machine drift while ratios hold.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
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
