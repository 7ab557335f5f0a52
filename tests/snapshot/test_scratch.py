"""Scratch restores: an archive loaded and checked in a fresh database and folder, the live store untouched."""
import os

import pytest
import sqlalchemy as sa

from app.snapshot import ArchiveInvalid
from app.snapshot.scratch import ScratchStore, TrialFailed, load_archive
from tests.snapshot import hostile

ENGINES = ["sqlite_store", "pg_store"]


@pytest.fixture(params=ENGINES)
def store(request):
    return request.getfixturevalue(request.param)


def live_view(store):
    """Everything the live store is: every row, every file's checksum, the uploads folder's inode, the schemas."""
    schemas = None
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as c:
            schemas = sorted(c.scalars(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'scratch_%'")))
    return store.state(), os.stat(store.uploads).st_ino, schemas


def try_it(store, path, tmp_path, **extra):
    scratch = ScratchStore.create(store.engine, tmp_path / "scratch")
    try:
        store.metadata.create_all(scratch.engine)
        result = load_archive(path, scratch, signing_key=store.key, schema_revision=store.revision,
                              metadata=store.metadata, **extra)
        from tests.faults.harness import state
        return result, state(scratch.engine, scratch.uploads_dir)
    finally:
        scratch.drop()


def rewritten(store, path, tmp_path, mutate):
    members, manifest = hostile.read(path)
    mutate(members, manifest)
    return hostile.write(tmp_path / path.name, members, manifest, store.key)


def with_row(table, make_line):
    def mutate(members, manifest):
        entry, _, raw = hostile.table_data(members, manifest, table)
        columns = [c["name"] for c in entry["columns"]]
        first = raw.split(b"\n")[0].split(b"\t")
        line = make_line(dict(zip(columns, first)))
        raw += b"\t".join(line[c] for c in columns) + b"\n"
        hostile.set_table_data(members, manifest, table, raw, rows=entry["rows"] + 1)
    return mutate


def test_a_good_archive_loads_into_a_scratch_store_that_equals_the_live_one(store, tmp_path):
    path = store.create()
    before = live_view(store)
    result, scratch_state = try_it(store, path, tmp_path)
    assert scratch_state == before[0]  # every row and every file, loaded elsewhere
    assert result.row_counts == {t: len(rows) for t, rows in before[0][0].items()}
    assert result.file_count == len(before[0][1])
    assert live_view(store) == before
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").iterdir())


def test_a_foreign_key_break_is_named_by_table_and_row(store, tmp_path):
    broken = rewritten(store, store.create(database_file=False), tmp_path,
                       with_row("order_lines", lambda row: {**row, "id": b"888888", "product_id": b"999999"}))
    before = live_view(store)
    with pytest.raises(TrialFailed) as failure:
        try_it(store, broken, tmp_path)
    assert failure.value.table == "order_lines"
    assert "888888" in str(failure.value) and "999999" in str(failure.value) and "products" in str(failure.value)
    assert live_view(store) == before


def test_a_duplicate_unique_value_is_named(store, tmp_path):
    broken = rewritten(store, store.create(database_file=False), tmp_path, with_row("products", lambda row: {**row, "id": b"777777"}))
    before = live_view(store)
    with pytest.raises(TrialFailed) as failure:
        try_it(store, broken, tmp_path)
    assert failure.value.table == "products"
    message = str(failure.value)
    assert "unique" in message or "already exists" in message
    assert "sku" in message or "slug" in message
    assert live_view(store) == before


def test_a_checksum_break_is_refused_before_anything_loads(store, tmp_path):
    broken = rewritten(store, store.create(), tmp_path, hostile.checksum_mismatch)
    before = live_view(store)
    with pytest.raises(ArchiveInvalid, match="checksum"):
        try_it(store, broken, tmp_path)
    assert live_view(store) == before


def test_kept_tables_come_from_the_live_store(sqlite_store, tmp_path):
    path = sqlite_store.create()
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("UPDATE users SET email = 'today@x.test' WHERE id = 1")
    result, (rows, _) = try_it(sqlite_store, path, tmp_path, keep_from=sqlite_store.engine, keep_tables=("users",))
    assert any("today@x.test" in row for row in rows["users"])
    assert result.row_counts["users"] == len(rows["users"])


def test_a_dropped_scratch_store_leaves_no_schema_or_folder(pg_store, tmp_path):
    scratch = ScratchStore.create(pg_store.engine, tmp_path / "scratch")
    pg_store.metadata.create_all(scratch.engine)
    with scratch.engine.connect() as c:
        assert c.scalar(sa.text("SELECT current_schema()")) == scratch.schema
    scratch.drop()
    assert live_view(pg_store)[2] == []
    assert not scratch.folder.exists()


@pytest.mark.parametrize("same_schema", [True, False])
def test_a_sqlite_database_file_loads_as_the_real_restore_would(sqlite_store, tmp_path, monkeypatch, same_schema):
    """The live store's schema is the file's: the trial copies the pages, as the restore would (no row loaded one
    by one); another schema: the rows are read out of the file and loaded, as the restore would."""
    from app.snapshot import database

    path = sqlite_store.create()
    before = live_view(sqlite_store)
    if not same_schema:
        with sqlite_store.engine.begin() as c:
            c.exec_driver_sql("CREATE INDEX orders_by_status ON orders (status)")
    loaded = []
    real = database.load_table
    monkeypatch.setattr(database, "load_table", lambda *a, **k: loaded.append(a[1].name) or real(*a, **k))
    result, scratch_state = try_it(sqlite_store, path, tmp_path)
    assert scratch_state == before[0]
    assert result.row_counts == {t: len(rows) for t, rows in before[0][0].items()}
    assert bool(loaded) != same_schema
