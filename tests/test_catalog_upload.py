"""Catalogue files uploaded in the admin console and through the API: checked by content, a dry run that
writes nothing, "apply" of the very file that was checked, a history that keeps the file, a worker for
large files (in-process here; tests/test_catalog_upload_worker.py runs a real one)."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from portal.accounts.models import User
from portal.catalog import imports
from portal.catalog.importer import HEADERS
from portal.catalog.models import CatalogImport, ImportState, Instrument
from portal.catalog.upload_checks import ImportRefused
from portal.core.errors import Forbidden, InvalidTransition
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import cache, db
from tests.factories import extract_csrf, login
from tests.test_api_catalog import token_for
from tests.test_catalog_import import csv_bytes, row, xlsx_bytes

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py

GOOD = [row(), row(**{"仪器编码": "LCU-90002", "仪器名称": "原子吸收光谱仪"})]
# Row 3 names a category that does not exist; rows 2 and 4 are fine.
ONE_BAD_ROW = [
    row(),
    row(**{"仪器编码": "LCU-90002", "仪器分类代码": "0177"}),
    row(**{"仪器编码": "LCU-90003"}),
]


@pytest.fixture
def host(make_institution):
    return make_institution(name="聊城测试大学", county="东昌府区")


@pytest.fixture
def admin(make_user):
    return make_user(Role.ADMIN)


@pytest.fixture
def admin_client(client, admin):
    login(client, admin.username)
    return client


def instruments() -> int:
    return db.session.scalar(select(func.count()).select_from(Instrument))


def history() -> list[CatalogImport]:
    db.session.expire_all()
    return list(db.session.scalars(select(CatalogImport).order_by(CatalogImport.id)))


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def stored(app) -> set[str]:
    root = Path(app.config["UPLOAD_FOLDER"])
    return {p.name for p in root.iterdir()} if root.exists() else set()


def upload(client, data: bytes, name: str = "仪器.csv"):
    page = client.get("/admin/imports")
    return client.post(
        "/admin/imports",
        data={"file": (io.BytesIO(data), name), "csrf_token": extract_csrf(page.text)},
        content_type="multipart/form-data",
    )


def apply(client, import_id: int):
    page = client.get(f"/admin/imports/{import_id}")
    return client.post(f"/admin/imports/{import_id}/apply", data={"csrf_token": extract_csrf(page.text)})


def import_id_of(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return int(re.search(r"/admin/imports/(\d+)$", response.location).group(1))


# --- the console: dry run, then apply ------------------------------------------------------------


def test_a_file_with_one_bad_row_lists_it_with_row_and_column_and_writes_nothing(app, host, admin_client):
    response = upload(admin_client, csv_bytes(ONE_BAD_ROW))
    import_id = import_id_of(response)
    page = admin_client.get(response.location).get_data(as_text=True)
    errors = page[page.index('id="import-errors"') :]
    cells = re.findall(r"<tr><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td></tr>", errors)
    assert [(r, c) for r, c, _m in cells] == [("3", "仪器分类代码")]
    assert "0177" in cells[0][2]
    assert 'id="apply-form"' not in page
    assert instruments() == 0
    (item,) = history()
    assert item.state is ImportState.INVALID
    assert item.errors == [{"row": 3, "column": "仪器分类代码", "message": cells[0][2]}]
    assert item.error_count == 1
    # Applying it anyway is refused, and still nothing is written.
    refused = apply(admin_client, import_id)
    assert refused.status_code == 302
    assert history()[0].state is ImportState.INVALID
    assert instruments() == 0
    assert "instrument.imported" not in actions()


def test_apply_after_a_clean_dry_run_imports_the_stored_file(app, host, admin, admin_client):
    data = csv_bytes(GOOD)
    import_id = import_id_of(upload(admin_client, data, "新仪器.csv"))
    (item,) = history()
    assert (item.state, item.created, item.updated, item.unchanged) == (ImportState.CHECKED, 2, 0, 0)
    assert instruments() == 0  # the dry run wrote nothing
    page = admin_client.get(f"/admin/imports/{import_id}").get_data(as_text=True)
    assert 'id="apply-form"' in page and 'data-confirm="' in page

    response = apply(admin_client, import_id)  # no file is sent: the stored one is applied
    assert response.status_code == 302
    assert instruments() == 2
    (item,) = history()
    assert item.state is ImportState.APPLIED
    assert (item.created, item.updated, item.unchanged) == (2, 0, 0)
    assert item.uploaded_by_id == admin.id and item.applied_by_id == admin.id and item.applied_at
    assert item.original_name == "新仪器.csv" and item.sha256 == hashlib.sha256(data).hexdigest()
    assert item.stored_name != item.original_name and item.stored_name.endswith(".csv")
    assert actions() == [
        "user.login",
        "catalog_import.uploaded",
        "catalog_import.checked",
        "catalog_import.apply_requested",
        "instrument.imported",
        "instrument.imported",
        "catalog.imported",
        "catalog_import.applied",
    ]
    # The history lists it; the kept file downloads byte for byte.
    listing = admin_client.get("/admin/imports").get_data(as_text=True)
    assert "新仪器.csv" in listing and 'data-state="applied"' in listing
    download = admin_client.get(f"/admin/imports/{import_id}/file")
    assert download.status_code == 200 and download.data == data
    assert "attachment" in download.headers["Content-Disposition"]
    # A second apply is refused: a file is applied once.
    apply(admin_client, import_id)
    assert instruments() == 2 and actions().count("catalog_import.applied") == 1


def test_apply_checks_again_and_writes_nothing_when_the_catalogue_changed_since_the_dry_run(
    app, host, admin, admin_client
):
    import_id = import_id_of(upload(admin_client, csv_bytes(GOOD)))
    host.name = "聊城测试大学（新名）"  # the file's host is no longer known by that name
    db.session.commit()
    apply(admin_client, import_id)
    (item,) = history()
    assert item.state is ImportState.INVALID
    assert {(e["row"], e["column"]) for e in item.errors} == {(2, "依托单位"), (3, "依托单位")}
    assert instruments() == 0


def test_two_administrators_cannot_both_apply_a_file(app, host, admin, make_user):
    item = imports.start_import(admin, io.BytesIO(csv_bytes(GOOD)), "a.csv")
    imports._claim_apply(admin, item.id)  # the first one's click, its work not yet done
    with pytest.raises(InvalidTransition):
        imports.request_apply(make_user(Role.ADMIN), item.id)
    imports.run_import(item.id)
    assert instruments() == 2


def test_an_xlsx_workbook_is_checked_and_applied_like_a_csv(app, host, admin):
    data = xlsx_bytes([HEADERS, *([r.get(h, "") for h in HEADERS] for r in GOOD)])
    item = imports.import_now(admin, io.BytesIO(data), "仪器.xlsx", dry_run=False)
    assert (item.fmt, item.state, item.created, item.rows) == ("xlsx", ImportState.APPLIED, 2, 2)
    assert item.stored_name.endswith(".xlsx")


def test_the_format_comes_from_the_content_not_the_name(app, host, admin):
    item = imports.import_now(admin, io.BytesIO(csv_bytes(GOOD)), "catalogue.txt", dry_run=True)
    assert (item.fmt, item.state) == ("csv", ImportState.CHECKED)


def test_only_administrators_import(app, host, make_user):
    reviewer = make_user(Role.REVIEWER)
    with pytest.raises(Forbidden):
        imports.start_import(reviewer, io.BytesIO(csv_bytes(GOOD)), "a.csv")
    assert history() == [] and instruments() == 0


# --- hostile and broken files ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def zip_bomb() -> bytes:
    """An "XLSX" of 150 KB whose sheet unpacks to 129 MB of XML (more than IMPORT_MAX_UNPACKED_BYTES)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        with archive.open("xl/worksheets/sheet1.xml", "w") as sheet:
            block = b"<row><c><v>0</v></c></row>" * 40_000
            for _ in range(129 * 1024 * 1024 // len(block) + 1):
                sheet.write(block)
    data = buffer.getvalue()
    assert len(data) < 1024 * 1024
    return data


def _zip(**members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


HOSTILE = {
    "html renamed .xlsx": (b"<html><script>alert(1)</script></html>", "仪器.xlsx", "不是真正的 XLSX"),
    "a zip that is no workbook": (_zip(readme="hello"), "仪器.xlsx", "不是 XLSX"),
    "a damaged zip": (b"PK\x03\x04" + b"\x00" * 200, "仪器.xlsx", "损坏"),
    "GBK text as CSV": ("仪器编码,仪器名称\nA-1,质谱仪\n".encode("gbk"), "仪器.csv", "UTF-8"),
    "binary named .csv": (b"MZ\x90\x00\x03\x00\x00\x00", "仪器.csv", "CSV"),
    "an empty file": (b"", "仪器.csv", "文件为空"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_files_are_refused_on_the_form_and_nothing_is_kept(app, admin_client, case):
    data, name, message = HOSTILE[case]
    before = stored(app)
    response = upload(admin_client, data, name)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert message in html and "invalid-feedback" in html  # the message stands under the file field
    assert history() == [] and stored(app) == before


def test_a_zip_bomb_is_refused_unopened(app, admin_client, zip_bomb):
    response = upload(admin_client, zip_bomb, "仪器.xlsx")
    assert response.status_code == 200
    assert "129 MB" in response.get_data(as_text=True)
    assert history() == []


def test_size_and_row_limits(app, host, admin):
    app.config.update(IMPORT_MAX_BYTES=1000)
    with pytest.raises(ImportRefused, match="MB"):
        imports.start_import(admin, io.BytesIO(b"x" * 1001), "big.csv")
    app.config.update(IMPORT_MAX_BYTES=10**6, IMPORT_MAX_ROWS=2)
    with pytest.raises(ImportRefused, match="2"):
        imports.start_import(admin, io.BytesIO(csv_bytes(ONE_BAD_ROW)), "rows.csv")
    assert history() == [] and stored(app) == set()


# --- large files go to a worker (in-process without REDIS_URL) -----------------------------------


def test_a_large_file_goes_to_the_worker_and_reports_its_progress(
    app, host, admin, admin_client, monkeypatch
):
    from portal.catalog import importer

    monkeypatch.setattr(importer, "PROGRESS_EVERY", 2)
    seen: list[tuple[str, int]] = []
    real = imports._progress_reporter

    def watching(import_id):
        report = real(import_id)
        return lambda phase, rows: (seen.append((phase, rows)), report(phase, rows))

    monkeypatch.setattr(imports, "_progress_reporter", watching)
    app.config.update(IMPORT_ASYNC_ROWS=2)
    queued: list[int] = []
    from portal.catalog import tasks

    real_send = tasks.run_import.apply_async

    def send(args, **options):
        queued.append(args[0])
        return real_send(args=args, **options)

    monkeypatch.setattr(tasks.run_import, "apply_async", send)
    rows = [row(**{"仪器编码": f"LCU-{n}"}) for n in range(5)]
    import_id = import_id_of(upload(admin_client, csv_bytes(rows)))
    assert queued == [import_id]  # the check went through the task
    assert seen == [("reading", 2), ("reading", 4)]
    assert history()[0].state is ImportState.CHECKED
    assert cache.get(imports._progress_key(import_id)) == {"phase": "reading", "rows": 4}
    applied = apply(admin_client, import_id)
    assert "文件已导入。" in admin_client.get(applied.location).get_data(as_text=True)  # read afresh
    assert queued == [import_id, import_id]
    assert seen[2:] == [("reading", 2), ("reading", 4), ("writing", 2), ("writing", 4)]
    assert history()[0].state is ImportState.APPLIED and instruments() == 5


def test_the_progress_page_follows_a_running_import(app, host, admin, admin_client):
    item = imports._accept(admin, io.BytesIO(csv_bytes(GOOD * 1)), "a.csv")  # waiting for its worker
    page = admin_client.get(f"/admin/imports/{item.id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' in page and 'id="import-progress"' in page and "等待" in page
    imports._progress_reporter(item.id)("reading", 1)
    page = admin_client.get(f"/admin/imports/{item.id}").get_data(as_text=True)
    assert 'max="2" value="1"' in page
    imports.run_import(item.id)
    page = admin_client.get(f"/admin/imports/{item.id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' not in page and 'id="apply-form"' in page


def test_a_broker_that_cannot_be_reached_keeps_the_import_waiting_until_it_is_back(
    app, host, admin, admin_client, monkeypatch
):
    from kombu.exceptions import OperationalError

    from portal.catalog import tasks
    from portal.core import outbox
    from portal.core.models import QueuedTask

    def down(*_args, **_options):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(tasks.run_import, "apply_async", down)
    app.config.update(IMPORT_ASYNC_ROWS=0)
    import_id = import_id_of(upload(admin_client, csv_bytes(GOOD)))
    (item,) = history()
    assert item.state is ImportState.CHECKING  # waiting for its worker, not failed
    page = admin_client.get(f"/admin/imports/{import_id}").get_data(as_text=True)
    assert 'id="import-progress"' in page and "等待" in page and 'id="apply-form"' not in page
    (waiting,) = db.session.scalars(select(QueuedTask)).all()
    assert (waiting.name, waiting.args) == ("catalog.run_import", [import_id])

    monkeypatch.undo()  # the broker is back: the periodic sweep sends the task
    assert outbox.send_waiting(older_than_seconds=0) == 1
    db.session.rollback()
    assert history()[0].state is ImportState.CHECKED


# --- the API --------------------------------------------------------------------------------------


def post_api(client, token: str | None, data: bytes, name: str = "仪器.csv", **fields: str):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        "/api/v1/catalog/imports",
        data={"file": (io.BytesIO(data), name), **fields},
        headers=headers,
        content_type="multipart/form-data",
    )


def test_api_dry_run_then_import(app, host, admin, client):
    token = token_for(client, admin.username)
    response = post_api(client, token, csv_bytes(GOOD), dry_run="true")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "id": body["id"],
        "dry_run": True,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "errors": [],
    }
    assert instruments() == 0
    response = post_api(client, token, csv_bytes(GOOD), dry_run="false")
    assert response.status_code == 200
    assert response.get_json()["created"] == 2 and response.get_json()["dry_run"] is False
    assert instruments() == 2
    assert [i.state for i in history()] == [ImportState.CHECKED, ImportState.APPLIED]


def test_api_a_file_with_an_error_is_422_with_every_error_and_writes_nothing(app, host, admin, client):
    token = token_for(client, admin.username)
    response = post_api(client, token, csv_bytes(ONE_BAD_ROW), dry_run="false")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert [(e["row"], e["column"]) for e in error["details"]["errors"]] == [(3, "仪器分类代码")]
    assert "0177" in error["details"]["errors"][0]["message"]
    assert instruments() == 0
    assert history()[0].state is ImportState.INVALID  # kept in the history, with its errors


def test_api_a_hostile_file_is_422_with_the_reason(app, host, admin, client, zip_bomb):
    token = token_for(client, admin.username)
    response = post_api(client, token, zip_bomb, "仪器.xlsx")
    assert response.status_code == 422
    details = response.get_json()["error"]["details"]
    assert details["errors"][0]["row"] is None and "MB" in details["errors"][0]["message"]
    assert history() == []


@pytest.mark.parametrize(
    ("fields", "bad"), [({"dry_run": "maybe"}, "dry_run"), ({"dry_run": "true", "nofile": "1"}, "file")]
)
def test_api_bad_fields_are_422(app, host, admin, client, fields, bad):
    token = token_for(client, admin.username)
    data = {k: v for k, v in fields.items() if k != "nofile"}
    if "nofile" not in fields:
        data["file"] = (io.BytesIO(csv_bytes(GOOD)), "a.csv")
    response = client.post(
        "/api/v1/catalog/imports",
        data=data,
        headers={"Authorization": f"Bearer {token}"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert bad in response.get_json()["error"]["details"]["fields"]
    assert history() == []


def test_api_needs_an_administrator(app, host, make_user, client):
    assert post_api(client, None, csv_bytes(GOOD)).status_code == 401
    assert post_api(client, None, csv_bytes(GOOD), dry_run="maybe").status_code == 401  # before the body
    reviewer = make_user(Role.REVIEWER)
    response = post_api(client, token_for(client, reviewer.username), csv_bytes(GOOD))
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert history() == [] and instruments() == 0


def test_the_openapi_document_says_what_the_endpoint_does(app, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/catalog/imports"]["post"]
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]] if "$ref" in body else body
    assert body["properties"]["dry_run"]["enum"] == ["true", "false"]
    assert body["properties"]["file"]["format"] == "binary" and body["required"] == ["file"]
    assert set(operation["responses"]) >= {"200", "401", "403", "422"}
    assert "details.errors" in operation["responses"]["422"]["description"]
    assert operation["security"] == [{"bearerAuth": []}]
    result = spec["components"]["schemas"]["ImportResult"]
    assert set(result["required"]) == {"id", "dry_run", "created", "updated", "unchanged", "errors"}


# --- the demo ------------------------------------------------------------------------------------


def test_the_demo_history_shows_an_applied_file_and_keeps_it(demo_app):
    admin = db.session.scalar(select(User).where(User.username == "admin"))
    applied, invalid = history()
    assert (applied.original_name, applied.state) == ("仪器信息更新.csv", ImportState.APPLIED)
    assert (applied.created, applied.updated, applied.unchanged) == (0, 3, 2)
    assert applied.uploaded_by_id == applied.applied_by_id == admin.id
    path, _row = imports.stored_file(admin, applied.id)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == applied.sha256
    assert invalid.state is ImportState.INVALID
    assert [(e["row"], e["column"]) for e in invalid.errors] == [(3, "仪器分类代码")]


def test_file_names_and_cell_values_are_shown_escaped(app, host, admin_client):
    markup, name = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>.csv"
    import_id = import_id_of(upload(admin_client, csv_bytes([row(**{"仪器分类代码": markup})]), name))
    detail = admin_client.get(f"/admin/imports/{import_id}").get_data(as_text=True)
    assert markup not in detail and "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    for html in (detail, admin_client.get("/admin/imports").get_data(as_text=True)):
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;.csv" in html
