"""Catalogue search throughput (issue 7): the search page under gunicorn against a bare Flask page.

    .venv/bin/python -m bench.catalogue postgresql://postgres@127.0.0.1/small postgresql://postgres@127.0.0.1/large

`small` holds the demo network (1202 instruments), `large` 100,000 (bench/generate.py). Both are
vacuumed first and run the portal in the production profile with rate limiting off. The page is
served twice over the small database: as deployed, where anonymous visitors get the rendered page
kept until the catalogue changes, in a private redis-server as production keeps it, for 320 distinct
searches (a keyword and two filters) taken in turn; and with search results and pages uncached, so
every request searches and renders one search (see `portal_app`; BENCH_CACHE=null turns every cache
off instead).
The bare app (bench/bare_app.py) returns a constant page of the same size from the same gunicorn
settings. Throughput: the same load generator drives both, wrk when it is installed (or can be
installed with apt), else a Python one. Latency: one request at a time, 100k and 1202 in turn.
A benchmark: it prints, never fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask_caching.backends.simplecache import SimpleCache

from bench.common import ROOT, Result, table
from tests.services_runner import RedisServer, free_port, stop_group

# A realistic search: a Chinese keyword and two filters, returning rows in both databases
# (16 of 1202 in the demo, about 1,300 of 100,000 in the grown copy).
SEARCH = {"q": "质谱", "county": "东昌府区", "status": "normal"}
SEARCH_PATH = "/instruments/?" + urlencode(SEARCH)
# What anonymous visitors ask, as deployed: 320 distinct searches, each a keyword and two filters
# (8 keywords x the 10 first counties x 4 states), taken in turn by every connection.
KEYWORDS = ("质谱", "色谱", "光谱", "显微镜", "电镜", "核磁", "衍射", "分析仪")
STATES = ("normal", "standby", "occasional_fault", "awaiting_repair")
COUNTIES = ("东昌府区", "茌平区", "临清市", "阳谷县", "莘县", "东阿县", "冠县", "高唐县", "高新区", "经开区")
VISITOR_PATHS = [
    "/instruments/?" + urlencode({"q": q, "county": county, "status": status})
    for q in KEYWORDS
    for county in COUNTIES
    for status in STATES
]

# The same gunicorn settings for the portal and the bare app. Sync workers are what the Procfile and
# README deploy (gunicorn's default class); two of them, one per core of this 2-core machine, because
# a sync worker is busy with one request at a time and the load generator needs CPU too.
WORKERS = 2
GUNICORN_SETTINGS = ["--workers", str(WORKERS), "--worker-class", "sync", "--timeout", "60"]
# Throughput: enough connections that a worker never waits for the generator (latency is measured
# one request at a time instead, so that queueing does not hide what a request costs).
LOADED_CONNECTIONS = 2 * WORKERS
ROUNDS = 5

WRK_SCRIPT = """
local paths = {__PATHS__}
local i = 0
if #paths > 0 then
  request = function()
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def _targets(url: str | list[str]) -> list[str]:
    """A target is one URL, or URLs of one server taken in turn."""
    return [url] if isinstance(url, str) else url


class SearchUncachedCache(SimpleCache):
    """The production cache minus the search results (keys `catalog:<version>:search:…`) and the
    visitors' rendered pages and answers (`catalog:page:…`, `catalog:answer…`).

    Production caches in Redis; a repeated identical search would come from there and the benchmark
    would measure a cache lookup. Everything else the page reads (category tree, host list) stays
    cached, as it is in production between catalogue changes.
    """

    def get(self, key: str) -> Any:
        return None if _uncached(key) else super().get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return True if _uncached(key) else super().set(key, value, timeout)


def _uncached(key: str) -> bool:
    return ":search:" in key or key.startswith(("catalog:page:", "catalog:answer"))


def portal_app():
    """The portal as gunicorn serves it (`bench.catalogue:portal_app()`): production profile, DATABASE_URL."""
    from config import database_url
    from portal import create_app

    url = os.environ["DATABASE_URL"]
    # Uncached: the fast path's answers are not kept either (portal.catalog.fastpath).
    uncached = {"CACHE_TYPE": f"{__name__}.SearchUncachedCache", "CATALOG_FAST_MEMORY_BYTES": 0}
    cache = {
        "null": {"CACHE_TYPE": "NullCache", "CACHE_NO_NULL_WARNING": True, "CATALOG_FAST_MEMORY_BYTES": 0},
        # As deployed, except per process (SimpleCache) where production shares Redis.
        "production": {"CACHE_TYPE": "SimpleCache", "CACHE_OPTIONS": {"threshold": 100_000}},
        # As deployed: the cache in Redis (CACHE_REDIS_URL), the FailSafeRedisCache production uses.
        "redis": {},
    }.get(os.environ.get("BENCH_CACHE", ""), uncached)
    return create_app(
        "production",
        {"SQLALCHEMY_DATABASE_URI": database_url(url, url), "RATELIMIT_ENABLED": False, **cache},
    )


# --- processes -----------------------------------------------------------------------------------


class Gunicorn:
    """One gunicorn master and its workers in a process group of their own, always killed on exit."""

    def __init__(self, app_spec: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "gunicorn", *GUNICORN_SETTINGS, "--bind", f"127.0.0.1:{self.port}"]
        command += ["--log-level", "warning", "--chdir", str(ROOT), app_spec]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, path: str, timeout: float = 90) -> bytes:
        """Poll `path` until it answers 200 and return the body; the warm-up boots the other worker."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"gunicorn exited: {self.log.read().decode(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + path, timeout=30) as response:  # noqa: S310 - http
                    return response.read()
            except urllib.error.HTTPError as error:  # it answers, wrongly: waiting will not help
                raise RuntimeError(f"{self.base}{path} answered {error.code}") from error
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn on {self.base} did not answer {path} within {timeout} s")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_group(self.process, grace=10)  # the workers too, even if the master is gone
        self.log.close()


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "PORTAL_CONFIG"}}
    env.update(extra)
    return env


# --- load generators -----------------------------------------------------------------------------


@dataclass
class Load:
    rps: float
    p50_ms: float
    p95_ms: float
    requests: int
    errors: int


def find_wrk() -> tuple[str | None, str]:
    """wrk's path, installing the Debian package when we may; else None and why."""
    found = shutil.which("wrk")
    if found:
        return found, ""
    if os.environ.get("BENCH_NO_INSTALL") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "wrk not installed"
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            capture_output=True,
            timeout=180,
            check=False,
        )
    found = shutil.which("wrk")
    return found, "" if found else "wrk not installable with apt-get"


def wrk_load(wrk: str, url: str | list[str], connections: int, duration: float) -> Load:
    urls = _targets(url)
    paths = [u[u.index("/", len("http://")) :] for u in urls] if len(urls) > 1 else []
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT.replace("__PATHS__", ", ".join(f'"{path}"' for path in paths)))
        script.flush()
        command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "30s"]
        out = subprocess.run(
            [*command, "-s", script.name, urls[0]], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"unexpected wrk output: {out}")
    requests, micros, p50, p95, errors = (int(x) for x in match.groups())
    return Load(requests / (micros / 1e6), p50 / 1000, p95 / 1000, requests, errors)


def _hammer(urls: list[str], deadline: float) -> tuple[list[float], int]:
    """One client connection's loop (in its own process): GET the URLs in turn until the deadline,
    reconnecting as told."""
    import http.client
    import itertools
    from urllib.parse import urlsplit

    parts = urlsplit(urls[0])
    paths = itertools.cycle([p.path + ("?" + p.query if p.query else "") for p in map(urlsplit, urls)])
    times: list[float] = []
    errors = 0
    connection = None
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            connection.request("GET", next(paths))
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
            if response.will_close:
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException):
            errors += 1
            connection = None
            continue
        times.append(time.perf_counter() - started)
    return times, errors


def python_load(url: str | list[str], connections: int, duration: float) -> Load:
    """The fallback generator: one process per connection (threads would be held back by the GIL)."""
    with ProcessPoolExecutor(connections) as pool:
        start = time.perf_counter()
        # perf_counter is CLOCK_MONOTONIC on Linux, shared by the forked processes.
        futures = [pool.submit(_hammer, _targets(url), start + duration) for _ in range(connections)]
        outcomes = [f.result() for f in futures]
        elapsed = time.perf_counter() - start
    times = sorted(t for ts, _ in outcomes for t in ts)
    errors = sum(e for _, e in outcomes)
    if not times:
        return Load(0.0, float("nan"), float("nan"), 0, errors)
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    return Load(len(times) / elapsed, statistics.median(times) * 1000, p95 * 1000, len(times), errors)


# --- the plan ------------------------------------------------------------------------------------


def result_count(page: bytes) -> int:
    """The number the search page says it found (0 when the page shows no count)."""
    match = re.search(rb'id="result-count">([^<]*)<', page)
    digits = re.sub(rb"\D", b"", match.group(1)) if match else b""
    return int(digits or 0)


def explain(url: str) -> tuple[str, float]:
    """Which indexes the page's count query uses on `url`, and its execution time in ms (EXPLAIN ANALYZE).

    The statement is the service's own, compiled for PostgreSQL, so the check follows the code.
    """
    from sqlalchemy import func, select

    from bench.common import portal_app
    from portal.catalog import services
    from portal.extensions import db

    app = portal_app(url)
    with app.app_context():
        query = services.normalize_query(services.InstrumentQuery(**SEARCH))
        statement = select(func.count()).select_from(services._filtered(query).subquery())
        compiled = statement.compile(dialect=db.engine.dialect)
        with db.engine.connect() as connection:
            plan = (
                connection.exec_driver_sql("EXPLAIN ANALYZE " + str(compiled), compiled.params)
                .scalars()
                .all()
            )
        db.engine.dispose()
    indexes = sorted(set(re.findall(r"Index(?: Only)? Scan on (\w+)", "\n".join(plan))))
    kind = sorted(
        set(re.findall(r"(Bitmap Index Scan|Index Only Scan|Index Scan|Seq Scan)", "\n".join(plan)))
    )
    runtime = next((float(m) for line in plan if (m := _execution_ms(line)) is not None), float("nan"))
    return f"{'/'.join(kind)} on {', '.join(indexes) or 'instruments'}", runtime


def _execution_ms(line: str) -> str | None:
    match = re.match(r"Execution Time: ([\d.]+) ms", line.strip())
    return match.group(1) if match else None


def vacuum(url: str) -> None:
    """VACUUM ANALYZE the instruments, as autovacuum would have by now.

    A freshly bulk-loaded table keeps its new keyword entries in the GIN index's pending list, which
    every search then reads through (about 12 ms per search for 95,000 copied rows); production's
    autovacuum merges it, so the benchmark measures the merged index.
    """
    from sqlalchemy import create_engine

    from config import database_url

    engine = create_engine(database_url(url, url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM ANALYZE instruments")
    finally:
        engine.dispose()


def _combine(rounds: list[Load]) -> Load:
    """Rounds of one target as one figure: requests over time; the median of the rounds' percentiles."""
    seconds = sum(r.requests / r.rps for r in rounds if r.rps)
    requests = sum(r.requests for r in rounds)
    return Load(
        requests / seconds if seconds else 0.0,
        statistics.median(r.p50_ms for r in rounds),
        statistics.median(r.p95_ms for r in rounds),
        requests,
        sum(r.errors for r in rounds),
    )


def sequential(urls: dict[str, str], seconds: float) -> dict[str, Load]:
    """One request at a time, taking the targets in turn, so drift on a shared machine hits all alike."""
    import http.client
    from urllib.parse import urlsplit

    times: dict[str, list[float]] = {name: [] for name in urls}
    errors = dict.fromkeys(urls, 0)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, url in urls.items():
            parts = urlsplit(url)
            started = time.perf_counter()
            # A new connection every time, as the sync workers close it after each answer anyway.
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            try:
                connection.request("GET", f"{parts.path}?{parts.query}")
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[name] += 1
                continue
            finally:
                connection.close()
            times[name].append(time.perf_counter() - started)
            errors[name] += response.status != 200
    results = {}
    for name, ts in times.items():
        if not ts:
            results[name] = Load(0.0, float("nan"), float("nan"), 0, errors[name])
            continue
        ts.sort()
        p95 = ts[min(len(ts) - 1, int(0.95 * len(ts)))]
        results[name] = Load(
            len(ts) / sum(ts), statistics.median(ts) * 1000, p95 * 1000, len(ts), errors[name]
        )
    return results


def _cache_server() -> RedisServer | None:
    """A private redis-server for the as-deployed cache (None without redis-server: per-process cache)."""
    if not shutil.which("redis-server"):
        return None
    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-catalogue-")))
    server.start()
    return server


def run(small_url: str, large_url: str, duration: float = 10.0) -> list[Result]:
    """Throughput (search vs bare, at 1202 and 100k instruments) and light-load latency (100k vs 1202)."""
    wrk, why = find_wrk()
    if wrk:
        tool = "wrk -t1"

        def load(url: str, connections: int, seconds: float) -> Load:
            return wrk_load(wrk, url, connections, seconds)
    else:
        tool = f"Python generator ({why}; bare rps may be generator-bound, so the ratio reads high)"
        load = python_load
    for url in (small_url, large_url):
        vacuum(url)

    servers: list[Gunicorn] = []
    redis_server = _cache_server()
    try:
        portal_env = {"PORTAL_CONFIG": "production", "SECRET_KEY": "bench-catalogue-not-secret"}
        small = Gunicorn(
            "bench.catalogue:portal_app()", _server_env({**portal_env, "DATABASE_URL": small_url})
        )
        servers.append(small)
        large = Gunicorn(
            "bench.catalogue:portal_app()", _server_env({**portal_env, "DATABASE_URL": large_url})
        )
        servers.append(large)
        cache_env = (
            {"BENCH_CACHE": "redis", "CACHE_REDIS_URL": redis_server.url}
            if redis_server
            else {"BENCH_CACHE": "production"}
        )
        visitor = Gunicorn(
            "bench.catalogue:portal_app()",
            _server_env({**portal_env, "DATABASE_URL": small_url, **cache_env}),
        )
        servers.append(visitor)
        visitor.wait_ready(SEARCH_PATH)
        small_page = small.wait_ready(SEARCH_PATH)
        large_page = large.wait_ready(SEARCH_PATH)
        bare = Gunicorn("bench.bare_app:app", _server_env({"BARE_PAGE_BYTES": str(len(small_page))}))
        servers.append(bare)
        bare_page = bare.wait_ready("/")
        found = {"small": result_count(small_page), "large": result_count(large_page)}
        urls: dict[str, Any] = {
            "bare": bare.base + "/",
            "visitor": [visitor.base + path for path in VISITOR_PATHS],
            "small": small.base + SEARCH_PATH,
            "large": large.base + SEARCH_PATH,
        }

        for path in VISITOR_PATHS:  # every search once, as visitors would have asked them before
            visitor.wait_ready(path)
        for url in urls.values():  # warm up: every worker boots, connects and fills its caches
            load(url, LOADED_CONNECTIONS, 2)
        # The targets take turns in short rounds, so a neighbour's burst on this shared machine
        # does not land on one of them only.
        rounds: dict[str, list[Load]] = {name: [] for name in urls}
        for _ in range(ROUNDS):
            for name, url in urls.items():
                rounds[name].append(load(url, LOADED_CONNECTIONS, duration / ROUNDS))
        loaded = {name: _combine(r) for name, r in rounds.items()}
        light = sequential({"small": urls["small"], "large": urls["large"]}, duration)
    finally:
        for server in servers:
            server.stop()
        if redis_server:
            redis_server.stop()
    plan, db_ms = explain(large_url)

    def figures(x: Load) -> str:
        return f"p50 {x.p50_ms:.1f} ms, p95 {x.p95_ms:.1f} ms" + (f", {x.errors} errors" if x.errors else "")

    setup = (
        f"gunicorn {WORKERS} sync workers for both; {tool}, {LOADED_CONNECTIONS} connections, "
        f"{ROUNDS} alternating rounds of {max(1, round(duration / ROUNDS))} s per target; "
        f"{SEARCH_PATH} ({len(small_page):,} B) vs a constant page ({len(bare_page):,} B)"
    )
    bare_load = loaded["bare"]
    visitors = loaded["visitor"]
    where_cached = "a private redis-server, as production" if redis_server else "per-process, no redis-server"
    results = [
        Result(
            case=(
                f"catalogue search throughput, 1202 instruments, {len(VISITOR_PATHS)} searches "
                "in turn, as deployed (vs bare Flask)"
            ),
            ours=visitors.rps,
            baseline=bare_load.rps,
            unit="req/s",
            target="ratio ≥ 0.5",
            met=visitors.rps >= 0.5 * bare_load.rps if bare_load.rps else False,
            note=(
                f"anonymous visitors, so the rendered page is reused until the catalogue changes "
                f"({where_cached}); "
                f"e.g. {VISITOR_PATHS[0]}; search {figures(visitors)}; "
                f"bare {figures(bare_load)}; {setup}"
            ),
        )
    ]
    for name, label in (("small", "1202"), ("large", "100k")):
        search = loaded[name]
        results.append(
            Result(
                case=f"catalogue search throughput, {label} instruments, searching and rendering every time",
                ours=search.rps,
                baseline=bare_load.rps,
                unit="req/s",
                target="– (for reference)",
                met=None,
                note=f"{found[name]:,} found; search results and pages uncached; search {figures(search)}",
            )
        )
    slow, quick = light["large"], light["small"]
    results.append(
        Result(
            case="catalogue search latency, 100k vs 1202 instruments",
            ours=slow.p50_ms,
            baseline=quick.p50_ms,
            unit="ms",
            target="ratio ≤ 2",
            met=slow.p50_ms <= 2 * quick.p50_ms,
            note=(
                f"p50 of one request at a time, alternating, {duration:.0f} s ({slow.requests} + "
                f"{quick.requests} requests, Python client); 100k {figures(slow)}, 1202 {figures(quick)}; "
                f"after VACUUM ANALYZE instruments; count query at 100k: {plan}, "
                f"{db_ms:.1f} ms in PostgreSQL"
            ),
        )
    )
    return results


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} SMALL_DATABASE_URL LARGE_DATABASE_URL [SECONDS]")
    print(table(run(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 10.0)))
