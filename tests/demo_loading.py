"""Loads the demo databases ahead, in processes of their own, while the workers run the tests that
do not need them (those run last: conftest's pytest_collection_modifyitems).

Loading the demo is the suite's most expensive setup (a minute or two per backend). Without this, the
first worker to need a demo loads it while every other worker that needs it waits, idle. The
controller starts one loader per backend once the workers have collected the tests
(pytest_xdist_node_collection_finished in conftest); a loader takes the same file lock as the
fixtures, so whoever comes first loads and the other finds it loaded.

    python -m tests.demo_loading RUN_FOLDER sqlite|postgresql
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import SharedDemo, make_pg_demo, make_sqlite_demo

LOADER = "loader"


def load_ahead(root: Path, backend: str) -> None:
    """Load the backend's demo for the run in `root` unless someone already has (signs nobody in)."""
    shared = SharedDemo(root, LOADER, backend)
    if backend == "postgresql":
        shared.acquire(lambda: make_pg_demo(root, None), sign_in=False)
    else:
        shared.acquire(lambda: make_sqlite_demo(root, None), sign_in=False)


if __name__ == "__main__":
    # Stopped by the controller (a run that ends first): unwind, so a half-loaded database is dropped.
    signal.signal(signal.SIGTERM, lambda *_args: sys.exit(1))
    try:
        load_ahead(Path(sys.argv[1]), sys.argv[2])
    except sa.exc.OperationalError:
        sys.exit(0)  # no PostgreSQL: the tests that need it say so themselves
