"""Run one catalogue upload in a process of its own and print its peak memory (tests/test_hostile_files.py).

`python -m tests.import_memory_probe form|api DATABASE_URL FILE UPLOAD_FOLDER` signs in as a new
administrator and sends FILE through the admin console's form or POST /api/v1/catalog/imports. It
prints one JSON line: the status, the answer's text and the process's peak resident memory (the CLI
is measured the same way through `flask catalog import`, see the test).
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    VmHWM belongs to the process image, so it starts afresh at exec; getrusage's ru_maxrss does not
    (a child forked from a large pytest process would report the parent's size), hence only the fallback.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def main(mode: str, database_url: str, file: str, upload_folder: str) -> None:
    from werkzeug.security import generate_password_hash

    from portal import create_app
    from portal.accounts.models import User
    from portal.core.permissions import Role
    from portal.extensions import db
    from tests.factories import PASSWORD, extract_csrf, login

    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_url, "UPLOAD_FOLDER": upload_folder})
    with app.app_context():
        admin = User(
            username="probe-admin",
            email="probe-admin@example.com",
            password_hash=generate_password_hash(PASSWORD, method=app.config["PASSWORD_HASH_METHOD"]),
            role=Role.ADMIN,
            full_name="探针管理员",
        )
        db.session.add(admin)
        db.session.commit()
    data = Path(file).read_bytes()
    client = app.test_client()
    before = peak_rss_mb()
    if mode == "form":
        login(client, "probe-admin")
        page = client.get("/admin/imports")
        response = client.post(
            "/admin/imports",
            data={"file": (io.BytesIO(data), "仪器.xlsx"), "csrf_token": extract_csrf(page.text)},
            content_type="multipart/form-data",
        )
    else:
        token = client.post("/api/v1/tokens", json={"username": "probe-admin", "password": PASSWORD}).json[
            "token"
        ]
        response = client.post(
            "/api/v1/catalog/imports",
            data={"file": (io.BytesIO(data), "仪器.xlsx"), "dry_run": "true"},
            headers={"Authorization": f"Bearer {token}"},
            content_type="multipart/form-data",
        )
    print(
        json.dumps(
            {
                "status": response.status_code,
                "text": response.get_data(as_text=True),
                "rss_before_mb": before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
