"""Static files under hashed names, compressed, cached for a year (portal.core.assets, WhiteNoise)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import brotli
import pytest
from flask import Flask, url_for

from portal.core import assets
from tests.conftest import make_app

STATIC_URL = re.compile(r'(?:href|src)="(/(?:bootstrap/)?static/[^"]+)"')
HASHED = re.compile(r"\.[0-9a-f]{12}\.[a-z0-9]+$")


def static_urls(html: str) -> list[str]:
    return STATIC_URL.findall(html)


def source_of(app: Flask, url: str) -> Path:
    """The file in the source tree that a hashed URL stands for."""
    manifest: assets.Manifest = app.extensions["assets"]
    for endpoint, folder, prefix in (
        ("static", app.static_folder, "/static/"),
        ("bootstrap.static", app.blueprints["bootstrap"].static_folder, "/bootstrap/static/"),
    ):
        for name, hashed in manifest.names[endpoint].items():
            if url == prefix + hashed:
                return Path(folder) / name
    raise AssertionError(f"{url} is in no manifest")


@pytest.fixture
def built_app(database_url: str, tmp_path: Path):
    """The portal with an empty build folder of its own, as in a fresh clone."""
    app = make_app(database_url, STATIC_BUILD_FOLDER=str(tmp_path / "build"))
    with app.app_context():
        yield app


@pytest.mark.parametrize("path", ["/instruments/", "/login"])
def test_every_static_file_a_page_names_has_a_hashed_name(built_app, path):
    urls = static_urls(built_app.test_client().get(path).get_data(as_text=True))
    names = {re.sub(r"\.[0-9a-f]{12}(?=\.[a-z0-9]+$)", "", url) for url in urls}
    assert names >= {
        "/static/css/portal.css",
        "/static/js/portal.js",
        "/static/favicon.svg",
        "/bootstrap/static/css/bootstrap.min.css",
        "/bootstrap/static/js/bootstrap.min.js",
    }
    unhashed = [url for url in urls if not HASHED.search(url)]
    assert not unhashed, f"static files without a hashed name (add them to assets.FINGERPRINTED): {unhashed}"


def test_a_hashed_file_is_kept_a_year_and_sent_compressed_when_asked(built_app):
    client = built_app.test_client()
    urls = static_urls(client.get("/instruments/").get_data(as_text=True))
    assert len(urls) >= 5
    for url in urls:
        original = source_of(built_app, url).read_bytes()
        plain = client.get(url)
        assert plain.status_code == 200, url
        assert plain.headers["Cache-Control"] == "max-age=31536000, public, immutable"
        assert "Content-Encoding" not in plain.headers
        assert plain.data == original
        if url.endswith(".svg") and len(original) < 400:
            continue  # too small for compression to pay
        assert plain.headers["Vary"] == "Accept-Encoding"
        zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert len(zipped.data) < len(original)
        assert gzip.decompress(zipped.data) == original
        squeezed = client.get(url, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert squeezed.headers["Content-Encoding"] == "br"
        assert brotli.decompress(squeezed.data) == original


def test_the_build_folder_holds_each_file_with_its_compressed_copies(built_app):
    root = Path(built_app.config["STATIC_BUILD_FOLDER"])
    css = (
        root
        / "bootstrap"
        / "static"
        / built_app.extensions["assets"].names["bootstrap.static"]["css/bootstrap.min.css"]
    )
    assert css.is_file()
    assert css.with_name(css.name + ".gz").is_file() and css.with_name(css.name + ".br").is_file()
    assert not list(root.rglob("*.tmp")), "temporary files are written beside the build folder, not in it"


def test_a_name_without_hash_is_still_served_but_revalidated(built_app):
    response = built_app.test_client().get("/static/css/portal.css")
    assert response.status_code == 200
    assert "immutable" not in response.headers.get("Cache-Control", "")


def _tiny_app(static: Path, build: Path) -> Flask:
    app = Flask("tiny", static_folder=str(static), instance_path=str(build.parent))
    app.config["STATIC_BUILD_FOLDER"] = str(build)
    assets.init_app(app)
    return app


def _url(app: Flask, filename: str) -> str:
    with app.test_request_context():
        return url_for("static", filename=filename)


def test_a_changed_file_gets_a_new_name_and_the_old_name_still_works(tmp_path):
    static, build = tmp_path / "static", tmp_path / "build"
    (static / "css").mkdir(parents=True)
    (static / "css" / "site.css").write_text("body { color: black; }\n" * 40)
    before = _url(_tiny_app(static, build), "css/site.css")
    assert re.fullmatch(r"/static/css/site\.[0-9a-f]{12}\.css", before)
    assert _url(_tiny_app(static, build), "css/site.css") == before  # same content, same name

    (static / "css" / "site.css").write_text("body { color: navy; }\n" * 40)
    restarted = _tiny_app(static, build)
    after = _url(restarted, "css/site.css")
    assert after != before
    client = restarted.test_client()
    assert client.get(after).data == (static / "css" / "site.css").read_bytes()
    # A page rendered before the change (by another process, or cached) still finds its file.
    assert client.get(before).data == b"body { color: black; }\n" * 40
    assert client.get(before).headers["Cache-Control"] == "max-age=31536000, public, immutable"


def test_a_cached_catalogue_page_is_not_served_once_the_static_files_changed(built_app):
    client = built_app.test_client()
    first = client.get("/instruments/").get_data(as_text=True)
    manifest: assets.Manifest = built_app.extensions["assets"]
    names = {endpoint: dict(files) for endpoint, files in manifest.names.items()}
    names["static"]["css/portal.css"] = "css/portal.0123456789ab.css"
    built_app.extensions["assets"] = changed = assets.Manifest.of(names)
    hooks = built_app.url_default_functions[None]
    hooks[hooks.index(manifest.url_defaults)] = changed.url_defaults
    second = client.get("/instruments/").get_data(as_text=True)
    assert "/static/css/portal.0123456789ab.css" not in first
    assert "/static/css/portal.0123456789ab.css" in second


def test_a_build_folder_that_cannot_be_written_leaves_the_plain_names(tmp_path, caplog):
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_text("body { color: black; }\n" * 40)
    blocked = tmp_path / "build"
    blocked.write_text("a file where the folder should be")
    app = _tiny_app(static, blocked)
    assert _url(app, "site.css") == "/static/site.css"
    assert app.test_client().get("/static/site.css").status_code == 200
    assert "without a hashed name" in caplog.text
