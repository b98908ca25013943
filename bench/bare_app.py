"""The baseline for the catalogue throughput case: a bare Flask app that returns one constant page.

    BARE_PAGE_BYTES=30000 .venv/bin/gunicorn bench.bare_app:app

The page is built once at import, about as large as the search page it stands in for, so the
baseline pays for the same bytes on the wire and nothing else (no database, templates, forms or
extensions).
"""

from __future__ import annotations

import os

from flask import Flask, Response

ROW = (
    '<tr><td><a href="/instruments/LC{n:06d}">气相色谱-质谱联用仪 {n}</a></td>'
    "<td>东昌府区</td><td>正常</td></tr>\n"
)


def page(size: int) -> bytes:
    """A well-formed HTML page of `size` bytes (give or take one row), made of table rows."""
    head = (
        b'<!doctype html>\n<html lang="zh"><head><meta charset="utf-8"><title>bare</title></head>'
        b"<body><table>\n"
    )
    tail = b"</table></body></html>\n"
    rows: list[bytes] = []
    length = len(head) + len(tail)
    n = 0
    while length < size:
        row = ROW.format(n=n).encode()
        rows.append(row)
        length += len(row)
        n += 1
    return head + b"".join(rows) + tail


def create_app(size: int | None = None) -> Flask:
    """The bare app; `size` defaults to BARE_PAGE_BYTES (the runner sets it to the search page's size)."""
    body = page(size if size is not None else int(os.environ.get("BARE_PAGE_BYTES", "30000")))
    app = Flask(__name__)

    @app.get("/")
    def constant() -> Response:
        return Response(body, mimetype="text/html")

    return app


app = create_app()
