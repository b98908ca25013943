"""The tests compile each URL rule once per process (tests/routing_memo.py): an app made that way routes
and builds every URL exactly as one whose rules werkzeug compiled itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from portal import create_app
from tests import routing_memo


def _app() -> Flask:
    return create_app("testing", {"SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.fixture
def apps() -> Iterator[tuple[Flask, Flask]]:
    _app()  # the memo holds every rule now
    memoized = _app()
    routing_memo.uninstall()
    try:
        compiled = _app()
    finally:
        routing_memo.install()
    yield memoized, compiled


def _state(app: Flask) -> list[tuple]:
    return [
        (
            rule.rule,
            rule.endpoint,
            sorted(rule.methods or ()),
            rule._trace,
            rule._parts,
            sorted(rule.arguments),
            {name: type(converter) for name, converter in rule._converters.items()},
        )
        for rule in app.url_map.iter_rules()
    ]


def _values(rule) -> dict[str, str]:
    """A value for each variable part that every converter of the app accepts."""
    return {name: "1" for name in rule.arguments if name not in (rule.defaults or {})}


def test_every_rule_has_the_state_werkzeug_compiles(apps) -> None:
    memoized, compiled = apps
    assert len(_state(memoized)) > 100
    assert _state(memoized) == _state(compiled)


def test_every_rule_builds_and_matches_the_same_url(apps) -> None:
    memoized, compiled = apps
    ours, theirs = (app.url_map.bind("localhost") for app in apps)
    for rule in memoized.url_map.iter_rules():
        method = sorted((rule.methods or {"GET"}) - {"HEAD", "OPTIONS"})[0]
        url = ours.build(rule.endpoint, _values(rule), method=method)
        assert url == theirs.build(rule.endpoint, _values(rule), method=method), rule.rule
        # An unknown value goes to the query string, or not, by which of the rule's builders runs.
        for append in (True, False):
            values = {**_values(rule), "extra": "2"}
            built = ours.build(rule.endpoint, values, method=method, append_unknown=append)
            assert built == theirs.build(rule.endpoint, values, method=method, append_unknown=append)
            assert ("extra=2" in built) is append, built
        # A built URL of one rule is matched by both apps to the same endpoint and values.
        assert ours.match(url, method=method) == theirs.match(url, method=method), url
    assert compiled is not memoized
