"""The three operations: create an archive, inspect one completely, restore from one atomically."""
import csv
import errno
import io
import os
import secrets
import tempfile
import threading
import time
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
import zstandard

from app.snapshot import container, database, files, journal, sqlitefile, tablecodec
from app.snapshot.container import FORMAT, FORMAT_VERSION, KINDS, PARTS, Reader, Writer
from app.snapshot.errors import (
    ArchiveInvalid, IncompatibleArchive, InsufficientSpace, RestoreFailed, SnapshotError, UnsafeArchive,
)
from app.snapshot.progress import Reporter

DB_PREFIX = "database/"
# Level 1 on one thread: the rows compress ~4x already and the compressor keeps pace with COPY
# (zstd's own threads cost ~40 MB of buffers and gained nothing measurable here).
ZSTD_LEVEL = 1
DEFAULT_MAX_MEMBERS = container.DEFAULT_MAX_MEMBERS
# One row, and one value in it, of table data (as encoded in the archive): far above any real row, low enough
# that a hostile archive cannot make the load hold hundreds of megabytes for one line.
DEFAULT_MAX_ROW_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_VALUE_BYTES = 32 * 1024 * 1024
# zstd frames may ask for a window of up to 128 MiB (the library's default limit); ours use 512 KiB.
MAX_WINDOW_BYTES = 32 * 1024 * 1024
# A database member may not expand beyond this many times its compressed size (decompression bombs).
MAX_EXPANSION = 200
# A temp archive untouched for this long belongs to a process that died; the next create removes it.
STALE_PART_SECONDS = 3600


def store_tables(metadata):
    """The tables an archive holds: the store's, in foreign-key order, never the engine's own marker."""
    return [t for t in metadata.sorted_tables if t.name != journal.MARKER_TABLE]


@dataclass
class ArchiveSummary:
    name: str
    kind: str
    parts: str
    store: str
    created_at: datetime
    created_by: str
    schema_revision: str
    app_version: str
    source_engine: str
    label: str | None
    safety: bool
    row_counts: dict = field(default_factory=dict)
    file_count: int = 0
    file_bytes: int = 0
    archive_bytes: int = 0
    skipped: list = field(default_factory=list)


@dataclass
class ArchiveInfo:
    """A kept archive as the list shows it; ``problem`` is set for one that cannot be read."""

    name: str
    size: int
    kind: str = "?"
    parts: str = "?"
    created_at: str = ""
    created_by: str = ""
    label: str | None = None
    safety: bool = False
    problem: str | None = None


def _has(parts, part):
    return parts in (part, "both")


def create_archive(*, engine, metadata, uploads_dir, backups_dir, signing_key, store_name, kind, parts,
                   created_by, schema_revision, app_version, redactions=(), label=None, safety=False,
                   progress=None, database_file=True):
    """Write a new archive and return its path; on any failure nothing is left behind.

    ``database_file``: a backup of a SQLite store holds its database file (sqlitefile), copied and restored
    page for page; False writes the rows in the portable format, as for every other engine and every export."""
    if kind not in KINDS or parts not in PARTS:
        raise SnapshotError(f"Unknown archive kind/parts {kind}/{parts}.")
    if kind == "export" and parts != "database":
        raise SnapshotError("An export holds the database only.")
    report = Reporter(progress)
    backups = Path(backups_dir)
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_stale_parts(backups)
    sqlitefile.remove_stale(backups)
    name = container.archive_name(store_name, kind, parts)
    final = backups / name
    temp = backups / f".{name}.part"
    tables = store_tables(metadata)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "app_version": app_version,
        "schema_revision": schema_revision, "store": store_name, "kind": kind, "parts": parts,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "created_by": created_by,
        "label": label, "safety": bool(safety), "source_engine": engine.dialect.name,
        "tables": [], "files": {"count": 0, "bytes": 0, "skipped": []},
    }
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    writer = None
    stop = threading.Event()  # tells a part still being written (in another thread) to give up
    dump, database_object = _database_part(engine, database_file and kind == "backup")
    try:
        writer = Writer(temp, stop)
        if parts == "both":
            manifest["tables"], files_part = _both_parts(writer, engine, tables, uploads_dir, report, stop, dump)
        elif parts == "database":
            manifest["tables"] = dump(writer, engine, tables, redactions if kind == "export" else (), report)
        else:
            files_part = files.pack(writer, uploads_dir, report)
        if database_object:
            manifest["database"] = database_object["database"]
        if _has(parts, "files"):
            count, size, skipped = files_part
            manifest["files"] = {"count": count, "bytes": size, "skipped": skipped}
        writer.finish(manifest, signing_key)  # the manifest's member list comes from the writer's records
        report("verify", 0, None, "members", "Checking the new archive", force=True)
        _verify_members(writer, signing_key)
        writer = None
        os.rename(temp, final)
    except BaseException as error:
        stop.set()
        if writer is not None:
            writer.abort()
        temp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, FileNotFoundError):
            raise _write_failed(error) from error
        raise
    report("done", 1, 1, "archives", name, force=True)
    return final


def _write_failed(error):
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return InsufficientSpace(f"The backups folder is full ({reason}); the unfinished archive was removed and "
                                 "the store was not changed. Free some space (e.g. delete old archives) and try again.")
    return SnapshotError(f"Writing the archive failed ({reason}); the unfinished archive was removed and the store "
                         "was not changed.")


def _remove_stale_parts(backups, older_than=STALE_PART_SECONDS):
    """Temp files a killed process left behind (a live run touches its own at least every few seconds)."""
    now = time.time()
    for path in backups.glob(".*.part"):
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > older_than:
                path.unlink()
        except OSError:
            pass


def _database_part(engine, as_file):
    """How the database part is written: a SQLite store's backup holds the database file itself (sqlitefile);
    everything else holds the rows in the portable format. Returns the dump function and where it leaves the
    manifest's ``database`` object."""
    if not (as_file and sqlitefile.is_file_store(engine)):
        return _dump_database, {}
    found = {}

    def dump(sink, engine, tables, redactions, report):
        entries, found["database"] = sqlitefile.dump(sink, engine, tables, report, journal.MARKER_TABLE)
        return entries

    return dump, found


def _both_parts(writer, engine, tables, uploads_dir, report, stop, dump_database=None):
    """Both parts at once: the database is dumped by a thread into a segment file beside the archive while the
    files stream into the archive (one waits on the database server, the other on the disk; hashing, zstd and
    file I/O release the GIL), then the segment is appended in the kernel. Only this thread calls ``report``
    (a job's progress callback may need this thread's context, and it is where a cancellation is raised)."""
    segment = writer.segment()
    progress = _Interleaved(report)
    outcome = {}

    def dump():
        try:
            outcome["tables"] = (dump_database or _dump_database)(segment, engine, tables, (), progress.database)
        except BaseException as error:  # handed to this thread, which raises it
            outcome["error"] = error

    thread = threading.Thread(target=dump, name="snapshot-database-part", daemon=True)
    progress.failed = lambda: outcome.get("error")
    thread.start()
    try:
        files_part = files.pack(writer, uploads_dir, progress.files)
        while thread.is_alive():
            thread.join(progress.INTERVAL)
            progress.tick()
        progress.tick()
    except BaseException:
        stop.set()
        thread.join()
        raise
    writer.append(segment)
    return outcome["tables"], files_part


class _Interleaved:
    """Progress of two parts written at once, reported from this thread only: each part's latest state, one event
    per interval, alternating between the parts every second; forced events (a part's last) go out at once.
    The database thread only records its state; an error it met is raised here, at the next report."""

    INTERVAL = 0.2
    SWITCH = 1.0

    def __init__(self, report):
        self.report = report
        self.latest, self.sent, self.forced = {}, {}, []
        self.order, self.current, self.switched, self.last = ["files", "database"], 0, time.monotonic(), 0.0
        self.failed = lambda: None

    def database(self, phase, done, total, unit, message="", force=False):
        self._record(phase, done, total, unit, message, force)

    def files(self, phase, done, total, unit, message="", force=False):
        self._record(phase, done, total, unit, message, force)
        self.tick()

    def _record(self, phase, done, total, unit, message, force):
        self.latest[phase] = (phase, done, total, unit, message)
        if force:
            self.forced.append(self.latest[phase])

    def tick(self):
        error = self.failed()
        if error is not None:
            raise error
        while self.forced:
            event = self.forced.pop(0)
            self.sent[event[0]] = event
            self.report(*event, force=True)
        now = time.monotonic()
        if now - self.last < self.INTERVAL:
            return
        if now - self.switched >= self.SWITCH:
            self.current, self.switched = 1 - self.current, now
        for phase in (self.order[self.current], self.order[1 - self.current]):
            event = self.latest.get(phase)
            if event is not None and self.sent.get(phase) != event:
                self.sent[phase], self.last = event, now
                self.report(*event, force=True)
                return


# PostgreSQL dumps on this many connections sharing one snapshot (as pg_dump -j does); a table of at least
# SPLIT_PAGES pages (8 KiB each) is split into that many page ranges, each read by one connection into its own
# zstd frame: the table's member is those frames, one after the other (readers read across frames).
# One by default: measured on 2 cores shared with the files part, two connections were slower (backup 0.80/0.86x
# of the baseline against 1.03/1.07x with one, same run): the reading loop holds the GIL per row, so the second
# connection only adds a server process, a spool copy and contention; it may pay with more cores.
DUMP_CONNECTIONS = 1
SPLIT_PAGES = 1024


def _dump_database(writer, engine, tables, redactions, report):
    if engine.dialect.name == "postgresql" and DUMP_CONNECTIONS > 1:
        with engine.connect() as connection, connection.begin():
            _consistent_reading(connection)
            pages = database.table_pages(connection, tables)
            if pages:  # a server with TID range scans (PostgreSQL 14+)
                return _ParallelDump(writer, engine, tables, redactions, report, connection, pages).run()
    entries = []
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            _consistent_reading(connection)
        # Progress totals: PostgreSQL's statistics where the tables have them (no COUNT(*) of every table).
        totals = database.count_rows(connection, tables, estimate=True)
        grand_total = sum(totals.values())
        done_before = 0
        for table in tables:
            member = f"{DB_PREFIX}{table.name}.tsv.zst"
            with writer.member(member) as out:
                with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(out, closefd=False) as compressor:
                    counter = _CountingWriter(compressor)
                    rows = database.dump_table(
                        connection, table, counter.write, redactions,
                        on_rows=lambda n, base=done_before, t=table.name: report(
                            "database", base + n, max(grand_total, base + n), "rows", t))
            entries.append({"name": table.name, "member": member, "rows": rows, "raw_bytes": counter.bytes,
                             "columns": database.table_columns(table)})
            done_before += rows
        report("database", done_before, done_before, "rows", "Database written", force=True)  # 100 %
    return entries


def _consistent_reading(connection, snapshot=None):
    """One consistent snapshot of every table (``snapshot``: another transaction's, shared), in a format
    independent of the session's settings."""
    if snapshot is None:
        connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    else:
        database.share_snapshot(connection, snapshot)
    connection.exec_driver_sql("SET LOCAL DateStyle TO ISO, YMD")
    connection.exec_driver_sql("SET LOCAL TimeZone TO UTC")
    connection.exec_driver_sql("SET LOCAL extra_float_digits TO 3")


class _ParallelDump:
    """PostgreSQL on DUMP_CONNECTIONS connections in one snapshot. The work is cut into pieces (a small table
    whole, a large one in page ranges) given to the connections so their pages even out; each connection writes
    its pieces, each a zstd frame, into a spool file of its own. This thread (the only one that touches
    ``writer`` or calls ``report``) copies a table's frames into its member, in order, as soon as all of them
    are written. A failure on any connection stops the others; the caller's cleanup removes the archive."""

    def __init__(self, writer, engine, tables, redactions, report, connection, pages):
        self.writer, self.engine, self.tables, self.redactions, self.report = writer, engine, tables, redactions, report
        self.connection = connection
        self.pieces = {}  # table name -> [(first page, end page) or None], in the order of the member's frames
        work = []
        for table in tables:
            size = pages.get(table.name, 0)
            ranges = database.split_pages(size, DUMP_CONNECTIONS) if size >= SPLIT_PAGES else [None]
            self.pieces[table.name] = ranges
            for number, pages_range in enumerate(ranges):
                weight = size / len(ranges) if pages_range is not None else size
                work.append((weight, table, number))
        self.work = [[] for _ in range(DUMP_CONNECTIONS)]
        load = [0] * DUMP_CONNECTIONS
        for weight, table, number in sorted(work, key=lambda w: -w[0]):  # largest first, to the least loaded
            slot = load.index(min(load))
            self.work[slot].append((table, number))
            load[slot] += weight
        order = {table.name: i for i, table in enumerate(tables)}
        for queue in self.work:  # each connection in table order: members are completed from the first on
            queue.sort(key=lambda item: (order[item[0].name], item[1]))
        self.done = {}  # (table name, piece number) -> (spool fd, offset, length, rows, raw bytes)
        self.rows = [0] * DUMP_CONNECTIONS
        self.stop = threading.Event()
        self.errors = []
        self.lock = threading.Lock()
        self.entries, self.next = [], 0

    def run(self):
        totals = database.count_rows(self.connection, self.tables, estimate=True)
        self.grand_total = sum(totals.values())
        snapshot = database.export_snapshot(self.connection)
        spools = [tempfile.TemporaryFile(dir=self.writer.folder) for _ in range(DUMP_CONNECTIONS)]
        threads = [threading.Thread(target=self._other, args=(slot, spools[slot], snapshot),
                                    name="snapshot-database-piece", daemon=True)
                   for slot in range(1, DUMP_CONNECTIONS)]
        try:
            for thread in threads:
                thread.start()
            self._pieces(0, spools[0], self.connection)
            while any(thread.is_alive() for thread in threads):
                for thread in threads:
                    thread.join(_Interleaved.INTERVAL / len(threads))
                self._check()
                self._progress()
                self._assemble()
            self._check()
            self._assemble()
        except BaseException:
            self.stop.set()
            for thread in threads:
                thread.join()
            raise
        finally:
            for spool in spools:
                spool.close()
        if len(self.entries) != len(self.tables):
            raise SnapshotError("A part of the database was not written; no archive was kept.")
        total = sum(self.rows)
        self.report("database", total, total, "rows", "Database written", force=True)  # 100 %
        return self.entries

    def _other(self, slot, spool, snapshot):
        try:
            with self.engine.connect() as connection, connection.begin():
                _consistent_reading(connection, snapshot)
                self._pieces(slot, spool, connection)
        except BaseException as error:  # handed to the calling thread, which raises it
            self.errors.append(error)
            self.stop.set()

    def _pieces(self, slot, spool, connection):
        offset = 0
        for table, number in self.work[slot]:
            self._check()  # not one more piece once another connection failed (or the run was stopped)
            out = _SpoolWriter(spool.fileno(), offset)
            base = self.rows[slot]

            def on_rows(n, base=base, table=table):
                self.rows[slot] = base + n
                self._check()
                if slot == 0:
                    self._progress(table.name)

            with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(out, closefd=False) as compressor:
                counter = _CountingWriter(compressor)
                rows = database.dump_table(connection, table, counter.write, self.redactions, on_rows=on_rows,
                                           pages=self.pieces[table.name][number])
            self.rows[slot] = base + rows
            with self.lock:
                self.done[(table.name, number)] = (spool.fileno(), offset, out.offset - offset, rows, counter.bytes)
            offset = out.offset
            if slot == 0:
                self._assemble()

    def _check(self):
        if self.errors:
            raise self.errors[0]
        if self.stop.is_set() or (self.writer.stop is not None and self.writer.stop.is_set()):
            raise container.Stopped()

    def _progress(self, table=""):
        done = sum(self.rows)
        self.report("database", done, max(self.grand_total, done), "rows", table)

    def _assemble(self):
        """Write every member whose frames are all written, in table order (this thread only)."""
        while self.next < len(self.tables):
            table = self.tables[self.next]
            with self.lock:
                pieces = [self.done.get((table.name, n)) for n in range(len(self.pieces[table.name]))]
            if None in pieces:
                return
            member = f"{DB_PREFIX}{table.name}.tsv.zst"
            with self.writer.member(member) as out:
                for fd, offset, length, _, _ in pieces:
                    end = offset + length
                    while offset < end:
                        data = os.pread(fd, min(files.CHUNK, end - offset), offset)
                        if not data:
                            raise SnapshotError("A part of the database could not be read back; no archive was kept.")
                        out.write(data)
                        offset += len(data)
            self.entries.append({"name": table.name, "member": member, "rows": sum(p[3] for p in pieces),
                            "raw_bytes": sum(p[4] for p in pieces), "columns": database.table_columns(table)})
            self.next += 1


class _SpoolWriter:
    """Appends to a spool file at a known offset (positioned writes: each connection has its own file)."""

    def __init__(self, fd, offset):
        self.fd, self.offset = fd, offset

    def write(self, data):
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.offset)
            view, self.offset = view[n:], self.offset + n
        return len(data)

    def flush(self):
        pass


class _CountingWriter:
    def __init__(self, target):
        self.target, self.bytes = target, 0

    def write(self, data):
        self.bytes += len(data)
        self.target.write(data)


def _verify_members(writer, signing_key):
    """Check a freshly written archive without reading its member data again: the checksums were computed as
    the bytes were written; the end records, every central directory record and local header, and the signed
    manifest's bytes are read back and compared with what was written."""
    writer.verify(signing_key)


def inspect_archive(path, *, signing_key, schema_revision, metadata, max_total_bytes=None,
                    max_members=DEFAULT_MAX_MEMBERS, max_row_bytes=DEFAULT_MAX_ROW_BYTES,
                    max_value_bytes=DEFAULT_MAX_VALUE_BYTES, progress=None):
    """Check everything before anything is touched; return what the archive holds.

    ``max_members`` caps the entries (refused from the ZIP's end record, before anything else is read);
    ``max_row_bytes`` and ``max_value_bytes`` cap one row and one value of table data, as encoded.
    """
    report = Reporter(progress)
    with Reader(path, signing_key, max_members=max_members) as reader:
        summary = _inspect(reader, schema_revision, metadata, max_total_bytes, max_members,
                           (max_row_bytes, max_value_bytes), report)
    report("done", 1, 1, "archives", "The archive is valid", force=True)
    return summary


def _inspect(reader, schema_revision, metadata, max_total_bytes, max_members, limits, report, checked_later=()):
    """Every check of an archive; members in ``checked_later`` (files a restore stages, checking each one's
    SHA-256 as it writes it) are not read here."""
    summary = _check_manifest(reader, schema_revision, metadata, max_total_bytes, max_members)
    tables = {entry["member"]: entry for entry in reader.manifest["tables"] if "member" in entry}
    database_file = reader.manifest.get("database") or {}
    # A FileMembers (what restores pass) covers every files/ member by its prefix: no set of a million names.
    later = checked_later.covers if hasattr(checked_later, "covers") else checked_later.__contains__
    total = sum(meta["size"] for name, meta, _ in reader.iter_members() if not later(name))
    done = 0
    for name, meta, member in reader.iter_members():  # streamed, in archive order
        entry = tables.get(name)
        if later(name):
            continue
        if name == database_file.get("member"):  # the SQLite database file: checksum, then SQLite's own checks
            sqlitefile.check(reader, store_tables(metadata), report, (done, total), limits)
            done += meta["size"]
            continue
        if entry is None:
            done += files.copy_member(reader, name, meta, None, report, (done, total), entry=member)
            continue
        _check_expansion(reader, entry)  # a declared bomb is refused before a byte is decompressed
        check = _TableCheck(entry, limits)
        done += files.copy_member(reader, name, meta, check, report, (done, total), phase="verify", entry=member)
        check.finish()
    return summary


def _check_manifest(reader, schema_revision, metadata, max_total_bytes, max_members):
    """What the schema cannot say (the Reader has checked the format, its version and the schema)."""
    m = reader.manifest
    name = reader.path.name
    if m["schema_revision"] != schema_revision:
        raise IncompatibleArchive(
            f"{name} was made with store schema revision {m['schema_revision']!r}, but this application is at "
            f"{schema_revision!r}. Restore it with the application version that made it (app "
            f"{m['app_version']!r}), or upgrade/downgrade this one to match; nothing was changed.")
    if max_members is not None and len(reader.entries) > max_members:
        raise UnsafeArchive(f"{name} holds {len(reader.entries):,} members, over the limit of {max_members:,}; it "
                            "was refused and nothing was changed.")
    if reader.version == 1:  # format 2: the reader checked all this as it walked the list with the directory
        members = m["members"]
        expected = set(members) | {container.MANIFEST, container.SIGNATURE}
        extra, missing = set(reader.entries) - expected, expected - set(reader.entries)
        if extra:
            raise UnsafeArchive(f"{name} contains {sorted(extra)[0]!r}, which its manifest does not list; refused, "
                                "nothing was changed.")
        if missing:
            raise ArchiveInvalid(f"{name} is missing {sorted(missing)[0]!r}; it is incomplete. Nothing was changed.")
        for member, meta in members.items():
            if not member.startswith((DB_PREFIX, files.PREFIX)):
                raise UnsafeArchive(f"{name} lists a member {member!r} this tool never writes; refused.")
            if reader.entries[member].file_size != meta["size"]:
                raise UnsafeArchive(f"The archive member {member!r} is {reader.entries[member].file_size} bytes but "
                                    f"the manifest says {meta['size']}; refused, nothing was changed.")
    _check_tables(name, m, metadata)
    file_members = files.file_members(m)
    files.check_layout(file_members)
    file_bytes = file_members.total_bytes()
    if max_total_bytes is not None and file_bytes > max_total_bytes:
        raise InsufficientSpace(f"{name} would restore {file_bytes / 1e6:.0f} MB of files, over the configured limit "
                                f"of {max_total_bytes / 1e6:.0f} MB; nothing was changed.")
    if _has(m["parts"], "files") != bool(file_members) and file_members:
        raise ArchiveInvalid(f"{name} holds files but says it does not; nothing was changed.")
    try:
        created_at = datetime.strptime(m["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise ArchiveInvalid(f"{name} has an invalid manifest: created_at {m['created_at']!r} is not a real date; "
                             "nothing was changed.") from None
    return ArchiveSummary(
        name=name, kind=m["kind"], parts=m["parts"], store=m["store"], created_at=created_at,
        created_by=m["created_by"], schema_revision=m["schema_revision"], app_version=m["app_version"],
        source_engine=m["source_engine"], label=m["label"], safety=m["safety"],
        row_counts={t["name"]: t["rows"] for t in m["tables"]}, file_count=len(file_members), file_bytes=file_bytes,
        archive_bytes=reader.size, skipped=list(m["files"]["skipped"]),
    )


def _check_tables(name, manifest, metadata):
    known = {t.name: t for t in store_tables(metadata)}
    seen, used = set(), set()
    database_members = _database_members(manifest)
    database_file = manifest.get("database")
    if database_file is not None:  # the database part is one SQLite file (sqlitefile); tables have no members
        if database_file["member"] != sqlitefile.MEMBER or database_file["member"] not in database_members \
                or not _has(manifest["parts"], "database"):
            raise ArchiveInvalid(f"{name}: its database file is not where its manifest says; nothing was changed.")
        used.add(database_file["member"])
    for entry in manifest["tables"]:
        table = known.get(entry["name"])
        if table is None:
            raise UnsafeArchive(f"{name} holds a table {entry['name']!r} that is not a store table of this "
                                "application; refused, nothing was changed.")
        if entry["name"] in seen:
            raise UnsafeArchive(f"{name} lists table {entry['name']!r} twice; refused.")
        seen.add(entry["name"])
        columns = [c["name"] for c in entry["columns"]]
        if sorted(columns) != sorted(c.name for c in table.columns) or len(columns) != len(set(columns)):
            raise IncompatibleArchive(f"{name}: the columns of table {entry['name']!r} do not match this "
                                      "application's schema; nothing was changed.")
        if database_file is not None:
            if "member" in entry or "raw_bytes" in entry:
                raise UnsafeArchive(f"{name}: table {entry['name']!r} names a data member of its own although the "
                                    "database is one file; refused, nothing was changed.")
            if any(c["type"] != tablecodec.type_tag(table.c[c["name"]].type) for c in entry["columns"]):
                raise IncompatibleArchive(f"{name}: the column types of table {entry['name']!r} do not match this "
                                          "application's schema; nothing was changed.")
            continue
        if "member" not in entry or "raw_bytes" not in entry:
            raise ArchiveInvalid(f"{name}: table {entry['name']!r} has no data member of its own; nothing was "
                                 "changed.")
        if not entry["member"].startswith(DB_PREFIX) or entry["member"] not in database_members \
                or entry["member"] in used:
            raise ArchiveInvalid(f"{name}: table {entry['name']!r} has no data member of its own; nothing was "
                                 "changed.")
        used.add(entry["member"])
    if _has(manifest["parts"], "database") and seen != set(known):
        missing = sorted(set(known) - seen)
        raise ArchiveInvalid(f"{name} lacks table {missing[0]!r}; it is incomplete. Nothing was changed.")
    unused = sorted(m for m in database_members if m not in used)
    if unused:
        raise UnsafeArchive(f"{name} lists a member {unused[0]!r} that belongs to no table; refused, nothing was "
                            "changed.")


def _database_members(manifest):
    """{name: meta} of the database/ members (few): format 2 holds them apart, without walking the files."""
    members = manifest["members"]
    if hasattr(members, "database"):
        return members.database()
    return {name: meta for name, meta in members.items() if name.startswith(DB_PREFIX)}


def _check_expansion(reader, entry):
    meta = reader.manifest["members"][entry["member"]]
    raw = entry["raw_bytes"]
    if raw > max(meta["size"], 1) * MAX_EXPANSION + 1024 * 1024:
        raise UnsafeArchive(f"The table data of {entry['name']!r} claims an implausible size (a decompression "
                            "bomb?); refused, nothing was changed.")


def _mib(size):
    return f"{size / (1024 * 1024):g} MiB" if size >= 1024 * 1024 else f"{size} bytes"


def _too_large(table, error):
    """The one-line reason for a row or value over its limit (without the ending, which depends on the stage)."""
    return f"Table {table!r} has a {error.what} longer than {_mib(error.limit)}, the limit for one {error.what}"


class _TableCheck:
    """Takes a table member's compressed bytes as inspection reads them and decompresses them on the way
    (memory stays flat): refuses data larger or smaller than declared, another row count, a cut-off last
    row, and any row or value over the limits, before the store is touched."""

    def __init__(self, entry, limits):
        self.entry, self.raw = entry, 0
        self.scanner = tablecodec.RowScanner(*limits)
        decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
        self.stream = decompressor.stream_writer(_Sink(self._take), write_size=files.CHUNK, closefd=False)

    def write(self, data):
        try:
            self.stream.write(data)
        except zstandard.ZstdError as error:
            raise ArchiveInvalid(f"The table data of {self.entry['name']!r} is corrupt ({_first_line(error)}); "
                                 "nothing was changed.") from None

    def _take(self, data):
        self.raw += len(data)
        if self.raw > self.entry["raw_bytes"]:
            raise UnsafeArchive(f"The table data of {self.entry['name']!r} is larger than declared (a decompression "
                                "bomb?); it was refused and nothing was changed.")
        try:
            self.scanner.feed(data)
        except tablecodec.RowTooLarge as error:
            raise UnsafeArchive(f"{_too_large(self.entry['name'], error)}; the archive was refused and nothing was "
                                f"changed. If such {error.what}s are genuine, raise that limit.") from None

    def finish(self):
        self.write(b"")
        self.stream.flush()
        table = self.entry["name"]
        if self.raw != self.entry["raw_bytes"]:
            raise ArchiveInvalid(f"The table data of {table!r} is shorter than declared; the archive is damaged. "
                                 "Nothing was changed.")
        if self.scanner.unfinished:
            raise ArchiveInvalid(f"Table {table}: the data ends in the middle of a row; nothing was changed.")
        if self.scanner.rows != self.entry["rows"]:
            raise ArchiveInvalid(f"Table {table}: the archive declares {self.entry['rows']} rows but holds "
                                 f"{self.scanner.rows}; nothing was changed.")


class _Sink:
    def __init__(self, write):
        self.write = write

    def flush(self):
        pass


def _table_chunks(reader, entry, limits=(DEFAULT_MAX_ROW_BYTES, DEFAULT_MAX_VALUE_BYTES)):
    """Decompressed table data, stopping at the size the manifest declares, and at any row or value over the
    limits (inspection refused those already; this holds even if the archive changed since). A table of an
    archive whose database is a SQLite file is read from that file (checked by the inspection)."""
    if "member" not in entry:
        types = {c["name"]: c["type"] for c in entry["columns"]}
        yield from sqlitefile.table_chunks(reader, entry, types, limits)
        return
    meta = reader.manifest["members"][entry["member"]]
    limit = entry["raw_bytes"]
    scanner = tablecodec.RowScanner(*limits)
    seen = 0
    with reader.open(entry["member"], meta["size"]) as raw:
        decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
        with decompressor.stream_reader(raw, read_across_frames=True) as stream:
            while True:
                try:
                    chunk = stream.read(files.CHUNK)
                except zstandard.ZstdError as error:
                    raise RestoreFailed(f"The table data of {entry['name']!r} is corrupt ({_first_line(error)}); "
                                        "the restore was rolled back and the store is unchanged.") from None
                if not chunk:
                    break
                seen += len(chunk)
                if seen > limit:
                    raise RestoreFailed(f"The table data of {entry['name']!r} is larger than declared; the restore "
                                        "was rolled back and the store is unchanged.")
                try:
                    scanner.feed(chunk)
                except tablecodec.RowTooLarge as error:
                    raise RestoreFailed(f"{_too_large(entry['name'], error)}; the restore was rolled back and the "
                                        "store is unchanged.") from None
                yield chunk


def _check_database_file(reader, metadata, limits):
    """Before rows are read out of an archive's SQLite database file for a person to look at (not to restore):
    its checksum, size, header and schema; SQLite refuses what it cannot read as it reads."""
    if reader.manifest.get("database"):
        _check_tables(reader.name, reader.manifest, metadata)
        sqlitefile.check(reader, store_tables(metadata), Reporter(None), (0, 0), limits, thorough=False)


@dataclass
class RestoreResult:
    parts: str
    row_counts: dict
    file_count: int
    file_bytes: int


def read_table(path, *, signing_key, metadata, table, max_row_bytes=DEFAULT_MAX_ROW_BYTES,
               max_value_bytes=DEFAULT_MAX_VALUE_BYTES):
    """The rows of one store table in an archive, as dicts keyed by column name: for reviewing a small
    table (the accounts) before a restore. Values are parsed by this code's schema, never the archive's;
    an archive without that table gives no rows."""
    known = {t.name: t for t in store_tables(metadata)}[table]
    with Reader(path, signing_key) as reader:
        entry = next((e for e in reader.manifest["tables"] if e["name"] == table), None)
        if entry is None:
            return []
        names = [c["name"] for c in entry["columns"]]
        if sorted(names) != sorted(c.name for c in known.columns):
            raise IncompatibleArchive(f"{reader.name}: the columns of table {table!r} do not match this "
                                      "application's schema; nothing was changed.")
        parsers = [tablecodec.parser(tablecodec.type_tag(known.c[name].type)) for name in names]
        _check_database_file(reader, metadata, (max_row_bytes, max_value_bytes))
        chunks = _table_chunks(reader, entry, (max_row_bytes, max_value_bytes))
        return [dict(zip(names, tablecodec.parse_line(line, parsers)))
                for lines in database.split_lines(chunks, table) for line in lines]


def archive_to_csv(path, target, *, signing_key, metadata, max_row_bytes=DEFAULT_MAX_ROW_BYTES,
                   max_value_bytes=DEFAULT_MAX_VALUE_BYTES):
    """Write a ZIP of one CSV per table (a header row, then the rows) from an archive's tables, for a
    person to open in a spreadsheet. Rows stream from the archive (already redacted when it is an
    export); values are parsed by this code's schema. Returns {table: rows}."""
    known = {t.name: t for t in store_tables(metadata)}
    counts = {}
    partial = Path(f"{target}.part")
    try:
        with Reader(path, signing_key) as reader, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
            _check_database_file(reader, metadata, (max_row_bytes, max_value_bytes))
            for entry in reader.manifest["tables"]:
                table = known.get(entry["name"])
                if table is None:
                    continue
                names = [c["name"] for c in entry["columns"]]
                parsers = [tablecodec.parser(tablecodec.type_tag(table.c[name].type)) for name in names]
                chunks = _table_chunks(reader, entry, (max_row_bytes, max_value_bytes))
                with out.open(f"{table.name}.csv", "w") as member, \
                        io.TextIOWrapper(member, encoding="utf-8", newline="") as text:
                    writer = csv.writer(text)
                    writer.writerow(names)
                    rows = 0
                    for lines in database.split_lines(chunks, table.name):
                        for line in lines:
                            writer.writerow(["" if v is None else v for v in tablecodec.parse_line(line, parsers)])
                            rows += 1
                counts[table.name] = rows
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return counts


def restore_archive(path, *, engine, metadata, uploads_dir, signing_key, schema_revision, parts,
                    max_total_bytes=None, max_members=DEFAULT_MAX_MEMBERS, max_row_bytes=DEFAULT_MAX_ROW_BYTES,
                    max_value_bytes=DEFAULT_MAX_VALUE_BYTES, keep_tables=(), progress=None, maintenance=None,
                    build=None, _fail_after_rows=None):
    """Replace the chosen parts of the store; all of it happens, or none of it.

    The limits are inspect_archive's; the archive is checked completely before anything changes. Tables
    named in ``keep_tables`` keep today's rows (the archive's rows must then fit them: a row that refers to
    an account that does not exist today fails the restore, which rolls back).

    ``maintenance`` (a context manager factory, e.g. the app's storefront maintenance) is entered only for
    the steps that change the store: loading the rows, swapping the files in, committing. Checking the
    archive and writing the files into their staging folder (each checked against its SHA-256 as it is
    written, instead of in a separate pass) happen before it; deleting the old files after it.

    On PostgreSQL (unless tables are kept) the rows are loaded, their keys and indexes built and checked, in a
    schema of their own beside the live tables, before maintenance; inside it the tables are only swapped (one
    short transaction, with the files). ``build(connection)`` creates the tables there (default: from
    ``metadata``; the app passes its migrations)."""
    report = Reporter(progress)
    journal.recover(uploads_dir, engine)
    limits = (max_row_bytes, max_value_bytes)
    with Reader(path, signing_key, max_members=max_members) as reader:
        m = reader.manifest
        if m["kind"] != "backup":
            raise IncompatibleArchive(f"{reader.name} is an export, not a backup: exports leave out passwords and "
                                      "secrets and cannot be restored. Restore a backup instead; nothing was changed.")
        if parts not in PARTS or not (parts == m["parts"] or m["parts"] == "both"):
            raise IncompatibleArchive(f"{reader.name} holds {m['parts']}; it cannot restore {parts}. Nothing was "
                                      "changed.")
        staging_checks = files.file_members(m) if _has(parts, "files") else set()
        # A SQLite database file is checked while the files are staged (both wait on different things).
        database_member = (m.get("database") or {}).get("member")
        alongside = bool(database_member) and _has(parts, "files") and engine.dialect.name != "postgresql"
        if alongside:
            staging_checks = _CheckedLater(staging_checks, database_member)
        summary = _inspect(reader, schema_revision, metadata, max_total_bytes, max_members, limits, report,
                           checked_later=staging_checks)
        swap = _has(parts, "database") and engine.dialect.name == "postgresql" and not keep_tables
        staged = files.StagedFiles(uploads_dir) if _has(parts, "files") else None
        try:
            if alongside:
                _alongside(lambda: sqlitefile.check(reader, store_tables(metadata), Reporter(None), (0, 0), limits),
                           lambda relay: staged.extract(reader, files.file_members(m), relay), report)
            elif staged is not None and not swap:  # a swap stages the files while its rows load
                staged.extract(reader, files.file_members(m), report)
            # A SQLite store's own database file, into a SQLite store of exactly its schema: copied page for page.
            whole_file = _has(parts, "database") and bool(database_member) and not keep_tables \
                and sqlitefile.same_schema(reader, engine, journal.MARKER_TABLE)
            report("done", 1, 1, "archives", "The archive is valid", force=True)
            if swap:
                stage = (lambda quiet: staged.extract(reader, files.file_members(m), quiet)) if staged else None
                _restore_by_swap(reader, engine, metadata, staged, stage, report, limits,
                                 maintenance or nullcontext, build or metadata.create_all, _fail_after_rows)
            elif whole_file:
                if _fail_after_rows is not None:
                    raise RestoreFailed("Injected failure (tests only); the restore was rolled back.")
                sqlitefile.restore(reader, engine, staged, maintenance or nullcontext, report, journal.mark_committed)
            else:
                with (maintenance or nullcontext)():
                    if _has(parts, "database"):
                        _restore_database(reader, engine, metadata, staged, report, limits, keep_tables,
                                          _fail_after_rows)
                    elif staged is not None:
                        report("swap", 0, 1, "steps", "Moving the restored files into place", force=True)
                        staged.swap_in()
        except BaseException:
            if staged is not None:
                _settle(staged, engine, uploads_dir)
            raise
    if staged is not None:
        staged.commit()  # the old tree goes once the store is back (after maintenance), not inside it
        journal.tidy(uploads_dir, engine)  # the commit marker is no longer needed: the store keeps only its tables
    report("done", 1, 1, "restores", "Restore complete", force=True)
    restored_counts = {t: n for t, n in summary.row_counts.items() if t not in keep_tables}
    return RestoreResult(parts=parts, row_counts=restored_counts if _has(parts, "database") else {},
                         file_count=summary.file_count if _has(parts, "files") else 0,
                         file_bytes=summary.file_bytes if _has(parts, "files") else 0)


class _CheckedLater:
    """The members a restore checks as it writes them, for ``_inspect``: the files (by their prefix, so no set of
    every name) and the SQLite database file, checked beside the files' staging."""

    def __init__(self, file_members, database_member):
        self.file_members, self.database_member = file_members, database_member

    def covers(self, name):
        return name == self.database_member or self.file_members.covers(name)


def _settle(staged, engine, uploads_dir):
    """A restore that raised: undo the files, unless the rows committed with the marker before the error (a
    progress report or the end of maintenance can fail after the commit): then the new files stay. When that
    cannot be known (the database is gone), the journal is left for the next recovery, which decides."""
    if staged.swapped:
        try:
            committed = journal.committed(engine, staged.token)
        except Exception:
            return
        if committed:
            staged.commit()
            journal.tidy(uploads_dir, engine)
            return
    staged.undo()


def _alongside(background, foreground, report):
    """``background()`` in a thread while ``foreground(relay)`` runs here with a progress callback that also
    raises the thread's error; the thread is always waited for (it reads the archive this call's caller closes)."""
    errors = []

    def run():
        try:
            background()
        except BaseException as error:  # handed to this thread
            errors.append(error)

    def relay(*args, **kwargs):
        if errors:
            raise errors[0]
        report(*args, **kwargs)

    thread = threading.Thread(target=run, name="snapshot-check", daemon=True)
    thread.start()
    try:
        foreground(relay)
        report("verify", 0, None, "checks", "Checking the database file", force=True)
        while thread.is_alive():
            thread.join(0.2)
            report("verify", 0, None, "checks", "Checking the database file")
    finally:
        thread.join()
    if errors:
        raise errors[0]


def _restore_database(reader, engine, metadata, staged, report, limits, keep_tables, fail_after_rows):
    unknown = set(keep_tables) - {t.name for t in store_tables(metadata)}
    if unknown:
        raise SnapshotError(f"Cannot keep {sorted(unknown)[0]!r}: it is not a store table; nothing was changed.")
    tables = [t for t in store_tables(metadata) if t.name not in keep_tables]
    entries = {entry["name"]: entry for entry in reader.manifest["tables"] if entry["name"] not in keep_tables}
    total = sum(entry["rows"] for entry in entries.values())
    done = 0
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            report("load", 0, total, "rows", "Removing the current rows", force=True)
            constraints = database.set_aside_constraints(connection, tables)
            database.delete_all(connection, tables)
            for table in tables:
                entry = entries[table.name]
                columns = [c["name"] for c in entry["columns"]]
                base = done
                chunks = _table_chunks(reader, entry, limits)
                database.load_table(connection, table, columns, chunks, entry["rows"],
                                    on_rows=lambda n: report("load", base + n, total, "rows", table.name))
                done += entry["rows"]
                if fail_after_rows is not None and done >= fail_after_rows:
                    raise RestoreFailed("Injected failure (tests only); the restore was rolled back.")
            report("load", done, total, "rows", "Checking keys and building indexes", force=True)
            database.put_back_constraints(connection, constraints)
            database.reset_sequences(connection, tables)
            if staged is not None:
                journal.mark_committed(connection, staged.token)
                report("swap", done, total, "rows", "Moving the restored files into place", force=True)
                staged.swap_in()
            report("commit", done, total, "rows", "Committing", force=True)
            transaction.commit()
        except SnapshotError:
            _roll_back(transaction)
            raise
        except Exception as error:
            _roll_back(transaction)
            raise RestoreFailed(f"Loading the database failed ({type(error).__name__}: {_first_line(error)}); "
                                "everything was rolled back and the store is unchanged.") from error


def _restore_by_swap(reader, engine, metadata, staged, stage, report, limits, maintenance, build, fail_after_rows):
    """PostgreSQL: load into a new schema while the store is open (``stage``, when there are files, writes them
    into their staging folder at the same time), then swap the tables in under maintenance. The live tables
    are untouched until the swap's transaction commits; the old ones are dropped after."""
    tables = store_tables(metadata)
    entries = {entry["name"]: entry for entry in reader.manifest["tables"]}
    total = sum(entry["rows"] for entry in entries.values())
    token = secrets.token_hex(6)
    new_schema, old_schema = f"{database.NEW_SCHEMA}{token}", f"{database.OLD_SCHEMA}{token}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{new_schema}"')
    side = sa.create_engine(database.with_search_path(engine.url, new_schema), poolclass=sa.pool.NullPool)
    committed = False
    try:
        with side.begin() as connection:
            build(connection)
        _load_beside(side, reader, tables, entries, total, report, limits, fail_after_rows, stage)
        done = total
        with maintenance(), engine.connect() as connection:
            transaction = connection.begin()
            try:
                report("swap", done, total, "rows", "Swapping the restored tables in", force=True)
                database.swap_tables(connection, tables, new_schema, old_schema)
                if staged is not None:
                    journal.mark_committed(connection, staged.token)
                    staged.swap_in()
                report("commit", done, total, "rows", "Committing", force=True)
                transaction.commit()
                committed = True
            except BaseException:
                _roll_back(transaction)
                raise
    except SnapshotError:
        raise
    except Exception as error:
        if committed:  # after the commit (leaving maintenance, say): the store is the restored one; say what failed
            raise
        raise RestoreFailed(f"Loading the database failed ({type(error).__name__}: {_first_line(error)}); "
                            "everything was rolled back and the store is unchanged.") from error
    finally:
        side.dispose()
        try:  # the old tables after a swap, or the unused new ones: after maintenance, never inside it
            database.drop_restore_schemas(engine, only={new_schema, old_schema})
        except Exception:  # left for the next restore's recovery; the outcome above stands
            pass


# Connections that load a restore's tables (and build their indexes) at once, as pg_restore -j2 does. The
# largest table, from SPLIT_LOAD_BYTES of rows, is loaded by all of them together.
LOAD_CONNECTIONS = 2
SPLIT_LOAD_BYTES = 8 * 1024 * 1024
# Server memory for one index build (each loading connection may build one at a time), as pg_restore's
# documentation advises raising it for a restore: 20-25 % faster builds of a 2-million-row table than at 64 MB.
INDEX_BUILD_MEMORY = "256MB"


def _load_beside(side, reader, tables, entries, total, report, limits, fail_after_rows, stage=None):
    """The tables loaded into the side schema on LOAD_CONNECTIONS connections at once while ``stage(report)``
    writes the files into their staging folder. Every key and index is set aside for the load (primary keys too,
    as pg_restore does) and the work is scheduled as it becomes possible, on whichever connection is free: a
    table's keys and indexes as soon as its rows are in, a foreign key once its table is loaded and the table it
    refers to has its keys, a table's statistics (ANALYZE) after its keys; never two statements on one table at
    once (each locks it). The rows of each table from SPLIT_LOAD_BYTES are shared out between the connections
    at line breaks (its row count is checked on their sum); smaller tables are loaded whole, the largest first.
    The side schema is not the store, so each piece of work commits on its own; only the swap must be one
    transaction. Progress is reported from this thread only (the files' progress is kept, and shown with the
    rows'); a failure anywhere stops the rest and is raised here."""
    with side.begin() as connection:
        keys, foreign = database.set_aside_keys(connection, tables)
    stop = threading.Event()
    plan = _LoadPlan(tables, entries, keys, foreign, stop, lambda entry: _table_chunks(reader, entry, limits))
    loaded = [0] * LOAD_CONNECTIONS

    def work(slot):
        while (task := plan.take()) is not None:
            kind, table, payload = task
            if kind != "load":
                with side.begin() as connection:
                    if kind == "key":  # a sort in memory, not in temporary files (the server default is 64 MB)
                        connection.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
                    connection.exec_driver_sql(payload)
            else:
                entry, base = entries[table.name], loaded[slot]

                def on_rows(n, base=base):
                    if stop.is_set():
                        raise RestoreFailed("Stopped: the other part of the load failed.")
                    loaded[slot] = base + n

                columns = [c["name"] for c in entry["columns"]]
                with side.begin() as connection:
                    if payload is None:
                        rows = database.load_table(connection, table, columns, _table_chunks(reader, entry, limits),
                                                   entry["rows"], on_rows=on_rows)
                    else:
                        rows = database.load_rows(connection, table, columns, payload.blocks(), on_rows=on_rows)
                loaded[slot] = base + rows
                if payload is not None:
                    payload.finished(rows)
            plan.done(task)

    staging = {"latest": None, "sent": None}

    def staged_quietly(phase, done, total_bytes, unit, message="", force=False):
        if stop.is_set():
            raise RestoreFailed("Stopped: the other part of the restore failed.")
        staging["latest"] = (phase, done, total_bytes, unit, message)

    def tick():
        if staging["latest"] != staging["sent"]:  # the files' progress, relayed from this thread
            staging["sent"] = staging["latest"]
            report(*staging["sent"], force=True)
        if plan.loading():
            report("load", sum(loaded), total, "rows", "Loading the rows beside the live store", force=True)
        else:
            report("load", total, total, "rows", "Checking keys and building indexes")

    tasks = [lambda slot=slot: work(slot) for slot in range(LOAD_CONNECTIONS)]
    if stage is not None:
        tasks.append(lambda: stage(staged_quietly))
    report("load", 0, total, "rows", "Loading the rows beside the live store", force=True)
    try:
        _together(tasks, stop, tick)
    finally:
        plan.close()
    if staging["latest"] != staging["sent"]:
        report(*staging["latest"], force=True)
    if fail_after_rows is not None and total >= fail_after_rows:
        raise RestoreFailed("Injected failure (tests only); the restore was rolled back.")
    report("load", total, total, "rows", "Checking keys and building indexes", force=True)
    with side.begin() as connection:
        database.reset_sequences(connection, tables)


class _LoadPlan:
    """What the loading connections do next (``take``, then ``done``): a loaded table's keys and indexes first
    (the other connection may still be loading), then foreign keys that have what they need, then rows (the
    tables with most rows first; a shared table is one load task per connection), then statistics. A statement
    waits while another one holds one of its tables (index builds of one table share it)."""

    def __init__(self, tables, entries, keys, foreign, stop, open_rows):
        self.stop, self.condition = stop, threading.Condition()
        # Most rows first: its keys and indexes (the longest chain of work after the load) can start soonest.
        order = sorted(tables, key=lambda t: (-entries[t.name]["rows"], -_table_weight(entries[t.name])))
        self.tables = {table.name: table for table in tables}
        self.loads, self.shared = [], []
        for table in order:
            entry = entries[table.name]
            if LOAD_CONNECTIONS > 1 and _table_weight(entry) >= SPLIT_LOAD_BYTES:
                shared = _SharedRows(table.name, entry, LOAD_CONNECTIONS, open_rows)
                self.shared.append(shared)
                self.loads += [("load", table, shared)] * LOAD_CONNECTIONS
            else:
                self.loads.append(("load", table, None))
        self.pending = {table.name: sum(1 for task in self.loads if task[1] is table) for table in tables}
        self.keys = {name: list(keys.get(name, [])) for name in self.tables}  # not handed out yet
        self.keys_left = {name: len(statements) for name, statements in self.keys.items()}  # not done yet
        self.foreign = list(foreign)
        self.statistics = [table.name for table in order]
        self.running, self.busy, self.holds = 0, {}, {}  # tables the running statements hold, and by which
        self.rank = {table.name: number for number, table in enumerate(order)}

    def _next(self):
        """The next task that can run now, and the tables it holds: {name: True} alone, {name: False} shared."""
        for name in sorted((n for n, k in self.keys.items() if k and not self.pending[n]), key=self.rank.get):
            statement, exclusive = self.keys[name][0]
            if (name not in self.busy) if exclusive else (self.busy.get(name) is not True):
                self.keys[name].pop(0)
                return ("key", self.tables[name], statement), {name: exclusive}
        for fk in self.foreign:
            name, referenced, statement = fk
            if not self.pending[name] and not self.keys_left.get(referenced, 0) and not self.keys_left[name] \
                    and name not in self.busy and referenced not in self.busy:
                self.foreign.remove(fk)
                return ("foreign", self.tables[name], statement), {name: True, referenced: True}
        if self.loads:
            return self.loads.pop(0), {}
        for name in self.statistics:
            if not self.pending[name] and not self.keys_left[name] and name not in self.busy \
                    and not any(fk[0] == name or fk[1] == name for fk in self.foreign):
                self.statistics.remove(name)
                return ("analyze", self.tables[name], f"ANALYZE {self._quoted(name)}"), {name: True}
        return None, None

    def _quoted(self, name):
        return '"' + name.replace('"', '""') + '"'

    def _finished(self):
        return not (self.loads or any(self.keys.values()) or self.foreign or self.statistics)

    def take(self):
        with self.condition:
            while not self.stop.is_set():
                task, holds = self._next()
                if task is not None:
                    self.running += 1
                    for name, exclusive in holds.items():  # True: held alone; else how many share it
                        self.busy[name] = True if exclusive else self.busy.get(name, 0) + 1
                    if holds:
                        self.holds[id(task)] = holds
                    return task
                if not self.running:
                    if self._finished():
                        return None
                    raise RestoreFailed("The restore could not order its remaining work (a foreign key to a table "
                                        "that was not restored?); the store is unchanged.")
                self.condition.wait(0.2)
            return None

    def done(self, task):
        with self.condition:
            self.running -= 1
            for name, exclusive in self.holds.pop(id(task), {}).items():
                if exclusive or self.busy[name] == 1:
                    del self.busy[name]
                else:
                    self.busy[name] -= 1
            kind, table, _ = task
            if kind == "load":
                self.pending[table.name] -= 1
            elif kind == "key":
                self.keys_left[table.name] -= 1
            self.condition.notify_all()

    def loading(self):
        with self.condition:
            return any(self.pending.values())

    def close(self):
        for shared in self.shared:
            shared.close()


class _SharedRows:
    """One table's rows (decompressed once) handed out to the connections that load it together, in blocks that
    end at a line break; the connections' row counts must add up to the manifest's."""

    def __init__(self, name, entry, feeders, open_rows):
        self.name, self.entry, self.feeders, self.open_rows = name, entry, feeders, open_rows
        self.lock = threading.Lock()
        self.chunks, self.pending, self.rows, self.broken = None, [], 0, False

    def blocks(self):
        while True:
            with self.lock:
                block = self._next()
            if block is None:
                return
            yield block

    def _next(self):
        if self.broken:  # the connection that met the fault reports it; the others just stop
            return None
        if self.chunks is None:
            self.chunks = self.open_rows(self.entry)
        try:
            return self._take()
        except BaseException:
            self.broken = True
            raise

    def _take(self):
        for chunk in self.chunks:
            cut = chunk.rfind(b"\n") + 1
            if not cut:
                self.pending.append(chunk)  # joined once, when the row's end arrives
                continue
            if self.pending:
                head, self.pending = b"".join(self.pending) + chunk[:cut], []
            else:
                head = chunk[:cut]
            if cut < len(chunk):
                self.pending.append(chunk[cut:])
            return head
        if self.pending:
            raise RestoreFailed(f"Table {self.name}: the data ends in the middle of a row; the restore was rolled "
                                "back and the store is unchanged.")
        return None

    def finished(self, rows):
        with self.lock:
            self.rows += rows
            self.feeders -= 1
            if self.feeders == 0 and self.rows != self.entry["rows"]:
                raise RestoreFailed(f"Table {self.name}: the archive declares {self.entry['rows']} rows but holds "
                                    f"{self.rows}; the restore was rolled back and the store is unchanged.")

    def close(self):
        if self.chunks is not None:
            self.chunks.close()


def _table_weight(entry):
    """A table's data in bytes: as the archive declares it, or an estimate (64 bytes a row) when the archive holds
    a SQLite database file, whose tables have no data of their own."""
    return entry.get("raw_bytes", entry["rows"] * 64)


def _together(tasks, stop, tick, interval=0.2):
    """Run ``tasks`` in threads and wait for all, calling ``tick`` (progress, where a cancellation is raised)
    from this thread; the first error stops the others (they look at ``stop``) and is raised here."""
    errors = []

    def run(task):
        try:
            task()
        except BaseException as error:  # handed to the calling thread
            errors.append(error)
            stop.set()

    threads = [threading.Thread(target=run, args=(task,), name="snapshot-load", daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(interval / len(threads))
            if not errors:
                tick()
    except BaseException:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]


def _roll_back(transaction):
    """Roll back; a connection that is already gone was rolled back by the server when it dropped."""
    try:
        transaction.rollback()
    except Exception:  # the original error is the one worth reporting
        pass


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def list_archives(backups_dir, signing_key=None):
    """Kept archives, newest first; one that cannot be read is listed with its problem, whatever the problem.

    Only the signed manifest is read (the members are checked by inspect_archive); what was read is kept per
    file name, size and modification time, so a listing does not parse every manifest again."""
    folder = Path(backups_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = container.NAME_PATTERN.match(path.name)
        try:
            if not match or not path.is_file() or path.is_symlink():
                continue
            st = path.stat()
        except OSError:
            continue
        info = ArchiveInfo(name=path.name, size=st.st_size, kind=match["kind"], parts=match["parts"])
        if signing_key is not None:
            key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, container.sign(b"list", signing_key))
            if key not in _LISTED:
                _LISTED[key] = _listing_fields(path, signing_key)
            for field_name, value in _LISTED[key].items():
                setattr(info, field_name, value)
        found.append(info)
    current = {str(folder / info.name) for info in found}
    for key in [k for k in _LISTED if k[0].startswith(str(folder)) and k[0] not in current]:
        _LISTED.pop(key, None)
    return sorted(found, key=lambda i: container.NAME_PATTERN.match(i.name)["stamp"], reverse=True)


_LISTED = {}  # (path, size, mtime, inode, key tag) -> the ArchiveInfo fields read from that file


def _listing_fields(path, signing_key):
    try:
        with Reader(path, signing_key, check_members=False) as reader:
            m = reader.manifest
            return {"created_at": m["created_at"].replace("T", " ").rstrip("Z"), "created_by": m["created_by"],
                    "label": m["label"], "safety": m["safety"], "kind": m["kind"], "parts": m["parts"]}
    except SnapshotError as error:
        return {"problem": str(error)}
    except Exception as error:  # a hostile file must never take the whole list down
        return {"problem": f"{path.name} could not be read ({type(error).__name__}); it may be damaged. It is "
                           "listed as it is and nothing was changed."}


def delete_archive(backups_dir, name):
    container.archive_path(backups_dir, name).unlink()
