"""Reference client for an instrument's PC: report each login and logout to the portal.

Copy this one file to the PC (it needs Python 3.11 and nothing else) and run it from the login and
logout scripts:

    python3 usage_client.py --portal https://portal.example --instrument LCU-0001 --key dk_… start
    python3 usage_client.py … stop
    python3 usage_client.py … flush          # only send what is queued (e.g. every few minutes)

(`--key-file`, or the environment's PORTAL_URL, PORTAL_INSTRUMENT and PORTAL_DEVICE_KEY, keep the
key off the command line.) Every event is first written to a local queue (a JSON-lines file,
`--queue`, default `~/.portal-usage-queue.jsonl`) with its own idempotency key and its time, then
the whole queue is sent in order. While the portal cannot be reached, the events stay queued and go
with the next run; an event the portal took, or refused for good (a 4xx other than 408/429), leaves
the queue. The portal ignores an event it already has (the same idempotency key), so an answer lost
on the way never counts twice. The exit status is 0 even when the events stay queued: a login must
never fail because the network is down.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

TIMEOUT_SECONDS = 5
# Answers after which the same event may work later; any other 4xx will never work and is dropped.
RETRY_LATER = {408, 429}


@contextlib.contextmanager
def _locked(queue: Path) -> Iterator[None]:
    """One run at a time per queue (a login and a logout script may overlap); POSIX only, else none."""
    lock = queue.with_suffix(queue.suffix + ".lock").open("a")
    try:
        try:
            import fcntl  # not on Windows: there, runs are simply not serialised
        except ImportError:
            yield
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        lock.close()


def read_queue(queue: Path) -> list[dict]:
    if not queue.exists():
        return []
    events = []
    for line in queue.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def write_queue(queue: Path, events: list[dict]) -> None:
    """Replace the queue atomically (a crash leaves the old one or the new one, never half)."""
    temporary = queue.with_suffix(queue.suffix + ".tmp")
    temporary.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")
    os.replace(temporary, queue)


def new_event(kind: str, username: str) -> dict:
    return {
        "event": kind,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "username": username,
        "idempotency_key": str(uuid.uuid4()),
    }


def send(portal: str, instrument: str, key: str, event: dict) -> int | None:
    """POST one event; the HTTP status, or None when the portal could not be reached."""
    if not portal.startswith(("http://", "https://")):
        raise SystemExit("usage client: --portal must be an http:// or https:// address")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        f"{portal.rstrip('/')}/api/v1/instruments/{instrument}/usage-events",
        data=json.dumps(event).encode(),
        headers={"Authorization": f"Device {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        # The scheme is checked above (http or https only).
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310  # nosec B310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):  # refused, unreachable, timed out, a broken answer
        return None


def flush(portal: str, instrument: str, key: str, queue: Path) -> tuple[int, int]:
    """Send the queued events in order until one cannot be sent now; (sent, still queued)."""
    events = read_queue(queue)
    sent = 0
    while events:
        status = send(portal, instrument, key, events[0])
        if status is None or status >= 500 or status in RETRY_LATER:
            break  # the portal is away: keep this event and the ones after it, in order
        if status >= 400:
            print(f"usage client: the portal refused {events[0]} ({status}); dropped", file=sys.stderr)
        else:
            sent += 1
        events.pop(0)
        write_queue(queue, events)
    return sent, len(events)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Report logins and logouts at an instrument to the portal.")
    parser.add_argument("action", choices=("start", "stop", "flush"))
    parser.add_argument("--portal", default=os.environ.get("PORTAL_URL"))
    parser.add_argument("--instrument", default=os.environ.get("PORTAL_INSTRUMENT"))
    parser.add_argument("--key", default=os.environ.get("PORTAL_DEVICE_KEY"))
    parser.add_argument("--key-file", type=Path)
    parser.add_argument("--username", default=None, help="default: the user logged in on this PC")
    parser.add_argument("--queue", type=Path, default=Path.home() / ".portal-usage-queue.jsonl")
    args = parser.parse_args(argv)
    if args.key_file:
        args.key = args.key_file.read_text(encoding="utf-8").strip()
    if not (args.portal and args.instrument and args.key):
        parser.error("--portal, --instrument and --key (or --key-file) are needed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with _locked(args.queue):
        if args.action != "flush":
            events = read_queue(args.queue)
            events.append(new_event(args.action, args.username or getpass.getuser()))
            write_queue(args.queue, events)
        sent, queued = flush(args.portal, args.instrument, args.key, args.queue)
    print(f"usage client: {sent} sent, {queued} queued")
    return 0


if __name__ == "__main__":
    sys.exit(main())
