"""Hostile input stops at the door: control characters and oversized ids never reach a query.

PostgreSQL refuses NUL in text, XLSX (XML) refuses the other C0 control characters, and a path id
beyond a database integer overflows the driver: each would surface as a 500 deep inside a service.
Text from forms, query strings and JSON bodies loses those characters here (tab and line breaks
stay), path segments containing them match no route, and integer path segments are bounded.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Request, request
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.routing import IntegerConverter, Map, UnicodeConverter

from portal.core.text import strip_control

DATABASE_INT_MAX = 2**31 - 1
MAX_PAGE = 100_000


class CleanParameters(ImmutableMultiDict):
    """Form fields and query parameters with control characters removed from names and values."""

    def __init__(self, mapping: Any = None) -> None:
        if isinstance(mapping, list | tuple) or hasattr(mapping, "__next__"):
            mapping = [(strip_control(k), strip_control(v) if isinstance(v, str) else v) for k, v in mapping]
        super().__init__(mapping)


class PortalRequest(Request):
    parameter_storage_class = CleanParameters


class RowIdConverter(IntegerConverter):
    """`<int:…>` everywhere: a number beyond the databases' integer ids matches no route (404)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", DATABASE_INT_MAX)
        super().__init__(url_map, *args, **kwargs)


class TextSegmentConverter(UnicodeConverter):
    """`<code>` everywhere: a path segment with a control character in it matches no route (404)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, *args, **kwargs)
        self.regex = self.regex.replace("[^/]", r"[^/\x00-\x1f]", 1)


def init_app(app: Flask) -> None:
    """Install the request class and converters (before any blueprint: rules bind converters when added)."""
    app.request_class = PortalRequest
    app.url_map.converters.update(
        int=RowIdConverter, default=TextSegmentConverter, string=TextSegmentConverter
    )


def page_number() -> int:
    """The ?page= of a list: 1 to 100,000, else the first (a huge number would overflow the OFFSET)."""
    page = request.args.get("page", 1, type=int) or 1
    return page if 1 <= page <= MAX_PAGE else 1


def clean_json(value: Any) -> Any:
    """A parsed JSON document with control characters (and unpaired surrogates) removed from every string."""
    if isinstance(value, str):
        return strip_control(value)
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    if isinstance(value, dict):
        return {strip_control(key): clean_json(item) for key, item in value.items()}
    return value
