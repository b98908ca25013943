"""Notification delivery: 10,000 e-mails through Celery to a local SMTP sink, against 10,000 no-ops.

    .venv/bin/python bench/notifications.py postgresql://postgres@127.0.0.1/bench_notify [--count 10000]

The database must hold the portal schema and the demo network (its users are the recipients):
    export DATABASE_URL=postgresql://postgres@127.0.0.1/bench_notify
    .venv/bin/flask --app wsgi db upgrade && .venv/bin/flask --app wsgi demo load

Everything else is private to the run: a redis-server on a free port (the machine's Redis is never
touched), an SMTP sink in a process of its own that only counts Message-IDs (so it is never the
bottleneck, and a message accepted twice shows up), and ONE production worker
(`celery -A celery_worker worker --pool prefork --concurrency 2`, i.e. two pool processes, with
`-I bench.noop_tasks`) that runs both phases, after a short warm-up of both tasks:

- baseline: `count` no-op tasks (bench/noop_tasks.py: one Redis INCR each) published and run;
- ours: `count` outbox rows inserted in one transaction (not timed), then queued by the portal's own
  `queue_deliveries()` as after a commit (tasks of NOTIFY_BATCH_SIZE keys, 20), run until every row is
  `sent` AND the sink has accepted `count` distinct messages;
- one task per mail: the same with NOTIFY_BATCH_SIZE=1 in the publishing process (`count` tasks, as
  when every notification comes from a commit of its own), reported beside it.

Each time runs from the first publish to the last completion (the time the last no-op recorded, the
latest `email_sent_at` or sink acceptance), so the publishing is inside it (workers consume meanwhile);
the note gives the publish time alone. The bench rows are deleted afterwards.
A benchmark, not a test: it prints figures and never fails.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, bench/ is on the path and the repo root is not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bench.common import Result, portal_app, table
from tests.services_runner import CeleryWorker, RedisServer, free_port, wait_for, worker_env

CONCURRENCY = 2
WARMUP = 8  # tasks of each kind before timing: pool processes import, connect, fill caches
# Seconds each timed phase may take: generous, because on a busy 2-core machine 10,000 mails take
# minutes. A phase cut short is reported with its rate so far, and the time for `count` projected.
NOOP_LIMIT, DELIVERY_LIMIT = 120.0, 600.0

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


# --- the SMTP sink -------------------------------------------------------------------------------


def _sink_main(port: int, accepted: Any, duplicates: Any, last_at: Any, stop: Any) -> None:
    """Runs in a process of its own: accept every message, count the distinct Message-IDs."""
    from aiosmtpd.controller import Controller

    seen: set[bytes] = set()

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            found = _MESSAGE_ID.search(envelope.content)
            key = found.group(1) if found else b""
            if key in seen:
                duplicates.value += 1
            else:
                seen.add(key)
                accepted.value += 1
            last_at.value = time.time()
            return "250 2.0.0 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        stop.wait()
    finally:
        controller.stop()


class CountingSink:
    """The cheap SMTP sink: distinct messages accepted, repeats, and the time of the last one."""

    def __init__(self) -> None:
        # Spawned, not forked: the caller may hold threads and database connections.
        context = multiprocessing.get_context("spawn")
        self.port = free_port()
        self.accepted = context.RawValue("q", 0)
        self.duplicates = context.RawValue("q", 0)
        self.last_at = context.RawValue("d", 0.0)
        self._stop = context.Event()
        self._process = context.Process(
            target=_sink_main,
            args=(self.port, self.accepted, self.duplicates, self.last_at, self._stop),
            name="smtp-sink",
            daemon=True,
        )

    def start(self) -> CountingSink:
        import smtplib

        self._process.start()

        def answers() -> bool:
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=2) as probe:
                    return probe.noop()[0] == 250
            except OSError:
                return False

        wait_for(answers, 30, "the SMTP sink")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


# --- the data ------------------------------------------------------------------------------------

MAILABLE = """
    SELECT id FROM users
    WHERE is_active_account AND email_notifications AND coalesce(email, '') <> ''
    ORDER BY id
"""

# What notify() writes for an approved claim, for `count` (claim, recipient) pairs.
OUTBOX = """
    WITH mailable AS (
        SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM users
        WHERE is_active_account AND email_notifications AND coalesce(email, '') <> ''
    )
    INSERT INTO notifications (recipient_id, kind, payload, link, dedup_key, created_at, email_state,
        email_attempts, urgent)
    SELECT m.id, 'claim.approved',
        json_build_object('claim', g, 'amount', '¥153.00', 'notice_ends_on', '2026-12-02'),
        '/vouchers/claims/' || g, :prefix || g || ':approved:' || m.id, now(), 'pending', 0, false
    FROM generate_series(1, :count) g JOIN mailable m ON m.n = g % :recipients
    ORDER BY g
    RETURNING id, dedup_key
"""


def write_outbox(prefix: str, count: int) -> tuple[list[str], int, int]:
    """Insert `count` pending notifications in one transaction: (dedup keys, lowest id, highest id)."""
    from portal.extensions import db

    recipients = len(db.session.execute(text(MAILABLE)).all())
    if not recipients:
        raise RuntimeError("no user to notify: load the demo network first")
    rows = db.session.execute(
        text(OUTBOX), {"prefix": prefix, "count": count, "recipients": recipients}
    ).all()
    db.session.commit()
    return [key for _, key in rows], min(i for i, _ in rows), max(i for i, _ in rows)


def delivery_state(low: int, high: int) -> tuple[int, float | None]:
    """(rows sent, latest email_sent_at as a Unix time) among the notifications low..high."""
    from portal.extensions import db

    sent, latest = db.session.execute(
        text(
            "SELECT count(*), extract(epoch FROM max(email_sent_at)) FROM notifications "
            "WHERE id BETWEEN :low AND :high AND email_state = 'sent'"
        ),
        {"low": low, "high": high},
    ).one()
    db.session.rollback()
    return sent, None if latest is None else float(latest)


def poll(done: Callable[[], bool], until: float, interval: float) -> bool:
    """Wait until `done()`, at the latest until the Unix time `until`; False when it never was."""
    while not done():
        if time.time() > until:
            return False
        time.sleep(interval)
    return True


def cpu_seconds(pid: int) -> float:
    """Processor seconds used so far by process `pid` and its living children (a worker's pool
    processes): a cost that other work on the machine inflates far less than the elapsed time."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    total = 0
    for each in [str(pid), *children]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / os.sysconf("SC_CLK_TCK")


# --- the phases ----------------------------------------------------------------------------------


def run_noops(app: Any, broker: RedisServer, count: int, limit: float) -> tuple[float, float, int]:
    """Publish `count` no-ops and wait for them: (seconds to the last, seconds publishing, done)."""
    from bench import noop_tasks

    client = broker.client()
    client.delete(noop_tasks.COUNTER, noop_tasks.DONE_AT)
    with app.app_context():
        started = time.time()
        for _ in range(count):
            noop_tasks.noop.apply_async(args=[count], retry=False)
        published = time.time() - started
    if not poll(lambda: client.get(noop_tasks.DONE_AT) is not None, started + limit, 0.01):
        client.delete("celery")  # what is still queued would run during the next phase
    done = int(client.get(noop_tasks.COUNTER) or 0)
    finished = client.get(noop_tasks.DONE_AT)
    client.close()
    elapsed = (float(finished) if finished else time.time()) - started
    return elapsed, published, done


def run_notifications(
    app: Any, sink: CountingSink, prefix: str, count: int, limit: float
) -> tuple[float, float, int, int, int]:
    """Write and deliver `count` notifications: (seconds, seconds publishing, rows sent, distinct
    messages the sink accepted, messages it was given again)."""
    from portal.notifications import services

    with app.app_context():
        keys, low, high = write_outbox(prefix, count)
        accepted_before, duplicates_before = sink.accepted.value, sink.duplicates.value
        started = time.time()
        services.queue_deliveries(keys)  # what the portal runs after the commit of a change
        published = time.time() - started

        def all_delivered() -> bool:
            return delivery_state(low, high)[0] >= count and sink.accepted.value - accepted_before >= count

        poll(all_delivered, started + limit, 0.1)
        sent, last_sent = delivery_state(low, high)
    accepted = sink.accepted.value - accepted_before
    duplicates = sink.duplicates.value - duplicates_before
    if sent >= count and accepted >= count:
        elapsed = max(last_sent or 0.0, sink.last_at.value) - started
    else:
        elapsed = time.time() - started
    return elapsed, published, sent, accepted, duplicates


# --- the case ------------------------------------------------------------------------------------


def _quietly(step: Callable[[], object]) -> None:
    try:
        step()
    except Exception as error:  # clean-up goes on; the figures are already taken
        print(f"notifications bench: clean-up step failed: {error!r}", file=sys.stderr)


def _forget(app: Any, prefix: str) -> None:
    """Delete the run's notifications (the demo users' inboxes stay as they were)."""
    from portal.extensions import db

    with app.app_context():
        db.session.execute(
            text("DELETE FROM notifications WHERE dedup_key LIKE :prefix"), {"prefix": f"{prefix}%"}
        )
        db.session.commit()
        db.engine.dispose()
    app.extensions["celery"].close()


def run(url: str, count: int = 10_000) -> list[Result]:
    """Deliver `count` notifications and run `count` no-ops with the same worker and broker."""

    if not shutil.which("redis-server"):
        return [Result("notification delivery", 0.0, None, "s", "report", None, "skipped: no redis-server")]
    scratch = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    broker = RedisServer(scratch / "redis")
    sink = CountingSink()
    worker: CeleryWorker | None = None
    app = None
    load_before = os.getloadavg()[0]
    try:
        broker.start()
        sink.start()
        app = portal_app(url, REDIS_URL=broker.url, MAIL_SERVER="127.0.0.1", MAIL_PORT=sink.port)
        env = worker_env(
            SECRET_KEY="bench-notifications-secret",  # noqa: S106 - a throwaway worker
            DATABASE_URL=url,
            REDIS_URL=broker.url,
            MAIL_SERVER="127.0.0.1",
            MAIL_PORT=sink.port,
        )
        # The production worker with a prefork pool of CONCURRENCY and the no-op task loaded.
        worker = CeleryWorker(
            "bench-notify",
            env,
            scratch / "worker.log",
            concurrency=CONCURRENCY,
            extra=("--include", "bench.noop_tasks"),
        ).start(ready_timeout=60)

        # Warm-up: both pool processes import, connect to Redis and PostgreSQL, load translations.
        run_noops(app, broker, WARMUP, 30)
        run_notifications(app, sink, f"{prefix}warm:", WARMUP, 30)

        assert worker.process is not None
        worker_pid = worker.process.pid
        cpu = [cpu_seconds(worker_pid)]
        base_s, base_publish, noops_done = run_noops(app, broker, count, NOOP_LIMIT)
        cpu.append(cpu_seconds(worker_pid))
        ours_s, ours_publish, sent, accepted, duplicates = run_notifications(
            app, sink, f"{prefix}run:", count, DELIVERY_LIMIT
        )
        cpu.append(cpu_seconds(worker_pid))
        app.config["NOTIFY_BATCH_SIZE"] = 1  # the publisher's setting: one task per mail
        single = run_notifications(app, sink, f"{prefix}single:", count, DELIVERY_LIMIT)
        cpu.append(cpu_seconds(worker_pid))
    except Exception as error:  # a benchmark reports, it does not fail
        log = worker.output()[-1500:] if worker is not None else ""
        return [
            Result("notification delivery", 0.0, None, "s", "report", None, f"did not run: {error!r} {log}")
        ]
    finally:
        # Each step on its own: the processes must go whatever else fails.
        if worker is not None:
            _quietly(worker.stop)
        _quietly(sink.stop)
        _quietly(broker.stop)
        if app is not None:
            _quietly(lambda: _forget(app, prefix))
        shutil.rmtree(scratch, ignore_errors=True)

    load_after = os.getloadavg()[0]
    cut_short = []
    if noops_done < count:
        cut_short.append(f"no-ops: {noops_done:,} of {count:,} done in {base_s:.0f} s")
        base_s = base_s * count / max(noops_done, 1)
    delivered = min(sent, accepted)
    if delivered < count:
        cut_short.append(f"notifications: {sent:,} sent, {accepted:,} accepted in {ours_s:.0f} s")
        ours_s = ours_s * count / max(delivered, 1)
    note = (
        f"one worker, prefork --concurrency {CONCURRENCY} ({CONCURRENCY} pool processes), both phases; "
        f"{count / ours_s:,.0f} notifications/s ({ours_s / count * 1000 * CONCURRENCY:.1f} ms per mail "
        f"per pool process), publishing alone {ours_publish:.1f} s; rows sent {sent:,}, sink accepted "
        f"{accepted:,} distinct, {duplicates} duplicate(s). Baseline: no-op tasks doing one Redis INCR "
        f"each on the private broker (no result backend), {count / base_s:,.0f}/s, publishing alone "
        f"{base_publish:.1f} s. Times run from the first publish to the last completion; load average "
        f"{load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} CPUs). Processor time of "
        f"the worker (main and pool processes): no-ops {cpu[1] - cpu[0]:.1f} s, notifications "
        f"{cpu[2] - cpu[1]:.1f} s ({(cpu[2] - cpu[1]) / max(cpu[1] - cpu[0], 0.01):.2f}×), one task per "
        f"mail {cpu[3] - cpu[2]:.1f} s"
        + (f"; CUT SHORT, times projected from the rate so far ({'; '.join(cut_short)})" if cut_short else "")
        + "."
    )
    single_s, single_publish, single_sent, single_accepted, single_duplicates = single
    if min(single_sent, single_accepted) < count:
        single_s = single_s * count / max(min(single_sent, single_accepted), 1)
    single_note = (
        f"the same worker, {count:,} tasks of one key each (NOTIFY_BATCH_SIZE=1 where they are queued): "
        f"{count / single_s:,.0f} notifications/s, publishing alone {single_publish:.1f} s; rows sent "
        f"{single_sent:,}, sink accepted {single_accepted:,} distinct, {single_duplicates} duplicate(s)"
    )
    return [
        Result(
            "notification delivery", ours_s, base_s, "s", "ratio ≤ 2 (issue 20)", ours_s <= 2 * base_s, note
        ),
        Result(
            "notification delivery, one task per mail", single_s, base_s, "s", "report", None, single_note
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="a PostgreSQL database with the portal schema and the demo network")
    parser.add_argument("--count", type=int, default=10_000)
    arguments = parser.parse_args()
    print(table(run(arguments.url, arguments.count)))


if __name__ == "__main__":
    main()
