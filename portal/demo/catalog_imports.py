"""The demo's catalogue import history: a small update file the administrator applied, and one whose dry
run found a problem. Both files are stored like any upload, so the history's downloads work."""

from __future__ import annotations

import csv
import io
from itertools import islice

from sqlalchemy import select

from portal.accounts.models import User
from portal.catalog import imports
from portal.catalog.importer import HEADERS, export_rows
from portal.extensions import db

SERVICE_CONTENT = HEADERS.index("服务内容")
CATEGORY = HEADERS.index("仪器分类代码")
CODE = HEADERS.index("仪器编码")


def _csv(rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for values in rows:
        writer.writerow(["" if value is None else str(value) for value in values])
    return ("\ufeff" + buffer.getvalue()).encode()  # as Excel saves "CSV UTF-8"


def load_catalog_imports() -> int:
    """Apply an update of five instruments (three changed) and check a file with a wrong category code."""
    admin = db.session.execute(select(User).where(User.username == "admin")).scalar_one()
    header, *first = list(islice(export_rows(), 6))
    changed = [list(values) for values in first]
    for values in changed[:3]:
        values[SERVICE_CONTENT] = f"{values[SERVICE_CONTENT] or ''}（本年度起可预约周末机时）"
    imports.import_now(admin, io.BytesIO(_csv([header, *changed])), "仪器信息更新.csv", dry_run=False)
    new = [list(first[0]), list(first[1])]
    for n, values in enumerate(new, start=1):
        values[CODE] = f"LC-NEW-{n:03d}"
    new[1][CATEGORY] = "0177"  # no such category: the dry run says so (row 3, 仪器分类代码)
    imports.import_now(admin, io.BytesIO(_csv([header, *new])), "新增仪器.csv", dry_run=True)
    return 2
