"""Backup → damage → restore gives back every row and every file byte, on each engine and across them."""
import os
import stat

import pytest
import sqlalchemy as sa

from app import snapshot
from app.snapshot import IncompatibleArchive, InsufficientSpace, RestoreFailed
from app.snapshot.container import NAME_PATTERN
from tests.faults.harness import damage, metadata, schema


def round_trip(store):
    before = store.state()
    archive = store.create("backup", "both")
    damage(store.engine, store.uploads)
    assert store.state() != before
    store.restore(archive, "both")
    return before, store.state()


def test_round_trip_on_sqlite(sqlite_store):
    before, after = round_trip(sqlite_store)
    assert after == before


def test_round_trip_on_postgresql(pg_store):
    before, after = round_trip(pg_store)
    assert after == before


def test_sequences_follow_the_restored_rows(pg_store, sqlite_store):
    for store in (pg_store, sqlite_store):
        archive = store.create("backup", "database")
        damage(store.engine, store.uploads)
        store.restore(archive, "database")
        orders = metadata().tables["orders"]
        with store.engine.begin() as c:
            top = c.scalar(sa.select(sa.func.max(orders.c.id)))
            new_id = c.execute(orders.insert().values(number="NEW", customer_email="n@x.test", status="paid",
                                                      total=1, placed_at=sa.func.now())).inserted_primary_key[0]
        assert new_id > top


@pytest.mark.parametrize("direction", ["sqlite-to-postgresql", "postgresql-to-sqlite"])
def test_cross_engine(direction, sqlite_store, pg_store, tmp_path):
    source, target = (sqlite_store, pg_store) if direction == "sqlite-to-postgresql" else (pg_store, sqlite_store)
    expected = source.state()
    archive = source.create("backup", "both")
    damage(target.engine, target.uploads)
    target.restore(archive, "both")
    assert target.state() == expected


@pytest.mark.parametrize("part", ["database", "files"])
def test_a_single_part_restore_leaves_the_other_part_alone(sqlite_store, part):
    """Restoring only the database keeps today's files; restoring only the files keeps today's rows."""
    rows, files = sqlite_store.state()
    archive = sqlite_store.create("backup", "both")
    damage(sqlite_store.engine, sqlite_store.uploads)
    damaged_rows, damaged_files = sqlite_store.state()
    sqlite_store.restore(archive, part)
    assert sqlite_store.state() == ((rows, damaged_files) if part == "database" else (damaged_rows, files))


@pytest.mark.parametrize("parts", ["database", "files"])
def test_a_single_part_archive_cannot_restore_both(sqlite_store, parts):
    archive = sqlite_store.create("backup", parts)
    before = sqlite_store.state()
    with pytest.raises(IncompatibleArchive, match=f"holds {parts}"):
        sqlite_store.restore(archive, "both")
    assert sqlite_store.state() == before


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_failure_in_the_middle_of_loading_changes_nothing(engine, request):
    store = request.getfixturevalue(f"{'pg' if engine == 'postgresql' else 'sqlite'}_store")
    archive = store.create("backup", "both")
    damage(store.engine, store.uploads)
    before = store.state()
    with pytest.raises(RestoreFailed, match="rolled back"):
        store.restore(archive, "both", _fail_after_rows=3500)
    assert store.state() == before
    assert not [p for p in store.uploads.parent.iterdir() if p.name.startswith(".uploads")]


def test_export_carries_no_password_hash_or_secret(sqlite_store, empty_sqlite):
    export = sqlite_store.create("export", "database")
    raw = export.read_bytes()
    import zipfile

    import zstandard

    with zipfile.ZipFile(export) as z:
        names = z.namelist()
        data = b"".join(zstandard.ZstdDecompressor().stream_reader(z.open(n), read_across_frames=True).read()
                        for n in names if n.endswith(".zst"))
    assert not [n for n in names if n.startswith("files/")]
    for secret in (b"sk_live_TOPSECRET", b"cart-secret-token", b"h1\t", b"s1\t"):
        assert secret not in data and secret not in raw
    assert b"Visible title" in data  # non-secret settings stay
    assert b"Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e" in data


def test_restore_refuses_an_export(sqlite_store):
    export = sqlite_store.create("export", "database")
    before = sqlite_store.state()
    with pytest.raises(IncompatibleArchive, match="export, not a backup"):
        sqlite_store.restore(export, "database")
    assert sqlite_store.state() == before


def test_archive_naming_mode_and_nothing_temporary_left(sqlite_store):
    first = sqlite_store.create("backup", "database")
    second = sqlite_store.create("export", "database")
    third = sqlite_store.create("backup", "files")
    for path, kind, parts in ((first, "backup", "database"), (second, "export", "database"),
                              (third, "backup", "files")):
        match = NAME_PATTERN.match(path.name)
        assert match and match["store"] == "test-store" and match["kind"] == kind and match["parts"] == parts
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in sqlite_store.backups.iterdir()) == sorted([first.name, second.name, third.name])
    assert sorted([first.name, second.name, third.name], key=lambda n: NAME_PATTERN.match(n)["stamp"]) == \
        [first.name, second.name, third.name]
    assert stat.S_IMODE(sqlite_store.backups.stat().st_mode) == 0o700


def test_a_failed_create_leaves_no_archive_and_no_temp_file(sqlite_store):
    def explode(event):
        if event.phase == "files":
            raise OSError(28, "No space left on device")

    with pytest.raises(InsufficientSpace, match="full \\(No space left on device\\); the unfinished archive was removed"):
        sqlite_store.create("backup", "both", progress=explode)
    assert list(sqlite_store.backups.iterdir()) == []


def test_progress_is_reported_in_batches_not_per_row(sqlite_store):
    events = []
    sqlite_store.create("backup", "both", progress=events.append, database_file=False)
    rows = sum(len(v) for v in sqlite_store.state()[0].values())
    database = [e for e in events if e.phase == "database"]
    assert database and len(database) < rows / 100
    assert max(e.done for e in database) == rows
    assert events[-1].phase == "done"
    restore_events = []
    sqlite_store.restore(sqlite_store.create("backup", "both", database_file=False), "both",
                         progress=restore_events.append)
    phases = [e.phase for e in restore_events]
    assert {"verify", "staging", "load", "swap", "commit", "done"} <= set(phases)
    assert len([p for p in phases if p == "load"]) < rows / 100


def test_uploads_that_cannot_be_archived_are_skipped_and_reported(sqlite_store):
    os.symlink("/etc/passwd", sqlite_store.uploads / "link-out")
    os.mkfifo(sqlite_store.uploads / "a-fifo")
    archive = sqlite_store.create("backup", "files")
    summary = sqlite_store.inspect(archive)
    assert any("link-out" in s for s in summary.skipped) and any("a-fifo" in s for s in summary.skipped)
    assert summary.file_count == len([p for p in sqlite_store.uploads.rglob("*") if p.is_file() and not p.is_symlink()
                                      and p.name != "a-fifo"])


def test_inspect_summarises_the_archive(sqlite_store):
    archive = sqlite_store.create("backup", "both")
    summary = sqlite_store.inspect(archive)
    rows, files = sqlite_store.state()
    assert (summary.kind, summary.parts, summary.store, summary.created_by) == ("backup", "both", "Test Store", "tester")
    assert summary.row_counts == {name: len(r) for name, r in rows.items()}
    assert summary.file_count == len(files)
    assert summary.file_bytes == sum(p.stat().st_size for p in sqlite_store.uploads.rglob("*") if p.is_file())
    assert summary.source_engine == "sqlite" and summary.schema_revision == sqlite_store.revision


def test_a_restore_into_an_empty_new_store(sqlite_store, empty_sqlite):
    expected = sqlite_store.state()
    archive = sqlite_store.create("backup", "both")
    empty_sqlite.restore(archive, "both")
    assert empty_sqlite.state() == expected


def test_platform_tables_are_never_in_an_archive(sqlite_store, tmp_path):
    import sqlite3
    import zipfile

    import zstandard

    from app.extensions import db

    platform = set(db.metadatas["platform"].tables)
    archive = sqlite_store.create("backup", "database", database_file=False)
    with zipfile.ZipFile(archive) as z:
        tables = {n.split("/")[1].split(".")[0] for n in z.namelist() if n.startswith("database/")}
    assert tables == {t.name for t in metadata().sorted_tables}
    assert not tables & platform
    # A SQLite store's database file: only the store's tables, even when other tables share the file.
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE backup_schedules (id INTEGER PRIMARY KEY, secret TEXT)")
        c.exec_driver_sql("INSERT INTO backup_schedules VALUES (1, 'not for an archive')")
        c.exec_driver_sql("CREATE VIEW everything AS SELECT * FROM backup_schedules")
    archive = sqlite_store.create("backup", "database")
    copy = tmp_path / "copy.db"
    with zipfile.ZipFile(archive) as z:
        copy.write_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(z.read("database/store.sqlite.zst")))
    with sqlite3.connect(copy) as c:
        inside = {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert inside - {"sqlite_sequence"} == {t.name for t in metadata().sorted_tables}
    assert not inside & (platform | {"backup_schedules", "everything"})
    sqlite_store.inspect(archive)


def test_a_temp_file_left_by_a_killed_run_is_removed_by_the_next_create(sqlite_store):
    sqlite_store.backups.mkdir(mode=0o700, parents=True)
    stale = sqlite_store.backups / ".test-store-backup-both-20260101T000000000000Z-abcdef.zip.part"
    fresh = sqlite_store.backups / ".test-store-backup-both-20260102T000000000000Z-abcdef.zip.part"
    stale.write_bytes(b"half an archive")
    fresh.write_bytes(b"another run still writing")
    two_hours_ago = stale.stat().st_mtime - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    archive = sqlite_store.create("backup", "database")
    assert sorted(p.name for p in sqlite_store.backups.iterdir()) == sorted([fresh.name, archive.name])


def test_postgresql_restore_puts_back_every_constraint_and_index(pg_store):
    """The load drops foreign keys, unique constraints and plain indexes and rebuilds them after."""
    before = schema(pg_store.engine)
    assert any("FOREIGN KEY" in row[2] for row in before) and any("UNIQUE" in row[2] for row in before)
    pg_store.restore(pg_store.create("backup", "database"), "database")
    assert schema(pg_store.engine) == before


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_after_a_restore_the_store_holds_only_its_own_tables(engine, request):
    """The commit marker a restore needs while it may be killed is gone once recovery cannot need it."""
    store = request.getfixturevalue(f"{'pg' if engine == 'postgresql' else 'sqlite'}_store")
    own = {t.name for t in metadata().sorted_tables}
    archive = store.create("backup", "both")
    damage(store.engine, store.uploads)
    for parts in ("both", "database", "files"):
        store.restore(archive, parts)
        assert set(sa.inspect(store.engine).get_table_names()) == own, parts


def test_recovery_drops_a_marker_table_no_journal_needs(sqlite_store):
    """A process killed between removing the journal and dropping the table leaves only the table: recovery
    (run before every restore, and by the app) drops it."""
    from app.snapshot import journal

    journal.ensure_marker_table(sqlite_store.engine)
    assert journal.MARKER_TABLE in sa.inspect(sqlite_store.engine).get_table_names()
    journal.recover(sqlite_store.uploads, sqlite_store.engine)
    assert journal.MARKER_TABLE not in sa.inspect(sqlite_store.engine).get_table_names()


@pytest.mark.parametrize("engine", ["sqlite_store", "pg_store"])
def test_kept_tables_keep_todays_rows_and_the_rest_comes_back(engine, request):
    store = request.getfixturevalue(engine)
    archive = store.create("backup", "database")
    users = metadata().tables["users"]
    with store.engine.begin() as c:
        c.execute(users.update().values(role="vendor"))
        c.execute(metadata().tables["order_lines"].delete())
        today_users = sorted(c.execute(sa.select(users)).all())
    store.restore(archive, "database", keep_tables=("users",))
    with store.engine.connect() as c:
        assert sorted(c.execute(sa.select(users)).all()) == today_users
        assert c.scalar(sa.select(sa.func.count()).select_from(metadata().tables["order_lines"])) > 0


@pytest.mark.parametrize("engine", ["sqlite_store", "pg_store"])
def test_kept_accounts_the_archive_refers_to_but_today_lacks_roll_the_restore_back(engine, request):
    store = request.getfixturevalue(engine)
    archive = store.create("backup", "database")
    with store.engine.begin() as c:
        c.execute(metadata().tables["carts"].update().values(user_id=None))
        c.execute(metadata().tables["users"].delete().where(metadata().tables["users"].c.id == 1))
    before = store.state()
    with pytest.raises(RestoreFailed, match="rolled back"):
        store.restore(archive, "database", keep_tables=("users",))
    assert store.state() == before


def test_read_table_gives_an_archives_rows_by_column(sqlite_store):
    archive = sqlite_store.create("backup", "database")
    rows = snapshot.read_table(archive, signing_key=sqlite_store.key, metadata=sqlite_store.metadata, table="users")
    with sqlite_store.engine.connect() as c:
        live = {r.email: r.role for r in c.execute(sa.select(metadata().tables["users"]))}
    assert {row["email"]: row["role"] for row in rows} == live


def test_the_staged_files_are_on_disk_before_they_are_swapped_in(sqlite_store, monkeypatch):
    """No fsync per file: one sync of the file system once every file is written, before the swap."""
    from app.snapshot import files

    events = []
    real_sync, real_swap = files.sync_filesystem, files.StagedFiles.swap_in
    monkeypatch.setattr(files, "sync_filesystem", lambda path: events.append(("sync", str(path))) or real_sync(path))
    monkeypatch.setattr(files.StagedFiles, "swap_in",
                        lambda self: events.append(("swap", str(self.staging))) or real_swap(self))
    archive = sqlite_store.create("backup", "files")
    sqlite_store.restore(archive, "files")
    assert [kind for kind, _ in events] == ["sync", "swap"] and events[0][1] == events[1][1]


@pytest.mark.parametrize("store_name", ["sqlite_store", "pg_store"])
def test_an_error_after_the_commit_keeps_the_restored_files(store_name, request):
    """Leaving maintenance fails after the rows (and the marker) committed: the restored files stay with the
    restored rows, never the old files with the new rows; the error is still reported."""
    from contextlib import contextmanager

    store = request.getfixturevalue(store_name)
    expected = store.state()
    archive = store.create("backup", "both")
    damage(store.engine, store.uploads)

    @contextmanager
    def maintenance():
        yield
        raise RuntimeError("the maintenance flag could not be cleared")

    with pytest.raises(RuntimeError, match="maintenance flag"):
        store.restore(archive, "both", maintenance=maintenance)
    assert store.state() == expected
    assert not [p for p in store.uploads.parent.iterdir() if p.name.startswith(".uploads")]
