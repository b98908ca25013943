"""Static files under names that carry their content's hash, compressed, cached by browsers for a year.

When an app is built, each file of the app's static folder and each Bootstrap file the pages load is
copied into the build folder (`STATIC_BUILD_FOLDER`) under a name with a hash of its content
(`css/portal.css` becomes `css/portal.1f0c9a3b5d7e.css`), with a gzip and a Brotli copy beside it.
`url_for("static", ...)` and Bootstrap-Flask's `url_for("bootstrap.static", ...)` give that name, and
WhiteNoise serves the build folder in front of the application with `Cache-Control: max-age=31536000,
public, immutable` and the smallest copy the browser accepts: a page viewed again asks for none of its
files, and a changed file is fetched at once because its name changed. The folder only ever gains
files, and each is written whole under a temporary name first, so web processes starting together (and
the test processes) may build into the same folder, and a page rendered by an older process still finds
its files. Names without a hash are still served, by Flask, as before.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brotli
from flask import Flask, current_app
from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

from portal.core.web import security_headers

logger = logging.getLogger(__name__)

ONE_YEAR = 365 * 24 * 3600

# The static endpoints whose files get hashed names, with the files meant (None: all of the folder).
# Bootstrap-Flask's folder holds every Bootstrap version and theme (tens of megabytes); the pages load
# these three (base.html: bootstrap.load_css() and load_js()), and tests/test_static_files.py fails if
# a page refers to any static file without a hash.
FINGERPRINTED: dict[str, tuple[str, ...] | None] = {
    "static": None,
    "bootstrap.static": ("css/bootstrap.min.css", "js/bootstrap.min.js", "umd/popper.min.js"),
}
HASH_LENGTH = 12
_COMPRESSIBLE = Compressor(quiet=True)


@dataclass(frozen=True)
class Manifest:
    """Each static endpoint's file names and the hashed names they are served under."""

    names: dict[str, dict[str, str]]
    # Changes whenever a file does: part of the key of cached pages, which name the files.
    digest: str

    @classmethod
    def of(cls, names: dict[str, dict[str, str]]) -> Manifest:
        listing = "\n".join(
            f"{e} {n} {h}" for e, files in sorted(names.items()) for n, h in sorted(files.items())
        )
        return cls(names, hashlib.sha256(listing.encode()).hexdigest()[:HASH_LENGTH])

    def url_defaults(self, endpoint: str, values: dict[str, Any]) -> None:
        """Flask's url_defaults hook: a static file's name becomes its hashed name."""
        names = self.names.get(endpoint)
        if names is not None and "filename" in values:
            values["filename"] = names.get(values["filename"], values["filename"])


class StaticFiles(WhiteNoise):
    """WhiteNoise serving the build folder, with a year's cache and the application's protective headers.

    No `Access-Control-Allow-Origin: *` (WhiteNoise's default): the files are for the portal's own pages.
    """

    FOREVER = ONE_YEAR

    def __init__(self, application: Callable[..., Any], root: Path, headers: list[tuple[str, str]]) -> None:
        # Every file in the folder has a hashed name, so every one is immutable.
        super().__init__(
            application, max_age=None, allow_all_origins=False, immutable_file_test=lambda path, url: True
        )
        self.protective_headers = headers
        if root.is_dir():
            self.add_files(str(root), prefix="/")

    def serve(self, static_file: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Every answer (200, 304, 206, 405) carries the headers every page carries (CSP, nosniff, HSTS)."""

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            extra = [(name, value) for name, value in self.protective_headers if name.lower() not in present]
            return start_response(status, headers + extra, exc_info)

        return WhiteNoise.serve(static_file, environ, start)


def init_app(app: Flask) -> None:
    """Build the hashed copies, make url_for name them, and put WhiteNoise in front of the app."""
    root = Path(app.config.get("STATIC_BUILD_FOLDER") or Path(app.instance_path) / "static")
    manifest = build(app, root)
    app.extensions["assets"] = manifest
    app.url_defaults(manifest.url_defaults)
    # Werkzeug's documented way to wrap the WSGI application (mypy sees a method being replaced).
    app.wsgi_app = StaticFiles(  # type: ignore[method-assign]
        app.wsgi_app, root, security_headers(app.config)
    )


def digest() -> str:
    """The current app's manifest digest (see Manifest.digest)."""
    manifest: Manifest = current_app.extensions["assets"]
    return manifest.digest


def build(app: Flask, root: Path) -> Manifest:
    """Hash (and copy, the first time) every file FINGERPRINTED names; the manifest of their names."""
    names: dict[str, dict[str, str]] = {}
    for endpoint, files in FINGERPRINTED.items():
        source = _static_folder(app, endpoint)  # None: no such blueprint in this app
        prefix = _url_prefix(app, endpoint) if source is not None else None
        if source is None or prefix is None:
            continue
        names[endpoint] = {name: fingerprint(source, name, root, prefix) for name in _files(source, files)}
    return Manifest.of(names)


def _static_folder(app: Flask, endpoint: str) -> Path | None:
    blueprint, _, _ = endpoint.rpartition(".")
    owner = app.blueprints.get(blueprint) if blueprint else app
    folder = owner.static_folder if owner is not None else None
    return Path(folder) if folder else None


def _url_prefix(app: Flask, endpoint: str) -> str | None:
    """Where the endpoint's files are served: `/static/`, `/bootstrap/static/`."""
    rules = [rule.rule for rule in app.url_map.iter_rules() if rule.endpoint == endpoint]
    return rules[0].partition("<")[0] if rules else None


def _files(source: Path, files: tuple[str, ...] | None) -> Iterator[str]:
    if files is not None:
        yield from (name for name in files if (source / name).is_file())
        return
    for path in sorted(source.rglob("*")):
        if path.is_file():
            yield path.relative_to(source).as_posix()


# (source file, build folder) -> (mtime, size, hashed name): each app a test makes would otherwise
# read and hash Bootstrap again; a changed file (new mtime or size) is hashed again.
_known: dict[tuple[str, str], tuple[int, int, str]] = {}
_lock = threading.Lock()


def fingerprint(source: Path, name: str, root: Path, prefix: str) -> str:
    """The hashed name of `source/name`; the file (with compressed copies) is written into the build
    folder `root` under its URL, `prefix` + hashed name, unless it is there already."""
    path = source / name
    stat = path.stat()
    key = (str(path), str(root))
    known = _known.get(key)
    if known is not None and known[:2] == (stat.st_mtime_ns, stat.st_size):
        return known[2]
    data = path.read_bytes()
    hashed = hashed_name(name, data)
    out = root / prefix.strip("/") / hashed
    try:
        if not out.is_file():
            _write_copies(out, data, root.with_name(root.name + ".tmp"))
    except OSError as error:
        # A folder the process may not write: the page names the file as before (Flask serves it,
        # uncompressed, revalidated) rather than the portal failing to start.
        logger.warning("static file %s served without a hashed name: %s", path, error)
        return name
    with _lock:
        _known[key] = (stat.st_mtime_ns, stat.st_size, hashed)
    return hashed


def hashed_name(name: str, data: bytes) -> str:
    """`css/portal.css` -> `css/portal.<first 12 hex digits of the SHA-256 of data>.css`."""
    stem, dot, extension = name.rpartition(".")
    digest = hashlib.sha256(data).hexdigest()[:HASH_LENGTH]
    return f"{stem}.{digest}.{extension}" if dot and "/" not in extension else f"{name}.{digest}"


def _write_copies(out: Path, data: bytes, scratch: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # The compressed copies first: the hashed file's presence means its copies are complete.
    for suffix, packed in _compressed(out.name, data):
        _write_whole(out.with_name(out.name + suffix), packed, scratch)
    _write_whole(out, data, scratch)


def _compressed(name: str, data: bytes) -> Iterable[tuple[str, bytes]]:
    """Brotli and gzip copies worth keeping (5 % smaller at least, WhiteNoise's rule)."""
    if not data or not _COMPRESSIBLE.should_compress(name):
        return []
    copies = ((".br", brotli.compress(data)), (".gz", gzip.compress(data, compresslevel=9, mtime=0)))
    return [(suffix, packed) for suffix, packed in copies if len(packed) <= 0.95 * len(data)]


def _write_whole(path: Path, data: bytes, scratch: Path) -> None:
    """Write in the scratch folder, then rename: a reader sees no file or all of it. (Not in the build
    folder itself: a process scanning it would find the temporary file gone by the time it looks.)"""
    scratch.mkdir(parents=True, exist_ok=True)
    temporary = scratch / f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, path)
