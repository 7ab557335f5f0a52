"""A SQLite store's database part as the database file itself, and its checks.

A backup of a SQLite store copies the database with SQLite's backup API (one consistent copy, pages as they
are) and compresses that file into the member ``database/store.sqlite.zst``; the manifest's ``database``
object names it, and each table keeps its row count and columns. Rendering and parsing every row in Python
cost 10-25 times the page copy, which is what the hand-run tools do.

The archive stays portable: a restore into PostgreSQL, a dry run or a CSV download reads the rows out of the
(checked) file and renders them in the portable row format (``table_chunks``). A restore into a SQLite store
whose schema is exactly the file's copies the pages back into the live database with the backup API: one
write transaction, so the live store is the old one or the new one, also under kill -9, and every other
process's connections stay valid (a rename would leave them reading or writing the old, unlinked file).

The file comes from an archive, so it is treated as hostile until checked, in this order, before anything
else reads it: the member's SHA-256 (the signed manifest's), its size against the declared one while it is
decompressed (bombs), the file header (a SQLite 3 database, rollback journal, the declared page size), then
opened read-only with ``trusted_schema`` off and ``cell_size_check`` on, value length capped: the schema
must hold exactly the application's tables (each with exactly its columns, none generated) and indexes on
them only — no views, no triggers, no other tables — then ``PRAGMA integrity_check`` (b-trees, indexes
against their tables, NOT NULL), ``PRAGMA foreign_key_check``, every table's row count against the manifest,
and every value's storage class against its column's type. (Its ``alembic_version`` rows are never restored:
the store keeps its own, as with the row path.)
"""
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import weakref
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
import zstandard

from app.snapshot import files, tablecodec
from app.snapshot.errors import ArchiveInvalid, InsufficientSpace, RestoreFailed, SnapshotError, UnsafeArchive

MEMBER = "database/store.sqlite.zst"
FORMAT = "sqlite"
BLOCK = 1024 * 1024
ZSTD_LEVEL = 1
MAX_WINDOW_BYTES = 32 * 1024 * 1024
MAX_EXPANSION = 200
# The engine's own tables the file may hold besides the store's: Alembic's revision and SQLite's AUTOINCREMENT
# counters. Statistics (sqlite_stat*) and the restore marker are left out of every copy this code makes.
REVISION_TABLE = "alembic_version"
ALLOWED_INTERNAL = {"sqlite_sequence": "CREATE TABLE sqlite_sequence(name,seq)"}
# Storage classes a value may have in a column of each portable type, as SQLAlchemy writes them on SQLite.
STORAGE = {
    "integer": ("integer",), "boolean": ("integer",), "float": ("real", "integer"),
    "numeric": ("integer", "real", "text"), "timestamp": ("text",), "date": ("text",), "json": ("text",),
    "text": ("text",),
}
# Text that SQLite itself can tell is not what a column holds (no datetime in a timestamp, no JSON in a JSON column).
TEXT_FORMS = {"timestamp": "datetime({}) IS NULL", "date": "date({}) IS NULL", "json": "NOT json_valid({})"}
HEADER = b"SQLite format 3\x00"
# The checked copy beside the archive: not ".part" (the sweep of stale partial archives would take a copy a long
# restore still needs); a copy a killed process left is removed by ``remove_stale`` after a day.
CHECKED_SUFFIX = ".sqlite-check"
STALE_SECONDS = 24 * 3600
HEADER_SETTINGS = ("page_size", "encoding", "user_version", "application_id", "auto_vacuum")
STEP_PAGES = 4096  # pages copied between two progress events of a restore
CHECK_CONNECTIONS = 2  # connections checking a file's contents at once


def is_file_store(engine):
    """Whether the store is a SQLite database file (not in memory): its backups hold that file."""
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


# --- writing ---------------------------------------------------------------------------------------------------

def dump(sink, engine, tables, report, marker_table):
    """Copy the store's database into the member; return (the manifest's tables, its ``database`` object)."""
    fd, temp = tempfile.mkstemp(dir=sink.folder, prefix=".", suffix=".sqlite.part")
    os.close(fd)
    try:
        with engine.connect() as connection:
            source = connection.connection.driver_connection
            if source.in_transaction:
                source.commit()
            pages, page_size = (source.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
            report("database", 0, pages * page_size, "bytes", "Copying the database", force=True)
            target = sqlite3.connect(temp, isolation_level=None)
            try:
                source.backup(target)  # one step: a consistent copy, whatever other connections write meanwhile
                keep = {t.name for t in tables} | {REVISION_TABLE} | set(ALLOWED_INTERNAL)
                extra = [name for kind, name in target.execute("SELECT type, name FROM sqlite_master")
                         if kind == "table" and name not in keep and not name.startswith("sqlite_")]
                for kind, name in target.execute("SELECT type, name FROM sqlite_master").fetchall():
                    if kind in ("view", "trigger"):  # the store has none; a copy never carries any
                        target.execute(f"DROP {kind.upper()} IF EXISTS {_quote(name)}")
                for name in [marker_table, "sqlite_stat1", "sqlite_stat4"] + extra:  # only the store's tables
                    target.execute(f"DROP TABLE IF EXISTS {_quote(name)}")
                target.execute("PRAGMA journal_mode=DELETE")  # the header of a file read on its own, not WAL
                counts = {t.name: target.execute(f"SELECT count(*) FROM {_quote(t.name)}").fetchone()[0]
                          for t in tables}
            finally:
                target.close()
        raw_bytes = os.path.getsize(temp)
        done = 0
        with sink.member(MEMBER) as out, open(temp, "rb") as source_file:
            with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(out, closefd=False) as compressor:
                while block := source_file.read(BLOCK):
                    compressor.write(block)
                    done += len(block)
                    report("database", done, raw_bytes, "bytes", "Compressing the database")
    finally:
        os.unlink(temp)
    report("database", raw_bytes, raw_bytes, "bytes", "Database written", force=True)
    entries = [{"name": t.name, "rows": counts[t.name],
                "columns": [{"name": c.name, "type": tablecodec.type_tag(c.type)} for c in t.columns]}
               for t in tables]
    return entries, {"format": FORMAT, "member": MEMBER, "raw_bytes": raw_bytes, "page_size": page_size}


# --- reading: the checked copy ----------------------------------------------------------------------------------

_COPIES = weakref.WeakKeyDictionary()  # Reader -> (path of its checked, decompressed database file, thorough)


def copy_of(reader, thorough=True):
    """The checked database file of an archive this process has inspected (``check`` made it)."""
    path, checked = _COPIES.get(reader, (None, False))
    if path is None or (thorough and not checked):
        raise SnapshotError("The archive's database file was not checked before use (a bug); nothing was changed.")
    return path


def check(reader, tables, report, progress, limits, thorough=True):
    """Decompress the database member beside the archive and run every check on it; keep it for this reader.
    ``tables``: the store's tables (the application's metadata, or the archive's revision's when brought
    forward); ``progress``: (bytes done, total) of the inspection. Not ``thorough`` (reading one table for a
    review, a CSV download): the checksum, the size, the header and the schema only, not every page and row."""
    m = reader.manifest
    if reader in _COPIES:
        path, checked = _COPIES[reader]
        if thorough and not checked:
            _check_contents(path, tables, m, limits)
            _COPIES[reader] = (path, True)
        return path
    info = m["database"]
    meta = m["members"][info["member"]]
    raw_bytes = info["raw_bytes"]
    if raw_bytes > max(meta["size"], 1) * MAX_EXPANSION + BLOCK:
        raise UnsafeArchive("The database file claims an implausible size (a decompression bomb?); refused, "
                            "nothing was changed.")
    folder = reader.path.parent
    free = shutil.disk_usage(folder).free
    if free < raw_bytes + 64 * 1024 * 1024:
        raise InsufficientSpace(f"Checking this archive needs {raw_bytes / 1e6:.0f} MB free beside it for its "
                                f"database; {free / 1e6:.0f} MB are free. Nothing was changed.")
    try:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".", suffix=CHECKED_SUFFIX)
    except OSError as error:
        raise SnapshotError(f"The archive's database file cannot be unpacked beside it for its checks "
                            f"({error.strerror or error}); nothing was changed.") from None
    finalizer = weakref.finalize(reader, _remove, temp)  # when the reader goes, if it is never closed
    reader.call_on_close(finalizer)  # when it closes: a finalizer runs once, whichever comes first
    try:
        with os.fdopen(fd, "wb") as out:
            sink = _Decompressing(out, raw_bytes)
            files.copy_member(reader, info["member"], meta, sink, report, progress, phase="verify")
            sink.finish()
        _check_shape(temp, info, tables, limits)
        if thorough:
            _check_contents(temp, tables, m, limits)
    except BaseException:
        finalizer()
        raise
    _COPIES[reader] = (temp, thorough)
    return temp


def remove_stale(folder, older_than=STALE_SECONDS):
    """Checked copies a killed process left in ``folder``."""
    now = time.time()
    for path in Path(folder).glob(f".*{CHECKED_SUFFIX}"):
        try:
            if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > older_than:
                path.unlink()
        except OSError:
            pass


def _remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class _Decompressing:
    """Takes the member's compressed bytes; writes the database file, refusing more or fewer bytes than declared."""

    def __init__(self, out, limit):
        self.out, self.limit, self.size = out, limit, 0
        decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
        self.stream = decompressor.stream_writer(_Target(self._take), write_size=BLOCK, closefd=False)

    def write(self, data):
        try:
            self.stream.write(data)
        except zstandard.ZstdError as error:
            raise ArchiveInvalid(f"The database file in the archive is corrupt ({_first_line(error)}); nothing was "
                                 "changed.") from None
        return len(data)

    def _take(self, data):
        self.size += len(data)
        if self.size > self.limit:
            raise UnsafeArchive("The database file is larger than declared (a decompression bomb?); refused, "
                                "nothing was changed.")
        try:
            self.out.write(data)
        except OSError as error:
            raise InsufficientSpace(f"Writing the archive's database file for its checks failed "
                                    f"({error.strerror or error}); nothing was changed.") from None

    def finish(self):
        self.write(b"")
        self.stream.flush()
        if self.size != self.limit:
            raise ArchiveInvalid("The database file is shorter than declared; the archive is damaged. Nothing was "
                                 "changed.")


class _Target:
    def __init__(self, take):
        self.take = take

    def write(self, data):
        self.take(data)
        return len(data)

    def flush(self):
        pass


def open_readonly(path, max_value_bytes=None):
    """A read-only connection to a database file from an archive, with SQLite's defences on."""
    connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, isolation_level=None,
                                 check_same_thread=False)
    try:
        if max_value_bytes:
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(int(max_value_bytes), 1024))
        connection.execute("PRAGMA trusted_schema = OFF")  # no function of a view or trigger runs while reading
        connection.execute("PRAGMA cell_size_check = ON")
        connection.execute("PRAGMA query_only = ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _bad(what):
    return UnsafeArchive(f"The database file in the archive {what}; refused, nothing was changed.")


def _check_shape(path, info, tables, limits):
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(HEADER):
        raise ArchiveInvalid("The archive's database part is not a SQLite database file; nothing was changed.")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size  # the header stores 64 KiB as 1
    if header[18:20] != b"\x01\x01":
        raise _bad("is not in the rollback-journal form this application writes")
    if page_size != info["page_size"]:
        raise _bad(f"has pages of {page_size} bytes, not the {info['page_size']} its manifest declares")
    connection = open_readonly(path, limits[1] if limits else None)
    try:
        _check_schema(connection, tables)
        if connection.execute("PRAGMA encoding").fetchone()[0] != "UTF-8":
            raise _bad("is not UTF-8")
    except sqlite3.DatabaseError as error:
        raise ArchiveInvalid(f"The database file in the archive cannot be read ({_first_line(error)}); nothing was "
                             "changed.") from None
    finally:
        connection.close()


def _check_contents(path, tables, manifest, limits):
    """The schema is the application's: now the contents, as tasks shared by two connections at once (SQLite runs
    them without the GIL), the longest first: the b-trees and indexes, the foreign keys, then each table's
    count and value types, largest first."""
    declared = {entry["name"]: entry for entry in manifest["tables"]}
    tasks = [_check_integrity, _check_keys] + [
        (lambda c, t=t: _check_table(c, t, declared[t.name]))
        for t in sorted(tables, key=lambda t: -declared[t.name]["rows"])]
    errors, lock, connections = [], threading.Lock(), []

    def work(connection):
        while not errors:
            with lock:
                if not tasks:
                    return
                task = tasks.pop(0)
            try:
                task(connection)
            except BaseException as error:
                errors.append(error)
                for each in connections:  # the other checks need not finish
                    each.interrupt()

    threads = []
    try:
        for _ in range(CHECK_CONNECTIONS):
            connections.append(open_readonly(path, limits[1] if limits else None))
        threads = [threading.Thread(target=work, args=(c,), name="snapshot-check", daemon=True) for c in connections]
        for thread in threads:
            thread.start()
    finally:
        for thread in threads:
            thread.join()
        for each in connections:
            each.close()
    reasons = [e for e in errors if not _interrupted(e)] or errors
    damaged = [e for e in reasons if isinstance(e, ArchiveInvalid) and "damaged" in str(e)]
    error = (damaged or reasons or [None])[0]  # a damaged file is the reason, whatever else a check met
    if isinstance(error, sqlite3.DatabaseError):
        raise ArchiveInvalid(f"The database file in the archive cannot be read ({_first_line(error)}); nothing was "
                             "changed.") from None
    if error is not None:
        raise error


def _interrupted(error):
    return isinstance(error, sqlite3.OperationalError) and "interrupted" in str(error)


def _check_integrity(connection):
    problems = connection.execute("PRAGMA integrity_check(5)").fetchall()
    if [tuple(p) for p in problems] != [("ok",)]:
        lines = [line for p in problems for line in str(p[0]).splitlines() if line.strip() and "***" not in line]
        raise ArchiveInvalid(f"The database file in the archive is damaged ({(lines or ['?'])[0][:200]}); "
                             "nothing was changed.")


class BrokenReference(ArchiveInvalid):
    """A row of the database file whose foreign key refers to no row; ``table`` and ``row`` say which."""

    def __init__(self, message, table, row):
        super().__init__(message)
        self.table, self.row = table, row


def _check_keys(connection):
    dangling = connection.execute("PRAGMA foreign_key_check").fetchone()
    if dangling is None:
        return
    table, rowid, parent, key = dangling
    columns = [row[3] for row in connection.execute(f"PRAGMA foreign_key_list({_quote(table)})") if row[0] == key]
    primary = [row[1] for row in sorted(connection.execute(f"PRAGMA table_info({_quote(table)})"),
                                        key=lambda r: r[5]) if row[5]]
    shown = columns + [c for c in primary if c not in columns]
    found = connection.execute(f"SELECT {', '.join(_quote(c) for c in shown)} FROM {_quote(table)} WHERE rowid = ?",
                               (rowid,)).fetchone() if shown and rowid is not None else None
    values = dict(zip(shown, found)) if found else {}
    label = ("the row with " + ", ".join(f"{c} {_shown(values[c])}" for c in primary)) if primary and values \
        else f"the row with rowid {rowid}"
    what = ", ".join(f"{c} {_shown(values[c])}" for c in columns) if values else "a value"
    raise BrokenReference(f"Table {table}, {label}: {what} refers to no row of {parent}; nothing was changed.",
                          table=table, row=label)


def _shown(value, limit=80):
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_schema(connection, tables):
    expected = {t.name: t for t in tables}
    rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    found = set()
    for kind, name, table_name, statement in rows:
        if kind == "table":
            if name not in expected and name != REVISION_TABLE and name not in ALLOWED_INTERNAL:
                raise _bad(f"holds a table {name[:100]!r} that is not one of this application's")
            if name in ALLOWED_INTERNAL:
                if statement != ALLOWED_INTERNAL[name]:
                    raise _bad(f"holds a table {name!r} that is not SQLite's own")
            elif not str(statement or "").upper().startswith("CREATE TABLE"):
                raise _bad(f"holds a virtual or unusual table {name[:100]!r}")  # its module's code would run
            found.add(name)
        elif kind == "index":
            if table_name not in expected and table_name != REVISION_TABLE:
                raise _bad(f"holds an index {name[:100]!r} on {table_name[:100]!r}")
        else:
            raise _bad(f"holds a {kind[:20]} {name[:100]!r}; this application's database has none")
    missing = sorted(set(expected) - found)
    if missing:
        raise ArchiveInvalid(f"The database file in the archive lacks table {missing[0]!r}; it is incomplete. "
                             "Nothing was changed.")
    for name, table in expected.items():
        columns = connection.execute(f"PRAGMA table_xinfo({_quote(name)})").fetchall()
        if any(row[6] != 0 for row in columns):  # hidden or generated columns
            raise _bad(f"gives table {name!r} a generated or hidden column")
        if sorted(row[1] for row in columns) != sorted(c.name for c in table.columns):
            raise _bad(f"gives table {name!r} other columns than this application's")


def _check_table(connection, table, entry):
    """Row count, every value's storage class, and the text of timestamps, dates and JSON (what the app would
    fail to read), in one pass over the table."""
    tests = []
    for column in table.columns:
        tag = tablecodec.type_tag(column.type)
        classes = STORAGE.get(tag.split("(")[0], ("text",))
        allowed = ", ".join(f"'{c}'" for c in classes + ("null",))
        name = _quote(column.name)
        tests.append(f"typeof({name}) NOT IN ({allowed})")
        if tag in TEXT_FORMS:
            tests.append(f"({name} IS NOT NULL AND {TEXT_FORMS[tag].format(name)})")
    wrong = " OR ".join(tests) or "0"
    rows, bad = connection.execute(
        f"SELECT count(*), count(CASE WHEN {wrong} THEN 1 END) FROM {_quote(table.name)}").fetchone()
    if rows != entry["rows"]:
        raise ArchiveInvalid(f"Table {table.name}: the archive declares {entry['rows']} rows but holds {rows}; "
                             "nothing was changed.")
    if bad:
        raise _bad(f"holds {bad} row(s) in table {table.name!r} with a value of the wrong type")


# --- reading rows out of the file (restores into another engine or schema, dry runs, CSV) -------------------------

def table_chunks(reader, entry, table_columns, limits):
    """The table's rows in the portable row format, about BLOCK bytes at a time, from the checked file."""
    connection = open_readonly(copy_of(reader, thorough=False), limits[1] if limits else None)
    try:
        names = [c["name"] for c in entry["columns"]]
        renderers = [tablecodec.renderer(table_columns[name]) for name in names]
        render_row = tablecodec.render_row
        cursor = connection.execute(
            f"SELECT {', '.join(_quote(n) for n in names)} FROM {_quote(entry['name'])} ORDER BY rowid")
        size = 1000
        while batch := cursor.fetchmany(size):
            try:
                data = b"".join(render_row(values, renderers) for values in batch)
            except (TypeError, ValueError, ArithmeticError) as error:
                raise RestoreFailed(f"Table {entry['name']} holds a value that cannot be read "
                                    f"({_first_line(error)}); the restore was rolled back and the store is "
                                    "unchanged.") from None
            size = max(100, min(50_000, BLOCK * len(batch) // max(len(data), 1)))
            yield data
    except sqlite3.DatabaseError as error:
        raise RestoreFailed(f"Reading table {entry['name']} from the archive's database failed "
                            f"({_first_line(error)}); the restore was rolled back and the store is unchanged.") from None
    finally:
        connection.close()


# --- restoring the file into a SQLite store ----------------------------------------------------------------------

def _schema_rows(connection, skip):
    """Every object of the schema (SQLite's own indexes and sequence table too), statistics aside, and the header
    settings that come with the pages."""
    rows = sorted(tuple(row) for row in connection.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_stat%' ESCAPE '\\'")
        if row[1] not in skip and row[2] not in skip)
    settings = tuple(connection.execute(f"PRAGMA {name}").fetchone()[0] for name in HEADER_SETTINGS)
    return rows, settings


def same_schema(reader, engine, marker_table):
    """Whether the archive's checked file can be copied page for page into this store: same page size, and
    exactly the same schema (the same statements, so the same columns in the same order, the same indexes)."""
    if not is_file_store(engine):
        return False
    with engine.connect() as live:
        raw = live.connection.driver_connection
        live_schema = _schema_rows(raw, {marker_table})
        if raw.in_transaction:
            raw.rollback()
    copy = open_readonly(copy_of(reader))
    try:
        return _schema_rows(copy, {marker_table}) == live_schema
    finally:
        copy.close()


def restore(reader, engine, staged, maintenance, report, mark_committed):
    """Copy the checked file's pages into the live store in one transaction. With files, the commit marker is
    written into a private copy first, so it commits with the rows; the files are swapped in just before."""
    source_path = copy_of(reader)
    if os.path.getsize(source_path) != reader.manifest["database"]["raw_bytes"]:
        raise RestoreFailed("The checked copy of the archive's database changed before it was used; nothing was "
                            "changed.")
    # mode=rw: a copy that is gone is an error, never a new empty database.
    side = sa.create_engine("sqlite://", poolclass=sa.pool.NullPool, creator=lambda: sqlite3.connect(
        f"file:{quote(str(source_path))}?mode=rw", uri=True, check_same_thread=False))
    try:
        with side.begin() as connection, engine.connect() as live:
            _keep_revision(live, connection)
            if staged is not None:
                mark_committed(connection, staged.token)
    except sa.exc.SQLAlchemyError as error:
        raise RestoreFailed(f"Preparing the restored database failed ({_first_line(error)}); nothing was "
                            "changed.") from error
    finally:
        side.dispose()
    source = sqlite3.connect(f"file:{quote(str(source_path))}?mode=ro", uri=True, isolation_level=None)
    try:
        with maintenance(), engine.connect() as live:
            target = live.connection.driver_connection
            if target.in_transaction:
                target.rollback()
            checkpoint = target.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            target.execute("PRAGMA wal_autocheckpoint = 0")  # the WAL is written back after maintenance
            try:
                info = reader.manifest["database"]
                total = max(1, info["raw_bytes"] // info["page_size"])
                committing = []

                def commit_next(done):  # announced before the step that commits (the last one), never after it
                    if not committing:
                        committing.append(True)
                        report("commit", done, total, "pages", "Committing", force=True)

                def copied(status, remaining, pages):
                    if remaining == 0:  # called once more after the last step, which has committed: nothing to say
                        return
                    report("load", pages - remaining, pages, "pages", "Copying the restored database into place")
                    if remaining <= STEP_PAGES:
                        commit_next(pages - remaining)

                report("load", 0, total, "pages", "Copying the restored database into place", force=True)
                if staged is not None:
                    staged.swap_in()  # committed with the rows (the marker is in the copy), or undone by recovery
                if total <= STEP_PAGES:
                    commit_next(0)
                # In steps (for progress), but one write transaction on the live database, held from the first step
                # to the last: all of it, or none. The source is a private file nobody else writes.
                source.backup(target, pages=STEP_PAGES, progress=copied)
            finally:
                try:
                    target.execute(f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
                except sqlite3.Error:  # the pooled connection's setting only; the outcome above stands
                    pass
    except SnapshotError:
        raise
    except sqlite3.Error as error:
        raise RestoreFailed(f"Copying the database into place failed ({_first_line(error)}); the store is "
                            "unchanged.") from error
    finally:
        source.close()
    try:
        with engine.connect() as live:  # the new pages from the WAL into the file, once the store is open again
            live.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except Exception:  # any later commit checkpoints it too
        pass


def _keep_revision(live, copy):
    """The live store's Alembic revision rows into the copy: a restore changes the store's rows, never which
    migrations its database has seen (the archive's may be older: migrations that change only the platform
    database move the head, not the store's schema), as the row path, which never touches that table."""
    names = {row[0] for row in live.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if REVISION_TABLE not in names or not copy.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (REVISION_TABLE,)).first():
        return
    rows = live.exec_driver_sql(f'SELECT version_num FROM "{REVISION_TABLE}"').all()
    copy.exec_driver_sql(f'DELETE FROM "{REVISION_TABLE}"')
    for (version,) in rows:
        copy.exec_driver_sql(f'INSERT INTO "{REVISION_TABLE}" (version_num) VALUES (?)', (version,))


def copy_into(reader, engine, report):
    """The checked file's pages into another SQLite database (a scratch store): the archive as a page-copy
    restore would leave the store. Returns the row counts (the checks counted them)."""
    source = sqlite3.connect(f"file:{quote(str(copy_of(reader)))}?mode=ro", uri=True, isolation_level=None)
    try:
        with engine.connect() as connection:
            target = connection.connection.driver_connection
            if target.in_transaction:
                target.rollback()
            source.backup(target, pages=STEP_PAGES, progress=lambda status, remaining, pages: report(
                "load", pages - remaining, pages, "pages", "Copying the database into the scratch store"))
    except sqlite3.Error as error:
        raise RestoreFailed(f"Copying the database failed ({_first_line(error)}); nothing was changed.") from error
    finally:
        source.close()
    return {entry["name"]: entry["rows"] for entry in reader.manifest["tables"]}


def _quote(name):
    return '"' + str(name).replace('"', '""') + '"'


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
