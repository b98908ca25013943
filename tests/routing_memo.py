"""Werkzeug compiles each URL rule when an app registers it: about 40 ms of the 45 an app costs to make,
and the suite makes an app for nearly every test (some 3,000). The rules are the same in every app,
so the tests compile each distinct rule once per process and give later copies the same compiled
state. What a rule matches and builds is werkzeug's own result either way:
`tests/test_routing_memo.py` compares an app made with the memo to one made without, rule by rule.
"""

from __future__ import annotations

from typing import Any

from werkzeug.routing import Rule

_compile = Rule.compile
_compiled: dict[tuple, Rule] = {}


def _key(rule: Rule) -> tuple | None:
    """Everything `Rule.compile` reads, or None when a part cannot be compared (then no memo)."""
    try:
        defaults = tuple(sorted((rule.defaults or {}).items()))
        converters = tuple(sorted(rule.map.converters.items()))
        hash((defaults, converters))
    except TypeError:
        return None
    return (
        rule.rule,
        rule.map.host_matching,
        rule.host,
        rule.subdomain,
        rule.merge_slashes,
        defaults,
        frozenset(rule.arguments),
        converters,
    )


def _memo_compile(rule: Rule) -> None:
    key = _key(rule)
    done = _compiled.get(key) if key is not None else None
    if done is None:
        _compile(rule)
        if key is not None:
            _compiled[key] = rule
        return
    rule._parts = list(done._parts)
    rule._trace = list(done._trace)
    rule._converters = dict(done._converters)
    rule.arguments = set(done.arguments)
    # The builders are functions werkzeug generated for the rule, bound to it: bind them to this one.
    builders: Any = (done._build, done._build_unknown)
    rule._build = builders[0].__func__.__get__(rule, None)
    rule._build_unknown = builders[1].__func__.__get__(rule, None)


def install() -> None:
    Rule.compile = _memo_compile  # type: ignore[method-assign]


def uninstall() -> None:
    Rule.compile = _compile  # type: ignore[method-assign]
