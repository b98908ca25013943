"""Every bureau and public page on its first visit, at province and at city scale (issue 20).

    .venv/bin/python -m bench.pages SMALL_URL LARGE_URL

Each page is requested whole through the Flask stack (routing, sign-in, queries, templates), as the
user who would open it: the reviewer for the dashboard, ranking, review desk and evaluation, the
finance clerk for the finance totals, nobody for the public page and the catalogue. The app runs
with `NullCache`, so every visit is a first visit with an empty cache: no page can lean on a cached
answer to meet its target. One unmeasured visit warms the code; then RUNS visits give the median
and the p95 (nearest rank).

Targets: at province scale (the large database) median ≤ 300 ms and p95 ≤ 500 ms per page; at city
scale (the demo network) median ≤ 50 ms. The large database's services are recorded and its usage
tallies counted first (bench/reporting.py's `prepare`), as the nightly task would have.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from typing import Any

from bench.common import Result, nearest_rank_p95, portal_app

PAGE_MEDIAN_MS, PAGE_P95_MS, CITY_MEDIAN_MS = 300, 500, 50
RUNS = 15
COUNTY = "东昌府区"


def pages(year: int) -> list[tuple[str, str | None, str]]:
    """(label, who signs in, path) of every page the issue names."""
    county = f"county={COUNTY}"
    return [
        ("dashboard", "reviewer", "/dashboard/"),
        (f"dashboard, {COUNTY}", "reviewer", f"/dashboard/?{county}"),
        ("ranking of institutions", "reviewer", f"/dashboard/ranking?year={year}"),
        (f"ranking of institutions, {COUNTY}", "reviewer", f"/dashboard/ranking?year={year}&{county}"),
        (
            f"ranking of instruments, {COUNTY}",
            "reviewer",
            f"/dashboard/ranking?year={year}&level=instrument&{county}",
        ),
        (
            f"review desk, claims of {COUNTY} over ¥500",
            "reviewer",
            f"/review/?kind=claim&{county}&amount_min=500",
        ),
        ("evaluation", "reviewer", f"/reports/evaluation?year={year}"),
        (f"evaluation, {COUNTY}", "reviewer", f"/reports/evaluation?year={year}&{county}"),
        *[
            (f"finance totals by {group}", "finance", f"/finance/?month_from={year}-01&group_by={group}")
            for group in ("fund", "county", "enterprise", "provider")
        ],
        ("public network page", None, "/network/"),
        (
            "catalogue search, keyword and two filters",
            None,
            f"/instruments/?q=光谱&{county}&status=available",
        ),
    ]


def signed_in(app: Any, username: str | None) -> Any:
    """A test client, signed in through the login form when `username` is given."""
    from portal.demo import DEMO_PASSWORD

    client = app.test_client()
    if username is None:
        return client
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    answer = client.post(
        "/login", data={"username": username, "password": DEMO_PASSWORD, "csrf_token": token}
    )
    if answer.status_code != 302:
        raise RuntimeError(f"{username} could not sign in ({answer.status_code})")
    return client


def visit_times(client: Any, path: str, runs: int = RUNS) -> list[float]:
    """`runs` visits of one page in milliseconds, after one unmeasured visit."""
    first = client.get(path)
    if first.status_code != 200:
        raise RuntimeError(f"{path} answered {first.status_code}")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
    return times


def _results(label: str, times: list[float], large: bool) -> list[Result]:
    median = statistics.median(times)
    if not large:
        return [
            Result(
                f"{label}, city: median",
                median,
                None,
                "ms",
                f"≤ {CITY_MEDIAN_MS} ms",
                median <= CITY_MEDIAN_MS,
            )
        ]
    p95 = nearest_rank_p95(times)
    return [
        Result(
            f"{label}, province: median",
            median,
            None,
            "ms",
            f"≤ {PAGE_MEDIAN_MS} ms",
            median <= PAGE_MEDIAN_MS,
        ),
        Result(f"{label}, province: p95", p95, None, "ms", f"≤ {PAGE_P95_MS} ms", p95 <= PAGE_P95_MS),
    ]


def run(small_url: str, large_url: str) -> list[Result]:
    from bench import reporting
    from portal.core import clock

    reporting.prepare(small_url)
    reporting.prepare(large_url)
    year = clock.local_today().year
    results: list[Result] = []
    for url, large in ((large_url, True), (small_url, False)):
        app = portal_app(url)
        clients: dict[str | None, Any] = {}  # one sign-in per user (sign-in is rate limited)
        for label, username, path in pages(year):
            try:
                if username not in clients:
                    clients[username] = signed_in(app, username)
                results += _results(label, visit_times(clients[username], path), large)
            except Exception as error:  # one broken page must not hide the others' figures
                results.append(
                    Result(label, float("nan"), None, "ms", "ran", False, note=f"failed: {error!r}")
                )
    return results


if __name__ == "__main__":
    from bench.common import table

    print(table(run(sys.argv[1], sys.argv[2])))
