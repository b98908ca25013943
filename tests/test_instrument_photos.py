"""Instrument photos: checked by content and size (a decompression bomb is never decoded), re-encoded by
Pillow without metadata and turned upright, with a thumbnail; stored under UPLOAD_FOLDER with our own
names, served with cache headers, shown in the catalogue; added, made main and deleted by the owners."""

from __future__ import annotations

import io
import random
import re
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageFile, PngImagePlugin
from sqlalchemy import select

from portal.catalog import editing
from portal.catalog.models import InstrumentPhoto
from portal.catalog.services import catalog_version
from portal.core.errors import NotFound, ValidationFailed
from portal.core.models import AuditEvent
from portal.core.permissions import Role
from portal.extensions import db
from tests.factories import extract_csrf, login


def picture(fmt: str = "JPEG", size=(800, 600), *, mode: str = "RGB", **save) -> bytes:
    """An image with a marked top-left corner (to see which way up it was stored)."""
    image = Image.new(mode, size, "white" if mode != "RGBA" else (255, 255, 255, 0))
    image.paste("red" if mode != "RGBA" else (255, 0, 0, 255), (0, 0, size[0] // 4, size[1] // 4))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def camera_jpeg() -> bytes:
    """A photo as a phone takes it: EXIF with the camera, the GPS position and 'rotate 90° to view'."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "CanonSecretMake"
    exif[ExifTags.Base.Orientation] = 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({1: "N", 2: (36.0, 27.0, 0.0), 3: "E", 4: (115.0, 58.0, 0.0)})
    return picture("JPEG", (800, 600), exif=exif, comment=b"secret comment")


def png_claiming(width: int, height: int, *, mode_l_rows: bool = False) -> bytes:
    """A PNG whose header claims this size; with mode_l_rows, real (all-zero) grey rows that unpack to
    width x height bytes from a few kilobytes: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0 if mode_l_rows else 2, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    if mode_l_rows:
        row = b"\x00" * (width + 1)
        data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    else:
        data = zlib.compress(b"\x00" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.fixture
def world(app, make_institution, make_instrument, make_user):
    host = make_institution()
    return {
        "instrument": make_instrument(institution=host),
        "other": make_instrument(),
        "provider": make_user(Role.PROVIDER, institution=host),
        "other_provider": make_user(Role.PROVIDER),
        "admin": make_user(Role.ADMIN),
    }


def upload(client, code: str, data: bytes, name: str = "照片.jpg", caption: str = "正面"):
    page = client.get(f"/manage/instruments/{code}/record")
    return client.post(
        f"/manage/instruments/{code}/photos",
        data={
            "csrf_token": extract_csrf(page.get_data(as_text=True)),
            "photo-file": (io.BytesIO(data), name),
            "photo-caption": caption,
        },
        content_type="multipart/form-data",
    )


def photos_of(instrument) -> list[InstrumentPhoto]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(InstrumentPhoto)
            .where(InstrumentPhoto.instrument_id == instrument.id)
            .order_by(InstrumentPhoto.id)
        )
    )


def stored(app) -> set[str]:
    root = Path(app.config["UPLOAD_FOLDER"])
    return {p.name for p in root.iterdir()} if root.exists() else set()


def opened(app, name: str) -> Image.Image:
    return Image.open(Path(app.config["UPLOAD_FOLDER"]) / name)


def test_a_phone_photo_is_stored_upright_without_its_metadata_and_with_a_thumbnail(app, client, world):
    login(client, world["provider"].username)
    original = camera_jpeg()
    response = upload(client, world["instrument"].code, original, "IMG_0001.png")  # the name says nothing
    assert response.status_code == 302
    (photo,) = photos_of(world["instrument"])
    assert photo.is_main and photo.caption == "正面" and photo.content_type == "image/jpeg"
    assert (photo.width, photo.height) == (600, 800)  # turned upright
    display = opened(app, photo.stored_name)
    assert display.format == "JPEG" and display.size == (600, 800)
    assert display.getpixel((display.width - 20, 20))[0] > 200 > display.getpixel((display.width - 20, 20))[1]
    assert dict(display.getexif()) == {} and "comment" not in display.info
    raw = (Path(app.config["UPLOAD_FOLDER"]) / photo.stored_name).read_bytes()
    assert b"CanonSecretMake" not in raw and b"Exif" not in raw and b"secret comment" not in raw
    assert opened(app, photo.thumbnail_name).size == (320, 240)
    assert re.fullmatch(r"photo-[0-9a-f]{32}\.jpg", photo.stored_name)
    static = Path(app.static_folder).resolve()
    assert static not in (Path(app.config["UPLOAD_FOLDER"]) / photo.stored_name).resolve().parents
    (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "instrument.photo_added"))
    assert event.object_id == world["instrument"].code and event.actor_id == world["provider"].id


def test_a_transparent_png_stays_png_and_webp_becomes_jpeg(app, world):
    png = editing.add_photo(
        world["provider"], world["instrument"].code, io.BytesIO(picture("PNG", mode="RGBA")), ""
    )
    webp = editing.add_photo(world["provider"], world["instrument"].code, io.BytesIO(picture("WEBP")), None)
    assert (png.content_type, opened(app, png.stored_name).mode) == ("image/png", "RGBA")
    assert png.caption is None and not webp.is_main
    assert (webp.content_type, opened(app, webp.stored_name).format) == ("image/jpeg", "JPEG")


def test_png_text_chunks_do_not_survive(app, world):
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "secret author")
    photo = editing.add_photo(
        world["provider"], world["instrument"].code, io.BytesIO(picture("PNG", pnginfo=info)), ""
    )
    assert b"secret author" not in (Path(app.config["UPLOAD_FOLDER"]) / photo.stored_name).read_bytes()


HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
# (what it is, its bytes, its name, a piece of the message)
REFUSED = [
    ("HTML renamed .png", HTML, "instrument.png", "只接受 JPEG、PNG 或 WebP"),
    ("a PDF/HTML polyglot", b"%PDF-1.4\n" + HTML, "instrument.png", "只接受 JPEG、PNG 或 WebP"),
    ("a PNG signature before HTML", b"\x89PNG\r\n\x1a\n" + HTML, "instrument.png", "无法将该文件读取"),
    ("a JPEG cut short", camera_jpeg()[:300], "instrument.jpg", "无法将该文件读取"),
    ("a GIF", b"GIF89a" + b"\x00" * 100, "instrument.gif", "只接受 JPEG、PNG 或 WebP"),
    ("a Windows program", b"MZ\x90\x00" + b"\x00" * 100, "instrument.jpg", "只接受 JPEG、PNG 或 WebP"),
    ("an empty file", b"", "instrument.jpg", "文件为空"),
    ("a tiny picture", picture("PNG", (60, 40)), "instrument.png", "太小"),
    ("a header claiming 10,000 megapixels", png_claiming(100_000, 100_000), "bomb.png", "像素过多"),
]


def test_what_is_not_a_photo_is_refused_with_a_clear_message_and_nothing_is_kept(app, client, world):
    login(client, world["provider"].username)
    version = catalog_version()
    for what, data, name, says in REFUSED:
        response = upload(client, world["instrument"].code, data, name, caption="我的说明")
        page = response.get_data(as_text=True)
        assert response.status_code == 200, what
        field = re.search(r'<input[^>]*name="photo-file"[^>]*>', page).group(0)
        assert "is-invalid" in field, what
        assert says in page.split('name="photo-file"', 1)[1][:800], what
        assert 'value="我的说明"' in page, what  # the caption typed is kept
    assert photos_of(world["instrument"]) == [] and stored(app) == set()
    assert (
        db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "instrument.photo_added")) is None
    )
    db.session.rollback()
    assert catalog_version() == version


def test_a_decompression_bomb_is_refused_without_being_decoded(app, world, monkeypatch):
    bomb = png_claiming(8000, 6000, mode_l_rows=True)  # 48 megapixels from about 50 KB
    assert len(bomb) < 100_000

    def never(*_args, **_kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    with pytest.raises(ValidationFailed) as refused:
        editing.add_photo(world["provider"], world["instrument"].code, io.BytesIO(bomb), "")
    assert "48.0" in refused.value.message and "40" in refused.value.message
    assert stored(app) == set()


def test_a_file_over_the_size_limit_is_refused(app, client, world):
    app.config["PHOTO_MAX_BYTES"] = 1024 * 1024
    noisy = Image.frombytes("RGB", (1000, 1000), random.Random(1).randbytes(3_000_000))
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    assert buffer.tell() > 1024 * 1024
    login(client, world["provider"].username)
    page = upload(client, world["instrument"].code, buffer.getvalue(), "big.png").get_data(as_text=True)
    assert "文件超过 1 MB" in page
    assert photos_of(world["instrument"]) == [] and stored(app) == set()


def test_a_picture_with_html_appended_is_kept_as_the_picture_only(app, world):
    polyglot = picture("PNG") + HTML
    photo = editing.add_photo(world["provider"], world["instrument"].code, io.BytesIO(polyglot), "")
    assert b"<script" not in (Path(app.config["UPLOAD_FOLDER"]) / photo.stored_name).read_bytes()


def test_a_long_caption_is_refused(client, world):
    login(client, world["provider"].username)
    page = upload(client, world["instrument"].code, picture(), caption="长" * 201).get_data(as_text=True)
    assert "200" in page and photos_of(world["instrument"]) == []


def test_an_instrument_holds_a_limited_number_of_photos(client, world, monkeypatch):
    monkeypatch.setattr(editing, "MAX_PHOTOS", 2)
    for _ in range(2):
        editing.add_photo(world["provider"], world["instrument"].code, io.BytesIO(picture()), None)
    with pytest.raises(ValidationFailed, match="2"):
        editing.add_photo(world["provider"], world["instrument"].code, io.BytesIO(picture()), None)
    assert len(photos_of(world["instrument"])) == 2


# --- the main photo, deleting -----------------------------------------------------------------------


def action(client, code: str, photo_id: int, what: str):
    page = client.get(f"/manage/instruments/{code}/record")
    token = extract_csrf(page.get_data(as_text=True))
    return client.post(f"/manage/instruments/{code}/photos/{photo_id}/{what}", data={"csrf_token": token})


def test_choosing_the_main_photo_and_deleting_photos(app, client, world):
    code = world["instrument"].code
    first, second, third = (
        editing.add_photo(world["provider"], code, io.BytesIO(picture()), f"第{n}张") for n in range(3)
    )
    assert [p.is_main for p in photos_of(world["instrument"])] == [True, False, False]
    login(client, world["provider"].username)
    assert action(client, code, second.id, "main").status_code == 302
    assert [p.is_main for p in photos_of(world["instrument"])] == [False, True, False]
    files, names = stored(app), {second.stored_name, second.thumbnail_name}
    assert action(client, code, second.id, "delete").status_code == 302
    remaining = photos_of(world["instrument"])
    assert [(p.id, p.is_main) for p in remaining] == [
        (first.id, True),
        (third.id, False),
    ]  # the oldest takes over
    assert files - stored(app) == names
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == code)).all()
    assert (
        actions.count("instrument.main_photo_chosen") == 1 and actions.count("instrument.photo_removed") == 1
    )


def test_another_institution_finds_neither_the_instrument_nor_its_photos(app, client, world):
    code = world["instrument"].code
    photo = editing.add_photo(world["provider"], code, io.BytesIO(picture()), None)
    other = editing.add_photo(world["admin"], world["other"].code, io.BytesIO(picture()), None)
    files = stored(app)
    login(client, world["other_provider"].username)
    token = extract_csrf(client.get("/account").get_data(as_text=True))
    for what in ("main", "delete"):
        response = client.post(
            f"/manage/instruments/{code}/photos/{photo.id}/{what}", data={"csrf_token": token}
        )
        assert response.status_code == 404
    response = client.post(
        f"/manage/instruments/{code}/photos",
        data={"csrf_token": token, "photo-file": (io.BytesIO(picture()), "x.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 404
    # Nor does a photo of another instrument turn up under one's own.
    with pytest.raises(NotFound):
        editing.delete_photo(world["provider"], code, other.id)
    assert len(photos_of(world["instrument"])) == 1 and stored(app) == files


# --- serving and showing ------------------------------------------------------------------------------


def test_photos_are_served_by_their_own_route_with_cache_headers(app, client, world):
    photo = editing.add_photo(world["provider"], world["instrument"].code, io.BytesIO(picture()), None)
    url = f"/instruments/{world['instrument'].code}/photos/{photo.thumbnail_name}"
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(response.data)).size == (320, 240)
    assert response.headers["Cache-Control"] == f"public, max-age={app.config['PHOTO_CACHE_SECONDS']}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(url, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    for wrong in (
        f"/instruments/{world['other'].code}/photos/{photo.thumbnail_name}",  # not that instrument's
        f"/instruments/{world['instrument'].code}/photos/photo-{'0' * 32}.jpg",
        f"/instruments/{world['instrument'].code}/photos/..%2F..%2Fconfig.py",
    ):
        assert client.get(wrong).status_code == 404, wrong


def test_the_catalogue_shows_the_photos_with_alt_text_at_once(client, world):
    instrument = world["instrument"]
    listing = f"/instruments/?q={instrument.code}"
    assert "catalog-thumbnail" not in client.get(listing).get_data(as_text=True)  # now cached for visitors
    photo = editing.add_photo(world["provider"], instrument.code, io.BytesIO(picture()), "样品仓")
    thumbnail = f"/instruments/{instrument.code}/photos/{photo.thumbnail_name}"
    page = client.get(listing).get_data(as_text=True)
    # The list's thumbnail sits beside the instrument's name, which is its link: it is decorative
    # (an empty alt), so a screen reader does not read the name twice.
    assert re.search(rf'<img class="catalog-thumbnail[^>]*src="{thumbnail}"[^>]*alt=""', page)
    detail = client.get(f"/instruments/{instrument.code}").get_data(as_text=True)
    assert re.search(
        rf'<img [^>]*src="/instruments/{instrument.code}/photos/{photo.stored_name}"[^>]*alt="样品仓"', detail
    )
    record = client.get(f"/api/v1/instruments/{instrument.code}").json
    assert record["photos"] == [
        {
            "id": photo.id,
            "url": f"/instruments/{instrument.code}/photos/{photo.stored_name}",
            "thumbnail_url": thumbnail,
            "width": 800,
            "height": 600,
            "caption": "样品仓",
            "is_main": True,
        }
    ]
    assert (
        client.get(f"/api/v1/instruments?q={instrument.code}").json["items"][0]["thumbnail_url"] == thumbnail
    )


def test_search_results_with_photos_are_made_outside_a_request_too(world):
    """The benchmarks and other scripts search with only an application context."""
    from portal.catalog.services import InstrumentQuery, search_instruments

    code = world["instrument"].code
    photo = editing.add_photo(world["provider"], code, io.BytesIO(picture()), None)
    (item,) = search_instruments(InstrumentQuery(q=code)).items
    assert item["thumbnail_url"] == f"/instruments/{code}/photos/{photo.thumbnail_name}"
