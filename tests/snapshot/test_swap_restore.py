"""PostgreSQL restores load beside the live tables and swap them in: the store stays open while rows load,
maintenance covers only the swap, and nothing of a restore is left in the database afterwards."""
from contextlib import contextmanager

import psycopg
import pytest
import sqlalchemy as sa

from app.snapshot import RestoreFailed, database
from tests.faults.harness import damage, schema


def restore_schemas(engine):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'restore_%'")).scalars().all()


def test_rows_load_while_the_store_is_open_and_maintenance_covers_only_the_swap(pg_store):
    path = pg_store.create()
    after = pg_store.state()
    damage(pg_store.engine, pg_store.uploads)
    phases, inside = [], []
    closed = {"now": False}

    @contextmanager
    def maintenance():
        closed["now"] = True
        try:
            yield
        finally:
            closed["now"] = False

    def progress(event):
        (inside if closed["now"] else phases).append(event.phase)

    constraints = schema(pg_store.engine)
    pg_store.restore(path, maintenance=maintenance, progress=progress)
    assert "load" in phases and "staging" in phases  # before maintenance
    assert set(inside) == {"swap", "commit"}  # inside it: the swap only
    assert pg_store.state() == after and schema(pg_store.engine) == constraints
    assert restore_schemas(pg_store.engine) == []


def test_a_session_that_prepared_its_statements_sees_the_restored_rows(pg_store):
    path = pg_store.create()
    with pg_store.engine.begin() as c:
        c.exec_driver_sql("UPDATE products SET name = 'Renamed after the backup' WHERE id = 1")
    url = pg_store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as other:
        query = "SELECT name FROM products WHERE id = %s"
        assert other.execute(query, (1,), prepare=True).fetchone()[0] == "Renamed after the backup"
        pg_store.restore(path)
        assert other.execute(query, (1,), prepare=True).fetchone()[0] == "Product 1"


def test_a_failed_load_leaves_the_store_and_the_database_as_they_were(pg_store):
    path = pg_store.create()
    damage(pg_store.engine, pg_store.uploads)
    before, constraints = pg_store.state(), schema(pg_store.engine)
    with pytest.raises(RestoreFailed, match="Injected"):
        pg_store.restore(path, _fail_after_rows=1000)
    assert pg_store.state() == before and schema(pg_store.engine) == constraints
    assert restore_schemas(pg_store.engine) == []


def test_schemas_left_by_a_restore_that_died_are_dropped_by_the_next_one(pg_store):
    path = pg_store.create()
    with pg_store.engine.begin() as c:  # as a process killed mid-load, and one killed after its swap, leave them
        c.exec_driver_sql(f'CREATE SCHEMA "{database.NEW_SCHEMA}deadbeef0001"')
        c.exec_driver_sql(f'CREATE TABLE "{database.NEW_SCHEMA}deadbeef0001".products (id integer)')
        c.exec_driver_sql(f'CREATE SCHEMA "{database.OLD_SCHEMA}deadbeef0002"')
    pg_store.restore(path)
    assert restore_schemas(pg_store.engine) == []
