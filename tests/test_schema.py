"""The schema comes only from migrations: they match the models on both backends and can be undone."""

from __future__ import annotations

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portal.core.audit import record
from portal.extensions import db

pytestmark = pytest.mark.both_backends  # the backend's own paths: see tests/conftest.py


def test_migrations_match_the_models(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    # Expression indexes are invisible to autogenerate, and the GIN index exists only on PostgreSQL.
    ignored = {"uq_users_username_lower"}
    if db.engine.dialect.name == "sqlite":
        ignored.add("ix_instruments_search_grams")
    diff = [d for d in diff if not (d[0] in ("add_index", "remove_index") and d[1].name in ignored)]
    assert diff == []


def test_audit_rows_cannot_be_changed_or_deleted_even_with_raw_sql(app):
    record("test.event", "thing", 1)
    db.session.commit()
    for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            db.session.execute(sa.text(statement))
        db.session.rollback()
    assert db.session.execute(sa.text("SELECT action FROM audit_events")).scalars().all() == ["test.event"]


def test_the_expression_index_autogenerate_cannot_see_exists(app):
    inspector_sql = {
        "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'users'",
        "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'users'",
    }[db.engine.dialect.name]
    assert "uq_users_username_lower" in db.session.execute(sa.text(inspector_sql)).scalars().all()


def test_usernames_are_unique_regardless_of_case(app, make_user):
    make_user(username="Admin2")
    with pytest.raises(sa.exc.IntegrityError):
        make_user(username="admin2")
    db.session.rollback()


def test_downgrade_and_upgrade_again(app):
    flask_migrate.downgrade(revision="base")
    tables = sa.inspect(db.engine).get_table_names()
    assert set(tables) <= {"alembic_version"}
    flask_migrate.upgrade()
    assert "instruments" in sa.inspect(db.engine).get_table_names()
