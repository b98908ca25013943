"""Hostile uploads: a PDF posing as a web page, names that reorder themselves, PDFs that act, zip bombs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from portal.booking.models import ServiceFile
from portal.catalog import imports
from portal.catalog.models import CatalogImport, ImportState
from portal.catalog.upload_checks import ImportTooLarge
from portal.core import pdf_checks, uploads
from portal.core.permissions import Role
from portal.extensions import db
from portal.vouchers.models import VerificationRequest
from tests import test_booking_files
from tests.factories import extract_csrf, login
from tests.pdf_samples import build_pdf, minimal_pdf
from tests.test_api_catalog import token_for
from tests.test_booking_files import upload
from tests.test_booking_rules import bearer
from tests.test_catalog_import import HEADERS, csv_bytes, row, xlsx_bytes

ROOT = Path(__file__).resolve().parent.parent
service = test_booking_files.service  # the fixture: a completed booking with its service record
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "invoice\u202efdp.exe" shows as "invoiceexe.pdf"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
HTML_PDF = minimal_pdf(b"<html><body><script>alert(document.cookie)</script></body></html>")
CATALOG = b"<</Type/Catalog/Pages 2 0 R%s>>"
PAGES = b"<</Type/Pages/Count 0/Kids[]>>"
ACTIVE_PDFS = {
    "JavaScript run on opening": build_pdf(CATALOG % b"/OpenAction<</S/JavaScript/JS(app.alert(1))>>", PAGES),
    "JavaScript in the names tree": build_pdf(
        CATALOG % b"/Names<</JavaScript 3 0 R>>", PAGES, b"<</Names[(a) <</S/JavaScript/JS(x)>>]>>"
    ),
    "a name spelled with # escapes": build_pdf(CATALOG % b"/OpenAction<</S/J#61vaScript/J#53(1)>>", PAGES),
    "a page's automatic action": build_pdf(
        CATALOG % b"",
        b"<</Type/Pages/Count 1/Kids[3 0 R]>>",
        b"<</Type/Page/Parent 2 0 R/AA<</O 4 0 R>>>>",
        b"<</S/URI/URI(http://127.0.0.1/)>>",
    ),
    "an embedded file": build_pdf(
        CATALOG % b"/Names<</EmbeddedFiles<</Names[(a.exe) 3 0 R]>>>>",
        PAGES,
        b"<</Type/Filespec/F(a.exe)/EF<</F 4 0 R>>>>",
        b"<</Type/EmbeddedFile/Length 2>>\nstream\nMZ\nendstream",
    ),
    "a launch action": build_pdf(CATALOG % b"/OpenAction<</S/Launch/F(cmd.exe)>>", PAGES),
    # The byte scan skips stream data; a string "(stream" makes it skip the script too. pypdf sees it.
    "a script hidden from the byte scan": build_pdf(
        CATALOG % b"/Title(stream\n)/OpenAction 3 0 R",
        PAGES,
        b"<</S/JavaScript/JS(app.alert(1))>>",
        b"<</Length 4>>\nstream\nabcd\nendstream",
    ),
}


def _script_outside_xref() -> bytes:
    """A script object the cross-reference table leaves out: pypdf never reads it, a repairing viewer may."""
    return build_pdf(CATALOG % b"", PAGES, unlisted=b"9 0 obj\n<</S/JavaScript/JS(app.alert(1))>>\nendobj\n")


# --- names and extensions ----------------------------------------------------------------------------


def test_a_pdf_named_html_is_stored_and_served_as_pdf(client, app, service):
    response = upload(client, service["provider"], service["record"], HTML_PDF, "report.html")
    assert response.status_code == 201, response.json
    row = db.session.get(ServiceFile, response.json["id"])
    assert row.stored_name.endswith(".pdf") and row.content_type == "application/pdf"
    login(client, service["owner"].username)
    download = client.get(f"/service-records/{service['record'].id}/files/{row.id}")
    assert download.status_code == 200 and download.data == HTML_PDF
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["Content-Disposition"] == "attachment; filename=report.pdf"


@pytest.mark.parametrize("name", ["scan.svg", "scan.html", "scan", "scan.", "scan.exe "])
def test_the_served_name_always_ends_in_the_detected_type(name):
    assert uploads.served_name(name, "0123abcd.pdf") == "scan.pdf"
    assert uploads.served_name(name, "0123abcd.png") == "scan.png"


def test_bidirectional_and_control_characters_are_stripped_from_name_page_and_header(client, app, service):
    name = f"invoice{RLO}fdp.exe"
    response = upload(client, service["provider"], service["record"], minimal_pdf(), name)
    assert response.status_code == 201, response.json
    row = db.session.get(ServiceFile, response.json["id"])
    assert row.original_name == "invoicefdp.exe"
    # A name stored before the names were cleaned is cleaned again wherever it shows.
    row.original_name = f"{BIDI}合同\x07\x1b[31m{RLO}fdp.exe\u200b"  # PostgreSQL takes no NUL
    db.session.commit()
    login(client, service["owner"].username)
    page = client.get(f"/bookings/{service['booking'].id}").get_data(as_text=True)
    assert "合同[31mfdp.exe" in page
    assert not any(ch in page for ch in BIDI + "\x07\x1b\u200b")
    download = client.get(f"/service-records/{service['record'].id}/files/{row.id}")
    disposition = download.headers["Content-Disposition"]
    assert f"filename*=UTF-8''{quote('合同[31mfdp.pdf')}" in disposition  # RFC 5987 for the Chinese
    assert not any(ch in disposition for ch in BIDI + "\x07\x1b\u200b")
    api = client.get(
        f"/api/v1/service-records/{service['record'].id}", headers=bearer(client, service["owner"])
    )
    assert api.json["files"][0]["name"] == "合同[31mfdp.exe"


def test_clean_name_drops_every_bidirectional_control():
    assert uploads.clean_name(f"a{BIDI}b.pdf") == "ab.pdf"
    assert uploads.clean_name("..\\..\\etc/passwd\r\n") == "passwd"
    assert uploads.clean_name(RLO) == "upload"


# --- PDFs that act --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(ACTIVE_PDFS), ids=list(ACTIVE_PDFS))
def test_a_pdf_with_javascript_or_an_embedded_file_is_refused(client, app, service, case):
    response = upload(client, service["provider"], service["record"], ACTIVE_PDFS[case], "合同.pdf")
    assert response.status_code == 422
    assert "JavaScript" in response.json["error"]["message"]
    assert db.session.scalar(select(ServiceFile)) is None
    assert not any(p.is_file() for p in Path(app.config["UPLOAD_FOLDER"]).iterdir())


def test_the_byte_scan_finds_a_script_that_pypdf_does_not_read(app, tmp_path):
    path = tmp_path / "x.pdf"
    path.write_bytes(_script_outside_xref())
    assert pdf_checks._parsed_active(path) is False  # pypdf alone would let it through
    with pytest.raises(pdf_checks.PdfRefused, match="JavaScript"):
        pdf_checks.check_pdf(path)


def test_a_pdf_that_cannot_be_read_is_refused_as_damaged(client, app, service):
    response = upload(client, service["provider"], service["record"], b"%PDF-1.4\n<<garbage", "x.pdf")
    assert response.status_code == 422 and "已损坏" in response.json["error"]["message"]


@pytest.mark.parametrize(("password", "outcome"), [("", 201), ("secret", 422)])
def test_an_encrypted_pdf_is_checked_if_it_opens_without_a_password(client, app, service, password, outcome):
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(72, 72)
    writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
    data = io.BytesIO()
    writer.write(data)
    response = upload(client, service["provider"], service["record"], data.getvalue(), "发票.pdf")
    assert response.status_code == outcome
    if outcome == 422:
        assert "需要密码" in response.json["error"]["message"]


def test_the_form_says_why_a_pdf_is_refused_in_chinese(client, app, fake_clock, make_user):
    from portal.accounts.models import VerificationState

    login(client, make_user(Role.ENTERPRISE, verification_state=VerificationState.PENDING).username)
    token = extract_csrf(client.get("/vouchers/verification").get_data(as_text=True))
    data = {
        "csrf_token": token,
        "kind": "tech_sme",
        "tech_sme_number": "202637150100999",
        "actual_controller": "张三",
        "certificate": (io.BytesIO(ACTIVE_PDFS["an embedded file"]), "证明.pdf"),
    }
    response = client.post("/vouchers/verification", data=data, content_type="multipart/form-data")
    assert response.status_code == 200
    assert "JavaScript、自动动作或嵌入文件" in response.get_data(as_text=True)
    assert db.session.scalar(select(VerificationRequest)) is None


# --- downloads are private ----------------------------------------------------------------------------


def assert_private_download(response, name: str) -> None:
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert name in response.headers["Content-Disposition"]


def test_evidence_downloads_are_private_no_store_on_pages_and_api(client, app, service):
    file_id = upload(client, service["provider"], service["record"], minimal_pdf(), "invoice.pdf").json["id"]
    path = f"/service-records/{service['record'].id}/files/{file_id}"
    assert_private_download(
        client.get(f"/api/v1{path}", headers=bearer(client, service["owner"])), "invoice.pdf"
    )
    login(client, service["owner"].username)
    assert_private_download(client.get(path), "invoice.pdf")


def test_a_certificate_download_is_private_no_store(client, app, make_user):
    enterprise = make_user(Role.ENTERPRISE)
    stored = uploads.store_upload(io.BytesIO(HTML_PDF), f"证明{RLO}lmth.html")
    request = VerificationRequest(
        enterprise_id=enterprise.enterprise_id,
        kind=enterprise.enterprise.kind,
        actual_controller="张三",
        certificate_name=stored.original_name,
        certificate_stored=stored.stored_name,
        certificate_type=stored.content_type,
        certificate_size=stored.size,
        submitted_by_id=enterprise.id,
    )
    db.session.add(request)
    db.session.commit()
    login(client, make_user(Role.REVIEWER).username)
    response = client.get(f"/review/verifications/{request.id}/certificate")
    assert_private_download(response, quote("证明lmth.pdf"))


def test_a_catalogue_file_download_is_private_no_store(client, app, make_institution, make_user):
    admin = make_user(Role.ADMIN)
    make_institution(name="聊城测试大学", county="东昌府区")
    item = imports.start_import(admin, io.BytesIO(csv_bytes([row()])), f"仪器{RLO}.csv")
    login(client, admin.username)
    assert_private_download(client.get(f"/admin/imports/{item.id}/file"), quote("仪器.csv"))


# --- zip bombs and row limits in catalogue imports -----------------------------------------------------

BOMB_UNPACKED = 400 * 1024 * 1024
MEMORY_LIMIT_MB = 150


@pytest.fixture(scope="session")
def zip_bomb(tmp_path_factory) -> Path:
    """A real workbook of 0.4 MB with a cell of 400 MB: a reader that trusts it holds it all in memory."""
    workbook = Workbook()
    workbook.active.append(HEADERS)  # every column, so that a reader goes on to the rows
    plain = io.BytesIO()
    workbook.save(plain)
    path = tmp_path_factory.mktemp("bomb") / "bomb.xlsx"
    sheet_name = "xl/worksheets/sheet1.xml"
    with (
        zipfile.ZipFile(plain) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb,
    ):
        for member in source.infolist():
            if member.filename != sheet_name:
                bomb.writestr(member, source.read(member))
        head, tail = source.read(sheet_name).split(b"</sheetData>")
        with bomb.open(sheet_name, "w") as sheet:
            # One cell of 400 MB: runs of one byte are what deflate packs best (about 1000 to 1).
            sheet.write(head + b'<row r="2"><c r="A2" t="inlineStr"><is><t>')
            block = b"x" * (1024 * 1024)
            for _ in range(BOMB_UNPACKED // len(block)):
                sheet.write(block)
            sheet.write(b"</t></is></c></row></sheetData>" + tail)
    assert path.stat().st_size < 450 * 1024
    return path


def _sqlite_copy(sqlite_template: Path, tmp_path: Path) -> str:
    database = tmp_path / "probe.db"
    shutil.copy(sqlite_template, database)
    return f"sqlite:///{database}"


@pytest.mark.parametrize("channel", ["form", "api"])
def test_a_zip_bomb_is_refused_within_the_memory_bound(sqlite_template, tmp_path, zip_bomb, channel):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.import_memory_probe",
            channel,
            _sqlite_copy(sqlite_template, tmp_path),
            str(zip_bomb),
            str(tmp_path / "uploads"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["peak_rss_mb"] < MEMORY_LIMIT_MB, outcome["peak_rss_mb"]
    if channel == "form":
        assert outcome["status"] == 200 and "该工作簿解压后为 400 MB，超过允许的 128 MB。" in outcome["text"]
    else:
        error = json.loads(outcome["text"])["error"]
        assert outcome["status"] == 422 and error["code"] == "import_too_large"
        assert error["details"]["limit"] == "IMPORT_MAX_UNPACKED_BYTES"


def test_a_zip_bomb_is_refused_by_the_cli_within_the_memory_bound(sqlite_template, tmp_path, zip_bomb):
    measure = (
        "import atexit, runpy, sys;"
        "from tests.import_memory_probe import peak_rss_mb;"
        "atexit.register(lambda: print('PEAK_RSS_MB', peak_rss_mb(), file=sys.stderr));"
        "sys.argv = ['flask', '--app', 'wsgi', 'catalog', 'import', '--dry-run', sys.argv[1]];"
        "runpy.run_module('flask', run_name='__main__')"
    )
    env = {
        **os.environ,
        "DATABASE_URL": _sqlite_copy(sqlite_template, tmp_path),
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "PORTAL_CONFIG": "development",
        "REDIS_URL": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", measure, str(zip_bomb)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "beyond the limit IMPORT_MAX_UNPACKED_BYTES=134217728" in result.stderr
    assert "400 MB" in result.stderr  # the message says how much
    peak_mb = float(result.stderr.split("PEAK_RSS_MB")[1].split()[0])
    assert peak_mb < MEMORY_LIMIT_MB, peak_mb


def _lying_workbook() -> bytes:
    """A 3 MB part whose central directory entry declares 1 KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/big.xml", b"x" * (3 * 1024 * 1024))
    data = bytearray(buffer.getvalue())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1024).to_bytes(4, "little")  # uncompressed size
    return bytes(data)


def test_a_workbook_whose_sizes_lie_is_stopped_by_the_bytes_that_come_out(app, monkeypatch):
    """The declared size passes; the bytes that stream out are counted, so the limit holds anyway."""
    from portal.catalog import importer

    app.config.update(IMPORT_MAX_UNPACKED_BYTES=2 * 1024 * 1024)
    archive = zipfile.ZipFile(io.BytesIO(_lying_workbook()))
    assert sum(m.file_size for m in archive.infolist()) == 1024
    # zipfile stops a part at its declared size; a reader that trusts the stream instead (as another
    # library may) is modelled by opening the part with its true size.
    real_open = archive.open
    monkeypatch.setattr(archive, "open", lambda member: real_open(_true_size(member)))
    with pytest.raises(importer.LimitReached) as refused:
        importer.check_workbook_size(archive)
    assert refused.value.setting == "IMPORT_MAX_UNPACKED_BYTES"
    # As it is, the lie makes the part fail its checksum: the workbook is refused as unreadable.
    with pytest.raises(importer.RowError, match="XLSX"):
        list(importer.read_table(io.BytesIO(_lying_workbook()), "x.xlsx"))


def _true_size(member: zipfile.ZipInfo) -> zipfile.ZipInfo:
    import copy

    honest = copy.copy(member)
    honest.file_size = 3 * 1024 * 1024
    return honest


def test_the_row_limit_is_said_on_the_api_the_worker_and_the_cli(
    app, client, make_institution, make_user, tmp_path
):
    make_institution(name="聊城测试大学", county="东昌府区")
    admin = make_user(Role.ADMIN)
    # A workbook above IMPORT_ASYNC_BYTES is counted by the importer (the worker's path), a CSV on arrival.
    app.config.update(IMPORT_MAX_ROWS=2, IMPORT_ASYNC_BYTES=10)
    rows = [row(**{"仪器编码": f"LCU-{n}"}) for n in range(3)]
    token = token_for(client, admin.username)
    workbook = xlsx_bytes([HEADERS, *([r.get(h, "") for h in HEADERS] for r in rows)])
    for data, name in ((csv_bytes(rows), "仪器.csv"), (workbook, "仪器.xlsx")):
        response = client.post(
            "/api/v1/catalog/imports",
            data={"file": (io.BytesIO(data), name)},
            headers={"Authorization": f"Bearer {token}"},
            content_type="multipart/form-data",
        )
        error = response.get_json()["error"]
        assert response.status_code == 422 and error["code"] == "import_too_large", name
        assert "每个文件最多 2 行" in error["message"], name
    worker = imports.start_import(admin, io.BytesIO(workbook), "仪器.xlsx")
    assert worker.state is ImportState.INVALID and worker.errors[0]["code"] == "import_too_large"
    with pytest.raises(ImportTooLarge, match="2"):
        imports.start_import(admin, io.BytesIO(csv_bytes(rows)), "仪器.csv")
    path = tmp_path / "rows.csv"
    path.write_bytes(csv_bytes(rows))
    result = app.test_cli_runner().invoke(args=["catalog", "import", str(path)])
    assert result.exit_code != 0 and "IMPORT_MAX_ROWS=2" in result.output
    assert db.session.scalars(select(CatalogImport.state)).all() == [ImportState.INVALID, ImportState.INVALID]


def test_a_zip_bomb_on_the_form_is_said_under_the_file_field(app, client, make_user, zip_bomb):
    login(client, make_user(Role.ADMIN).username)
    page = client.get("/admin/imports")
    response = client.post(
        "/admin/imports",
        data={
            "file": (io.BytesIO(zip_bomb.read_bytes()), "仪器.xlsx"),
            "csrf_token": extract_csrf(page.text),
        },
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "invalid-feedback" in html
    assert "该工作簿解压后为 400 MB，超过允许的 128 MB。" in html


def test_import_too_large_is_a_stable_code():
    assert ImportTooLarge.code == "import_too_large"
