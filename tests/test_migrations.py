"""`flask db upgrade` creates exactly the schema the models describe, on SQLite and PostgreSQL."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from app.schema import _scripts, code_revision, migrations_head
from tests.helpers import app_overrides


def schema_differences(app):
    differences = {}
    with app.app_context():
        upgrade()
        for bind_key, engine in db.engines.items():
            with engine.connect() as connection:
                context = MigrationContext.configure(connection)
                differences[bind_key] = compare_metadata(context, db.metadatas[bind_key])
                assert context.get_current_revision() == migrations_head()
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    return differences


def test_migrations_match_models_on_sqlite(tmp_path, redis_url):
    app = create_app("testing", app_overrides(tmp_path, redis_url))
    assert schema_differences(app) == {None: [], "platform": []}


@pytest.mark.postgres
def test_migrations_match_models_on_postgresql(tmp_path, redis_url, postgres_database):
    app = create_app("testing", app_overrides(tmp_path, redis_url, SQLALCHEMY_DATABASE_URI=postgres_database))
    assert schema_differences(app) == {None: [], "platform": []}


def test_a_platform_only_migration_does_not_change_the_store_schema_revision():
    # Archives are stamped with code_revision(): a migration that adds platform tables (schedules,
    # pins) must not make every existing backup "older schema"; one that changes store tables does.
    scripts = list(_scripts().walk_revisions())  # from the head down
    revisions = [script.revision for script in scripts]
    platform_only = {script.revision for script in scripts if not getattr(script.module, "STORE_SCHEMA_CHANGED", True)}
    assert code_revision() == "5d1e7a3c9b20"  # product slugs: the newest change to store tables
    assert migrations_head() == revisions[0]
    # Only platform-only migrations may sit above it; the ones below it did not move the store revision.
    assert set(revisions[:revisions.index("5d1e7a3c9b20")]) <= platform_only
    assert {"9fb2ead63c53", "afb61e048e73"} <= platform_only
