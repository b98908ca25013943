"""The baseline task of the notification benchmark: it does nothing but count itself.

Loaded into the worker with `celery -A celery_worker worker -I bench.noop_tasks` (cwd = the repo
root). It counts with one INCR on the broker's own Redis, which the worker already talks to: no result
backend (the portal runs with task_ignore_result and none configured) and no database. The task that
brings the count to `goal` also writes the wall-clock time, so the benchmark reads the exact moment
the last no-op finished instead of polling for it.
"""

from __future__ import annotations

import time

import redis
from celery import Task, shared_task

COUNTER = "bench:noop:done"
DONE_AT = "bench:noop:done_at"

# One connection per pool process, made on its first task (after the fork).
_client: redis.Redis | None = None


@shared_task(name="bench.noop", bind=True)
def noop(self: Task, goal: int) -> None:
    """Count one completion; the `goal`-th records when it happened."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(self.app.conf.broker_url)
    if _client.incr(COUNTER) == goal:
        _client.set(DONE_AT, repr(time.time()))
