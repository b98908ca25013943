"""Which backend runs which test (tests/conftest.py): PostgreSQL everything, SQLite the modules
marked both_backends and the browser tests, TEST_BACKENDS to choose otherwise."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import conftest


class Item(SimpleNamespace):
    def get_closest_marker(self, name: str):
        return name if name in self.markers else None


def item(nodeid: str, backend: str | None, *markers: str) -> Item:
    callspec = None if backend is None else SimpleNamespace(params={"database_url": backend, "n": 3})
    return Item(nodeid=nodeid, callspec=callspec, markers=markers)


def kept(items: list[Item]) -> tuple[list[str], list[str]]:
    dropped: list[str] = []
    config = SimpleNamespace(hook=SimpleNamespace(pytest_deselected=lambda items: dropped.extend(items)))
    conftest.pytest_collection_modifyitems(config, items)
    return [f"{i.nodeid}[{i.callspec.params['database_url'] if i.callspec else '-'}]" for i in items], [
        i.nodeid for i in dropped
    ]


def world() -> list[Item]:
    return [
        item("tests/test_backend_choice.py::t", "sqlite"),
        item("tests/test_backend_choice.py::t", "postgresql"),
        item("tests/test_vouchers.py::t", "sqlite", "both_backends"),
        item("tests/test_vouchers.py::t", "postgresql", "both_backends"),
        item("tests/e2e/test_journey.py::t", "sqlite"),
        item("tests/test_core_units.py::t", None),
    ]


def test_postgresql_runs_everything_and_sqlite_the_marked_modules_and_browser_tests(monkeypatch):
    monkeypatch.setenv("TEST_BACKENDS", "postgresql")
    shown, dropped = kept(world())
    assert sorted(shown) == sorted(
        [
            "tests/test_backend_choice.py::t[postgresql]",
            "tests/test_vouchers.py::t[sqlite]",
            "tests/test_vouchers.py::t[postgresql]",
            "tests/e2e/test_journey.py::t[sqlite]",
            "tests/test_core_units.py::t[-]",
        ]
    )
    assert dropped == ["tests/test_backend_choice.py::t"]


def test_both_backends_on_request_and_a_misspelt_one_refused(monkeypatch):
    monkeypatch.setenv("TEST_BACKENDS", "sqlite,postgresql")
    shown, dropped = kept(world())
    assert len(shown) == 6 and dropped == []
    monkeypatch.setenv("TEST_BACKENDS", "sqlite,postgres")
    with pytest.raises(pytest.UsageError, match="postgres"):
        conftest.every_test_backends()


def test_without_postgresql_the_suite_runs_on_sqlite(monkeypatch):
    monkeypatch.delenv("TEST_BACKENDS", raising=False)
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", False)
    monkeypatch.setattr(conftest, "_pg_reachable", lambda: False)
    assert conftest.every_test_backends() == ("sqlite",)
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", True)  # CI: its absence fails the PostgreSQL tests
    assert conftest.every_test_backends() == ("postgresql",)
