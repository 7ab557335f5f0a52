"""PostgreSQL on two connections: a backup splits large tables by page range over two connections that share one
snapshot (each range its own zstd frame in the table's member), a restore shares the largest table's rows out
between two loading connections. Every row is there exactly once, and a failure anywhere leaves nothing."""
import threading
import time

import pytest
import sqlalchemy as sa
import zstandard

from app import snapshot
from app.snapshot import RestoreFailed, database, operations
from app.snapshot.container import Reader
from tests.faults.harness import damage, metadata, schema

pytestmark = pytest.mark.slow

PIECE_THREAD = "snapshot-database-piece"


@pytest.fixture
def split(monkeypatch):
    """Backups on two connections (off by default), every table of at least one page dumped in two page ranges,
    and every table loaded by both connections (the test stores are far below the real thresholds)."""
    monkeypatch.setattr(operations, "DUMP_CONNECTIONS", 2)
    monkeypatch.setattr(operations, "SPLIT_PAGES", 1)
    monkeypatch.setattr(operations, "SPLIT_LOAD_BYTES", 1)


def rows(engine, name):
    table = metadata().tables[name]
    with engine.connect() as c:
        return c.execute(sa.select(table).order_by(*table.primary_key.columns)).all()


def frames(reader, member):
    """How many zstd frames the member holds, and its rows decompressed frame by frame."""
    data = reader.open(member, reader.manifest["members"][member]["size"]).read()
    count, out = 0, b""
    while data:
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        out += decompressor.decompress(data)
        data = decompressor.unused_data
        count += 1
    return count, out


def restore_schemas(engine):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'restore_%'")).scalars().all()


def test_a_split_table_holds_each_row_of_the_snapshot_once_while_rows_change(pg_store, split, monkeypatch):
    """Rows inserted, updated (new row versions on other pages) and deleted by another session while the two
    connections read their ranges: the archive holds the table exactly as it was when the backup began."""
    with pg_store.engine.begin() as c:  # room for updated row versions on the same and on new pages
        c.exec_driver_sql("UPDATE order_lines SET quantity = quantity WHERE mod(id, 7) = 0")
    expected = rows(pg_store.engine, "order_lines")
    real_dump, changed = database.dump_table, threading.Event()
    seen_ranges = []

    def dump_table(connection, table, write, *args, pages=None, **kwargs):
        if table.name == "order_lines":
            seen_ranges.append((threading.current_thread().name, pages))
            if not changed.is_set():
                changed.set()
                with pg_store.engine.begin() as other:  # committed after the snapshot was taken
                    other.exec_driver_sql("INSERT INTO order_lines (id, order_id, product_id, quantity, unit_price) "
                                          "SELECT id + 5000000, order_id, product_id, quantity, unit_price "
                                          "FROM order_lines")
                    other.exec_driver_sql("UPDATE order_lines SET quantity = quantity + 1 WHERE mod(id, 3) = 0")
                    other.exec_driver_sql("DELETE FROM order_lines WHERE mod(id, 5) = 0")
        return real_dump(connection, table, write, *args, pages=pages, **kwargs)

    monkeypatch.setattr(database, "dump_table", dump_table)
    path = pg_store.create("backup", "database")
    assert changed.is_set()
    assert {name for name, _ in seen_ranges} == {"MainThread", PIECE_THREAD}  # two connections read it
    assert sorted(pages for _, pages in seen_ranges)[-1][1] is None  # the last range is open-ended
    assert rows(pg_store.engine, "order_lines") != expected  # the live table did change
    with Reader(path, pg_store.key) as reader:
        entry = next(e for e in reader.manifest["tables"] if e["name"] == "order_lines")
        count, data = frames(reader, entry["member"])
    assert count == 2
    assert entry["rows"] == len(expected) == data.count(b"\n") and entry["raw_bytes"] == len(data)
    archived = snapshot.read_table(path, signing_key=pg_store.key, metadata=pg_store.metadata, table="order_lines")
    ids = [row["id"] for row in archived]
    assert len(ids) == len(set(ids))  # no row twice
    assert sorted(ids) == [row.id for row in expected]
    quantities = {row["id"]: row["quantity"] for row in archived}
    assert all(quantities[row.id] == row.quantity for row in expected)  # the values of the snapshot
    pg_store.inspect(path)


def test_an_archive_of_multi_frame_tables_restores_on_both_engines(pg_store, empty_sqlite, split):
    after = pg_store.state()
    path = pg_store.create()
    with Reader(path, pg_store.key) as reader:
        counts = {e["name"]: frames(reader, e["member"])[0] for e in reader.manifest["tables"]}
    assert counts["order_lines"] == 2 and counts["orders"] == 2
    damage(pg_store.engine, pg_store.uploads)
    constraints = schema(pg_store.engine)
    pg_store.restore(path)  # the largest table's rows loaded by both connections
    assert pg_store.state() == after and schema(pg_store.engine) == constraints
    assert restore_schemas(pg_store.engine) == []
    empty_sqlite.key = pg_store.key
    empty_sqlite.restore(path, "database")  # the portable format: SQLite reads the frames as one stream
    assert rows(empty_sqlite.engine, "order_lines") == rows(pg_store.engine, "order_lines")


def test_the_largest_table_is_loaded_by_both_connections_exactly_once(pg_store, split, monkeypatch):
    path = pg_store.create("backup", "database")
    with Reader(path, pg_store.key) as reader:
        largest = max(reader.manifest["tables"], key=lambda e: e["raw_bytes"])
    monkeypatch.setattr(operations, "SPLIT_LOAD_BYTES", largest["raw_bytes"])  # that table only
    largest = largest["name"]
    expected = rows(pg_store.engine, largest)
    damage(pg_store.engine, pg_store.uploads)
    loaders, real_load = [], database.load_rows

    def load_rows(connection, table, columns, chunks, on_rows=None):
        def blocks():
            for block in chunks:
                yield block
                threading.Event().wait(0.01)  # the other connection takes the next block meanwhile
        loaded = real_load(connection, table, columns, blocks(), on_rows)
        loaders.append((table.name, threading.current_thread().ident, loaded))
        return loaded

    monkeypatch.setattr(database, "load_rows", load_rows)
    monkeypatch.setattr(operations.files, "CHUNK", 4096)  # many blocks, so both connections get some
    pg_store.restore(path, "database")
    assert {name for name, _, _ in loaders} == {largest} and len({t for _, t, _ in loaders}) == 2
    assert all(n > 0 for _, _, n in loaders)
    assert sum(n for _, _, n in loaders) == len(expected)
    assert rows(pg_store.engine, largest) == expected


def test_a_failure_on_one_backup_connection_stops_the_other_and_keeps_nothing(pg_store, split, monkeypatch):
    real_dump, failed = database.dump_table, threading.Event()
    main_calls = []

    def dump_table(connection, table, write, *args, **kwargs):
        if threading.current_thread().name == PIECE_THREAD:
            failed.set()
            raise RuntimeError("the second connection failed")
        main_calls.append(table.name)
        failed.wait(30)  # the first connection's piece ends after the other failed...
        deadline = time.monotonic() + 30  # ...and handed its error over (it sets ``failed`` before raising)
        while any(t.name == PIECE_THREAD for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_dump(connection, table, write, *args, **kwargs)

    monkeypatch.setattr(database, "dump_table", dump_table)
    before = pg_store.state()
    with pytest.raises(RuntimeError, match="second connection"):
        pg_store.create("backup", "both")
    assert len(main_calls) == 1  # it gave up at the end of that piece, and started no other
    assert sorted(p.name for p in pg_store.backups.iterdir()) == []  # no archive, no part, no spool
    assert pg_store.state() == before


def test_a_failure_on_one_loading_connection_stops_the_other_and_leaves_the_store(pg_store, split, monkeypatch):
    path = pg_store.create()
    damage(pg_store.engine, pg_store.uploads)
    before, constraints = pg_store.state(), schema(pg_store.engine)
    real_load, real_take = database.load_rows, operations._LoadPlan.take
    failed, handed_out_after = threading.Event(), []

    def load_rows(connection, table, columns, chunks, on_rows=None):
        if not failed.is_set():
            failed.set()
            next(iter(chunks))
            raise RuntimeError("this connection failed")
        return real_load(connection, table, columns, chunks, on_rows)

    def take(plan):
        task = real_take(plan)
        if task is not None and plan.stop.is_set():
            handed_out_after.append(task)
        return task

    monkeypatch.setattr(database, "load_rows", load_rows)
    monkeypatch.setattr(operations._LoadPlan, "take", take)
    with pytest.raises(RestoreFailed, match="this connection failed"):
        pg_store.restore(path)
    assert failed.is_set() and handed_out_after == []  # once stopped, no connection starts anything
    assert pg_store.state() == before and schema(pg_store.engine) == constraints
    assert restore_schemas(pg_store.engine) == []
    assert not [p for p in pg_store.uploads.parent.iterdir() if p.name.startswith(".uploads")]
