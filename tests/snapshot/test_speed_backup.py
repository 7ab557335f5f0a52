"""The backup's speed work, as behaviour: both parts written at once, nothing read back, what is checked instead,
progress from one thread that still ends at 100 %, and nothing left behind when either part fails."""
import json
import os
import threading
import zipfile
from datetime import datetime

import pytest
import sqlalchemy as sa

from app import snapshot
from app.snapshot import container, database, files, sqlitefile
from app.snapshot.container import Reader
from app.snapshot.errors import ArchiveInvalid, SnapshotError

PART_THREAD = "snapshot-database-part"


def leftovers(store):
    return sorted(p.name for p in store.backups.iterdir()) if store.backups.exists() else []


def test_both_parts_are_written_at_the_same_time(sqlite_store, monkeypatch):
    """The database part waits until the files part has begun: done one after the other, it would never see it."""
    file_started = threading.Event()
    real_add_file, real_dump = container._Sink.add_file, database.dump_table
    seen = []

    def add_file(self, *args, **kwargs):
        file_started.set()
        return real_add_file(self, *args, **kwargs)

    def dump_table(*args, **kwargs):
        seen.append(file_started.wait(timeout=20))
        return real_dump(*args, **kwargs)

    monkeypatch.setattr(container._Sink, "add_file", add_file)
    monkeypatch.setattr(database, "dump_table", dump_table)
    archive = sqlite_store.create("backup", "both", database_file=False)  # the rows, dumped table by table
    assert seen and seen[0] is True, "the database part ran before any file was written"
    summary = sqlite_store.inspect(archive)
    assert summary.file_count > 0 and sum(summary.row_counts.values()) > 0
    before = sqlite_store.state()
    sqlite_store.restore(archive, "both")
    assert sqlite_store.state() == before


def test_a_new_archive_is_checked_without_reading_its_members_again(sqlite_store, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a member's data was read back")

    monkeypatch.setattr(container._MemberReader, "read", refuse)
    monkeypatch.setattr(files, "copy_member", refuse)
    archive = sqlite_store.create("backup", "both")
    monkeypatch.undo()
    sqlite_store.inspect(archive)  # every checksum the writer computed on the way is right


def test_a_central_directory_that_does_not_read_back_as_written_is_removed(sqlite_store, monkeypatch):
    real_finish = container.Writer.finish

    def finish(self, manifest, key):
        real_finish(self, manifest, key)
        count, cd_offset, cd_size, _ = self.end
        with open(self.path, "r+b") as damaged:  # one byte of the first record's CRC, as a bad disk would
            damaged.seek(cd_offset + 16)
            byte = damaged.read(1)
            damaged.seek(cd_offset + 16)
            damaged.write(bytes([byte[0] ^ 0xFF]))

    monkeypatch.setattr(container.Writer, "finish", finish)
    with pytest.raises(ArchiveInvalid, match="does not read back as written"):
        sqlite_store.create("backup", "both")
    assert leftovers(sqlite_store) == []


@pytest.mark.parametrize("failing", ["database", "database file", "files"])
def test_either_part_failing_leaves_nothing_and_stops_the_other(sqlite_store, monkeypatch, failing):
    def went_away(*args, **kwargs):
        raise RuntimeError("the database went away")

    if failing == "database":
        monkeypatch.setattr(database, "dump_table", went_away)
    elif failing == "database file":
        monkeypatch.setattr(sqlitefile.zstandard, "ZstdCompressor", went_away)
    else:
        def add_file(self, *args, **kwargs):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(container._Sink, "add_file", add_file)
    with pytest.raises((RuntimeError, SnapshotError), match="database went away|Input/output error"):
        sqlite_store.create("backup", "both", database_file=failing != "database")
    assert leftovers(sqlite_store) == []
    assert not [t for t in threading.enumerate() if t.name == PART_THREAD]


def test_progress_comes_from_the_calling_thread_and_a_cancellation_there_stops_both_parts(sqlite_store):
    class Cancelled(SnapshotError):
        pass

    threads, phases = set(), []

    def progress(event):
        threads.add(threading.current_thread().name)
        phases.append(event.phase)
        if event.phase == "database" and event.done > 0:
            raise Cancelled("cancelled by the person who started it")

    with pytest.raises(Cancelled):
        sqlite_store.create("backup", "both", progress=progress)
    assert threads == {threading.current_thread().name}
    assert "database" in phases
    assert leftovers(sqlite_store) == []
    assert not [t for t in threading.enumerate() if t.name == PART_THREAD]


def test_progress_of_both_parts_ends_at_100_percent(sqlite_store):
    events = []
    sqlite_store.create("backup", "both", progress=events.append)
    threads = {e.phase: e for e in events}
    for phase in ("database", "files"):
        last = [e for e in events if e.phase == phase][-1]
        assert last.done == last.total, (phase, last)
        assert all(e.done <= e.total for e in events if e.phase == phase)
    assert threads["done"] == events[-1]


def test_stale_postgresql_statistics_still_end_progress_at_100_percent(pg_store):
    with pg_store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("ANALYZE")
    t = pg_store.metadata.tables
    with pg_store.engine.begin() as c:  # more rows than the statistics know of
        c.execute(t["orders"].insert(), [{"id": 100_000 + i, "number": f"N{i}", "customer_email": "n@x.test",
                                          "status": "paid", "total": 1, "placed_at": datetime(2026, 1, 1)}
                                         for i in range(5000)])
    events = []
    archive = pg_store.create("backup", "database", progress=events.append)
    database_events = [e for e in events if e.phase == "database"]
    rows = sum(pg_store.inspect(archive).row_counts.values())
    assert database_events[-1].done == database_events[-1].total == rows
    assert all(e.done <= e.total for e in database_events)


def test_the_progress_total_uses_postgresql_statistics_instead_of_counting(pg_store, monkeypatch):
    with pg_store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("ANALYZE")
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(pg_store.engine, "before_cursor_execute", record)
    try:
        pg_store.create("backup", "database")
    finally:
        sa.event.remove(pg_store.engine, "before_cursor_execute", record)
    assert not [s for s in statements if "count(*)" in s.lower()], statements


def test_archives_of_every_shape_open_in_zipfile_and_unzip_would_agree(sqlite_store):
    (sqlite_store.uploads / "ünïcödé näme.txt").write_text("non-ASCII names carry the UTF-8 flag")
    for parts in ("both", "database", "files"):
        archive = sqlite_store.create("backup", parts)
        with zipfile.ZipFile(archive) as z:
            assert z.testzip() is None
            names = z.namelist()
        assert names[-3:] == ["members.tsv", "manifest.json", "manifest.sig"]
        with Reader(archive, sqlite_store.key) as reader:
            assert list(reader.manifest["members"]) == names[:-3]
        if parts != "database":
            assert "files/ünïcödé näme.txt" in names


def test_a_writer_of_more_than_65535_members_writes_zip64_end_records(tmp_path):
    path = tmp_path / "many.zip"
    path.touch()
    writer = container.Writer(path)
    count = 70_000
    for i in range(count):
        with writer.member(f"files/{i // 1000:02d}/{i:05d}.txt") as out:  # in name order, as format 2 wants
            out.write(b"%d" % i)
    writer.finish({"format": "store-snapshot"}, "key")
    writer.verify("key")
    data = path.read_bytes()
    assert b"PK\x06\x06" in data[-200:] and b"PK\x06\x07" in data[-200:]
    with zipfile.ZipFile(path) as z:
        assert len(z.infolist()) == count + 3 and z.read("files/69/69999.txt") == b"69999"
        assert json.loads(z.read("manifest.json"))["members"]["count"] == count
        assert z.read("members.tsv").count(b"\n") == count
    reader = Reader.__new__(Reader)  # the reader's own end-record parser agrees
    reader.path, reader.name, reader.max_members = path, path.name, None
    reader.fd = os.open(path, os.O_RDONLY)
    try:
        reader.size = len(data)
        assert reader._end_records()[0] == count + 3
    finally:
        reader.close()


def test_sizes_and_offsets_past_zip64_limits_round_trip_through_the_reader():
    reader = Reader.__new__(Reader)
    reader.name = "x.zip"
    for offset, size in ((5 << 30, 3 << 30), (12, 3 << 30), (5 << 30, 12), (12, 12)):
        record = container._central_record(offset, size, 0x1234, 0x800, "files/é".encode(), (0, 0))
        entry, length = reader._parse_record(record, 0)
        assert length == len(record)
        assert (entry.header_offset, entry.file_size, entry.compress_size, entry.CRC, entry.filename) == \
            (offset, size, size, 0x1234, "files/é")


def test_a_snapshot_api_user_gets_a_v2_archive_whose_members_read_as_before(sqlite_store):
    archive = sqlite_store.create("backup", "both")
    with Reader(archive, sqlite_store.key) as reader:
        assert reader.manifest["format_version"] == 2
        for name, meta in reader.manifest["members"].items():
            assert reader.entries[name].file_size == meta["size"]
    assert snapshot.inspect_archive(archive, signing_key=sqlite_store.key, schema_revision=sqlite_store.revision,
                                    metadata=sqlite_store.metadata).kind == "backup"
