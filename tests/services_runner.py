"""Real services for the delivery tests: a private redis-server, Celery worker processes, a loopback
SMTP server and a stand-in for `celery beat`.

Every process is started on a free port of its own and killed by the caller's fixtures, so that tests
can run in parallel (pytest-xdist) next to the machine's own Redis, which is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis
from aiosmtpd.controller import Controller
from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice, so parallel tests do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until `predicate()` is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def real_clock_env() -> dict[str, str]:
    """This environment without libfaketime, for the servers a test starts (redis-server, PostgreSQL).

    Running the suite under `faketime` (to find tests that depend on today's date) must shift only the
    tests and the application: a redis-server under libfaketime never answers, and a server's own
    timers have nothing to do with the date being tested."""
    env = dict(os.environ)
    kept = [part for part in env.get("LD_PRELOAD", "").split() if "faketime" not in part]
    if kept:
        env["LD_PRELOAD"] = " ".join(kept)
    else:
        env.pop("LD_PRELOAD", None)
    for name in [n for n in env if n.startswith("FAKETIME")]:
        del env[name]
    return env


def stop_group(process: subprocess.Popen, grace: float) -> None:
    """TERM the process group, then KILL what is left after `grace` seconds; always reaps."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children too (prefork pool), even if the parent is gone
    process.wait()


# --- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """A private, non-persistent redis-server; stopping and starting it again keeps its port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - kept by the process
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=real_clock_env(),
        )
        log.close()
        wait_for(self._answers, 10, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.exceptions.RedisError:
            return False

    def stop(self) -> None:
        """Shut the server down (its queued messages are lost: it keeps nothing on disk)."""
        if self.process is not None:
            self.resume()
            stop_group(self.process, grace=5)
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a hung or cut-off broker)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def backlog(self) -> int:
        """Messages waiting in the default queue plus those delivered but not yet acknowledged."""
        with self.client() as client:
            return int(client.llen("celery")) + int(client.hlen("unacked"))


# --- Celery --------------------------------------------------------------------------------------


class CeleryWorker:
    """`celery -A celery_worker worker` with a prefork pool (of one unless told), in a process group
    of its own; `extra` arguments are appended (the benchmarks load a module of their own tasks)."""

    def __init__(
        self, name: str, env: dict[str, str], log: Path, concurrency: int = 1, extra: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.concurrency = concurrency
        self.extra = extra
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout: float = 30) -> CeleryWorker:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "celery", "-A", "celery_worker", "worker"),
                    *("--pool", "prefork", "--concurrency", str(self.concurrency)),
                    *("--hostname", f"{self.name}@%h"),
                    # As the Procfile runs it (no gossip, mingle or heartbeat: nothing here needs them).
                    *("--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"),
                    *self.extra,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, ready_timeout, f"Celery worker {self.name} to be ready")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.output()[-4000:]}")
        return f"{self.name}@" in self.output() and " ready." in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once: no warm shutdown, nothing acknowledged."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, grace=10)


def worker_env(**settings: Any) -> dict[str, str]:
    """The environment of a production worker (PORTAL_CONFIG=production) with the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "NOTIFY_", "CELERY_"))}
    env.update(PORTAL_CONFIG="production", PYTHONUNBUFFERED="1")
    env.update({name: str(value) for name, value in settings.items()})
    return env


class SweepBeat:
    """Stands in for the one `celery beat` process: publishes `notifications.sweep` every `interval`
    seconds (beat's schedule says every minute), with its own broker connection, ignoring a broker that
    is down just as beat logs and carries on."""

    def __init__(self, celery_settings: dict[str, Any], interval: float) -> None:
        self.celery = Celery("beat-stand-in", set_as_current=False)
        self.celery.config_from_object(dict(celery_settings))
        self.interval = interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-beat", daemon=True)

    def start(self) -> SweepBeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.celery.send_task("notifications.sweep", retry=False)
                self.sent += 1
            except Exception:  # noqa: S110 - the broker is down: beat tries again next time
                pass

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(timeout=15)
            self.celery.close()


# --- SMTP ----------------------------------------------------------------------------------------


@dataclass
class Received:
    """One message the SMTP server was given (the DATA phase completed) and what it answered."""

    message_id: str
    recipients: list[str]
    subject: str
    at: float
    outcome: str = "waiting"  # "accepted", the refusal sent, or "connection lost"
    body: str = field(default="", repr=False)


class SmtpSink:
    """An aiosmtpd server on loopback that records every message and can refuse or hold them.

    `refuse` (a reply such as "554 5.7.1 refused") answers every DATA with that reply; `hold_next()`
    makes the next message wait, before the server accepts it, until `release()` (`holding` is set while
    it waits). A message counts as delivered only when the server answered 250.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.refuse: str | None = None
        # Seconds the server takes over each message before answering (a busy server keeps the
        # worker's task running).
        self.delay = 0.0
        self.release_reply = "451 4.3.0 try again later"
        self.holding = threading.Event()
        self._released = threading.Event()
        self._to_hold = 0
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._controller.stop()

    def hold_next(self) -> None:
        with self._lock:
            self._to_hold += 1

    def release(self) -> None:
        self._released.set()

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        entry = Received(
            message_id=str(message["Message-ID"]),
            recipients=list(envelope.rcpt_tos),
            subject=str(message["Subject"]),
            at=time.monotonic(),
            body=message.get_content(),
        )
        with self._lock:
            self.received.append(entry)
            held = self._to_hold > 0
            if held:
                self._to_hold -= 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if held:
                self.holding.set()
                while not self._released.is_set():
                    await asyncio.sleep(0.02)
                reply = self.release_reply
            else:
                reply = self.refuse
        except asyncio.CancelledError:  # aiosmtpd cancels the handler when the client goes away
            entry.outcome = "connection lost"
            raise
        if server.transport is None or server.transport.is_closing():
            entry.outcome = "connection lost"
            return "421 4.4.2 connection lost"
        entry.outcome = reply or "accepted"
        return reply or "250 2.0.0 OK"

    def accepted(self) -> Counter[str]:
        """How many times each Message-ID was accepted."""
        with self._lock:
            return Counter(r.message_id for r in self.received if r.outcome == "accepted")

    def attempts(self, message_id: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.message_id == message_id]


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are (Debian keeps them out of PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


class PostgresCluster:
    """A private PostgreSQL cluster (initdb) on a free port, to be stopped and started by a test.

    PostgreSQL refuses to run as root; as root, the cluster runs as the `postgres` user, in a folder of
    its own under the system's temporary folder (pytest's are closed to other users)."""

    def __init__(self, bin_dir: Path) -> None:
        import tempfile

        self.directory = Path(tempfile.mkdtemp(prefix="portal-pg-"))
        self.data = self.directory / "data"
        self.bin = bin_dir
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam("postgres")
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._as_user, *args], check=True, capture_output=True, timeout=120, env=real_clock_env()
        )

    def init(self) -> PostgresCluster:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"
        )
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        """Stop the cluster if it runs, and delete its files."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class TookTooLong(BaseException):
    """Not an Exception, so that no `except Exception` on the way swallows it."""


@contextlib.contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    """Fail what runs inside (a test with its fixtures) after `seconds` instead of hanging the suite:
    a fault test waits on processes it started, and a mistake there must not wait forever."""

    def expire(signum, frame):
        raise TookTooLong(f"the test took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
