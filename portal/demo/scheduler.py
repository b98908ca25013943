"""The demo's periodic tasks: `flask demo serve` runs what `celery beat` runs in production, in-process.

A background thread calls the very task functions of the beat schedule (portal.BEAT_SCHEDULE, read
from the app's Celery configuration), each in an application context of its own, at the beat's interval
shortened to at most `DEMO_TASK_MAX_INTERVAL_SECONDS` (60 s by default), so that in a demo session
booking requests expire, reminders go out and public notice ends as they would in production, without
a broker or a beat process. Crontab entries (the nightly tallies) keep their time of day.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from celery.schedules import crontab, schedule
from flask import Flask


class DemoScheduler:
    """Runs every beat entry when it is due; `run_due` is one tick, `start` ticks in a daemon thread."""

    def __init__(self, app: Flask, *, tick_seconds: float = 5.0) -> None:
        self.app = app
        # The schedule `celery beat` would run, read from the app (the factory above us sets it).
        self.entries: dict[str, dict] = app.extensions["celery"].conf.beat_schedule
        self.tick_seconds = tick_seconds
        self.longest = float(app.config.get("DEMO_TASK_MAX_INTERVAL_SECONDS", 60))
        self.last_run: dict[str, datetime | None] = {name: None for name in self.entries}
        self.runs: dict[str, int] = {name: 0 for name in self.entries}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def interval(self, name: str) -> schedule | crontab:
        every = self.entries[name]["schedule"]
        if isinstance(every, crontab):
            return every
        return schedule(min(float(every), self.longest))

    def due(self, name: str, now: datetime) -> bool:
        last = self.last_run[name]
        if last is None:
            # Interval tasks run at once (the demo's data may already be waiting for them); a crontab
            # task waits for its time of day.
            return not isinstance(self.interval(name), crontab)
        every = self.interval(name)
        if isinstance(every, crontab):
            return every.is_due(last)[0]
        return (now - last).total_seconds() >= every.seconds

    def run_due(self, now: datetime | None = None) -> list[str]:
        """Run every task that is due now (wall-clock time decides when; the tasks use the portal's
        clock for what is due in the data); returns their names."""
        now = now or datetime.now(UTC)
        ran = []
        for name, entry in self.entries.items():
            if not self.due(name, now):
                continue
            self.last_run[name] = now
            task = self.app.extensions["celery"].tasks[entry["task"]]
            with self.app.app_context():
                try:
                    task.run(*entry.get("args", ()))
                except Exception:  # one failing task must not stop the others
                    self.app.logger.exception("demo scheduler: %s failed", name)
                    continue
            self.runs[name] += 1
            ran.append(name)
        return ran

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(self.tick_seconds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="demo-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
