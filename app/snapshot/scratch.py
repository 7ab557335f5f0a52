"""Scratch stores: an archive restored somewhere that is not the live store, and checked there.

A scratch store is a fresh database (a new SQLite file, or a new PostgreSQL schema in the store's
database, created for the run and dropped after) and a fresh folder. ``load_archive`` restores an
archive into one with the same validation and the same loader as the real restore, then checks what
a real restore would trip over: every foreign key and unique constraint (naming the table and the
row that breaks it), the row counts against the manifest, every file's SHA-256. The live store is
never touched: no maintenance, no lock, no journal beside the live uploads folder.

``bring_forward`` is how an archive made at an older schema revision is restored: the scratch store
is built at the archive's revision, loaded by the manifest's columns, upgraded by the caller's
migrations, and written out as a new archive at today's revision, which the normal atomic restore
then takes.
"""
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import SpooledTemporaryFile

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from app.snapshot import database, files, journal, sqlitefile
from app.snapshot.container import Reader
from app.snapshot.errors import RestoreFailed, SnapshotError
from app.snapshot.operations import (
    DEFAULT_MAX_MEMBERS, DEFAULT_MAX_ROW_BYTES, DEFAULT_MAX_VALUE_BYTES, _has, _inspect, _load_beside, _table_chunks,
    create_archive, store_tables,
)
from app.snapshot.progress import Reporter

STATE_FILE = "scratch.json"
VERSION_TABLE = "alembic_version"
# Rows named in a failure message: enough to find them, never a whole row of someone's data.
MAX_SHOWN = 120


class TrialFailed(SnapshotError):
    """The archive does not load into a scratch store; ``table`` and ``row`` say where, when known."""

    def __init__(self, message, table=None, row=None):
        super().__init__(message)
        self.table, self.row = table, row


@dataclass
class TrialResult:
    """What a scratch restore loaded and checked."""

    name: str
    parts: str
    row_counts: dict = field(default_factory=dict)
    file_count: int = 0
    file_bytes: int = 0
    checks: list = field(default_factory=list)
    seconds: float = 0.0


class ScratchStore:
    """A fresh database and a fresh folder under ``root``, on the live store's engine type.

    ``keep`` leaves it on disk after ``close`` (a staging copy); ``ScratchStore.reopen(folder, live)``
    finds it again. ``drop`` removes the database (file or schema) and the folder."""

    def __init__(self, live_engine, root, *, token=None):
        self.token = token or secrets.token_hex(6)
        self.live_engine = live_engine
        self.folder = Path(root) / f"scratch-{self.token}"
        self.uploads_dir = self.folder / "uploads"
        self.dialect = live_engine.dialect.name
        self.schema = f"scratch_{self.token}" if self.dialect == "postgresql" else None
        if self.dialect not in ("sqlite", "postgresql"):
            raise SnapshotError(f"A scratch store on {self.dialect} is not supported; nothing was changed.")
        self._engine = None

    @classmethod
    def create(cls, live_engine, root):
        store = cls(live_engine, root)
        store.folder.mkdir(mode=0o700, parents=True)
        store.uploads_dir.mkdir(mode=0o700)
        store.remember()  # before the schema: a process killed from here on leaves something remove_stale finds
        if store.schema:
            with live_engine.begin() as connection:
                connection.exec_driver_sql(f'CREATE SCHEMA "{store.schema}"')
        return store

    @classmethod
    def reopen(cls, folder, live_engine):
        """A kept scratch store, from its folder (None when it is gone or not one of ours)."""
        folder = Path(folder)
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        token = str(state.get("token", ""))
        if folder.name != f"scratch-{token}" or not token.isalnum():
            return None
        store = cls(live_engine, folder.parent, token=token)
        store.info = state.get("info", {})
        return store

    @classmethod
    def remove_stale(cls, root, live_engine, older_than):
        """Drop the scratch stores under ``root`` untouched for ``older_than`` seconds: left behind by a
        process that was killed (a live trial works on its own every few seconds). Returns their folders."""
        removed = []
        for folder in Path(root).glob("scratch-*"):
            try:
                stale = time.time() - (folder / STATE_FILE).stat().st_mtime > older_than
            except OSError:
                continue
            store = cls.reopen(folder, live_engine) if stale else None
            if store is not None:
                store.drop()
                removed.append(folder)
        return removed

    def remember(self, **info):
        """Write what the scratch store holds beside it (for a kept staging copy)."""
        self.info = info
        (self.folder / STATE_FILE).write_text(json.dumps({"token": self.token, "info": info}))

    @property
    def url(self):
        """The scratch database's URL; on PostgreSQL the live database's, with a search path that names only
        the scratch schema (so any engine made from it, a staging app's too, sees the scratch tables)."""
        if self.schema:
            return self.live_engine.url.update_query_dict({"options": f"-csearch_path={self.schema}"})
        return sa.engine.URL.create("sqlite", database=str(self.folder / "store.db"))

    @property
    def engine(self):
        if self._engine is None:
            self._engine = sa.create_engine(self.url, poolclass=NullPool)
        return self._engine

    def close(self):
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def drop(self):
        self.close()
        if self.schema:
            with self.live_engine.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()


def reflect_store(connection):
    """The store tables as the scratch database has them (built by migrations at some revision)."""
    metadata = sa.MetaData()
    metadata.reflect(connection)
    for name in (VERSION_TABLE, journal.MARKER_TABLE):
        if name in metadata.tables:
            metadata.remove(metadata.tables[name])
    return metadata


def load_archive(path, scratch, *, signing_key, schema_revision, metadata, parts=None, keep_from=None,
                 keep_tables=(), max_total_bytes=None, max_members=DEFAULT_MAX_MEMBERS,
                 max_row_bytes=DEFAULT_MAX_ROW_BYTES, max_value_bytes=DEFAULT_MAX_VALUE_BYTES, progress=None):
    """Restore an archive into ``scratch`` (its tables already created, empty) and check it there.

    ``schema_revision`` and ``metadata`` are the archive's own (today's, or the scratch database's
    reflected at an older revision). ``keep_tables`` are copied from ``keep_from`` (the live engine)
    instead, as a restore that keeps today's accounts would do. Raises TrialFailed, or the engine's
    usual errors for an archive that is not valid at all; returns a TrialResult."""
    started = time.monotonic()
    report = Reporter(progress)
    limits = (max_row_bytes, max_value_bytes)
    with Reader(path, signing_key, max_members=max_members) as reader:
        held = reader.manifest["parts"]
        parts = parts or held
        if not (parts == held or held == "both"):
            raise TrialFailed(f"{reader.name} holds {held}; it cannot restore {parts}.")
        staged_later = files.file_members(reader.manifest) if _has(parts, "files") else set()
        try:
            summary = _inspect(reader, schema_revision, metadata, max_total_bytes, max_members, limits, report,
                               checked_later=staged_later)  # each file is checked as it is written, as a restore does
        except sqlitefile.BrokenReference as error:  # a SQLite database file's checks found the row
            raise TrialFailed(_trial_text(str(error)), table=error.table, row=error.row) from None
        result = TrialResult(name=summary.name, parts=parts)
        staged = files.StagedFiles(scratch.uploads_dir) if _has(parts, "files") else None
        members = files.file_members(reader.manifest)
        beside = _has(parts, "database") and scratch.schema is not None and not keep_tables
        # A SQLite store's database file that the real restore would copy page for page: copied the same way.
        pages = _has(parts, "database") and scratch.schema is None and not keep_tables \
            and bool(reader.manifest.get("database")) \
            and sqlitefile.same_schema(reader, scratch.live_engine, journal.MARKER_TABLE)
        try:
            if staged is not None and not beside:
                staged.extract(reader, members, report)
            if pages:
                result.row_counts = sqlitefile.copy_into(reader, scratch.engine, report)
            elif beside:  # as the real restore loads: two connections, the files staged alongside
                stage = (lambda quiet: staged.extract(reader, members, quiet)) if staged is not None else None
                result.row_counts = _load_beside_checked(reader, scratch, metadata, limits, report, stage)
            elif _has(parts, "database"):
                result.row_counts = _load_tables(reader, scratch, metadata, keep_from, keep_tables, limits, report)
            if staged is not None:
                staged.swap_in()
        except BaseException:
            if staged is not None:
                staged.undo()
            raise
        if staged is not None:
            staged.commit()
            result.file_count, result.file_bytes = summary.file_count, summary.file_bytes
            result.checks.append(f"{summary.file_count} files restored, each matching its SHA-256")
        if _has(parts, "database"):
            result.checks += [f"{sum(result.row_counts.values())} rows in {len(result.row_counts)} tables, as many "
                              "as the manifest declares", "every foreign key and unique constraint holds"]
    result.seconds = time.monotonic() - started
    report("done", 1, 1, "checks", "The archive loads and checks out", force=True)
    return result


def _load_beside_checked(reader, scratch, metadata, limits, report, stage):
    """PostgreSQL: the real restore's loader (operations._load_beside: two connections, keys rebuilt after);
    when the database refuses a key, our own queries find the table and the row."""
    tables = store_tables(metadata)
    entries = {e["name"]: e for e in reader.manifest["tables"]}
    total = sum(e["rows"] for e in entries.values())
    try:
        _load_beside(scratch.engine, reader, tables, entries, total, report, limits, None, stage)
    except RestoreFailed as error:  # table data that does not load (the archive's own faults propagate as they are)
        raise TrialFailed(_trial_text(str(error))) from None
    except SnapshotError:
        raise
    except sa.exc.DBAPIError as error:
        with scratch.engine.connect() as connection:
            _check_constraints(connection, tables)  # names the table and the row, when it can
        raise TrialFailed(f"Rebuilding the constraints failed: {_db_message(error)}.") from None
    except Exception as error:  # a row the database refused while loading (a bad value, a duplicate key)
        raise TrialFailed(f"The database refused a row: {_db_message(error)}.") from None
    counts = {t.name: entries[t.name]["rows"] for t in tables}
    report("check", total, total, "rows", "Checking row counts", force=True)
    with scratch.engine.connect() as connection:
        _check_counts(connection, tables, counts)
    return counts


def _load_tables(reader, scratch, metadata, keep_from, keep_tables, limits, report):
    tables = store_tables(metadata)
    entries = {e["name"]: e for e in reader.manifest["tables"]}
    total = sum(e["rows"] for name, e in entries.items() if name not in keep_tables)
    done = 0
    counts = {}
    with scratch.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")  # checked as a whole below, with names
            connection.commit()
        with connection.begin():
            constraints = database.set_aside_constraints(connection, tables)
            for table in tables:
                if table.name in keep_tables:
                    counts[table.name] = _copy_live_table(keep_from, connection, table)
                    continue
                entry = entries[table.name]
                base = done
                try:
                    database.load_table(connection, table, [c["name"] for c in entry["columns"]],
                                        _table_chunks(reader, entry, limits), entry["rows"],
                                        on_rows=lambda n: report("load", base + n, total, "rows", table.name))
                except SnapshotError as error:
                    raise TrialFailed(_trial_text(str(error)), table=table.name) from None
                except Exception as error:  # the database refused a row: say which, as far as it can be known
                    raise _unloadable(reader, connection, table, entry, limits, error) from None
                done += entry["rows"]
                counts[table.name] = entry["rows"]
            report("check", done, total, "rows", "Checking row counts, keys and unique values", force=True)
            _check_counts(connection, tables, counts)
            _check_keys(connection, tables, constraints)
            database.reset_sequences(connection, tables)
    return counts


def _trial_text(message):
    """The engine's restore messages speak of rollbacks; in a scratch store nothing live was involved."""
    for tail in ("; the restore was rolled back and the store is unchanged.", "; nothing was changed.",
                 " Nothing was changed.", "; everything was rolled back and the store is unchanged."):
        message = message.replace(tail, ".")
    return message


def _copy_live_table(live_engine, connection, table):
    """Today's rows of one table (the accounts, kept by the restore) into the scratch store."""
    with SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        with live_engine.connect() as live:
            rows = database.dump_table(live, table, spool.write)
        spool.seek(0)
        columns = [c.name for c in table.columns]
        database.load_table(connection, table, columns, iter(lambda: spool.read(files.CHUNK), b""), rows)
    return rows


def check_loaded(connection, metadata):
    """Every key and unique value of a loaded scratch store (after migrations, say); returns its row counts."""
    tables = store_tables(metadata)
    _check_keys(connection, tables, [])
    return {t.name: connection.scalar(sa.select(sa.func.count()).select_from(t)) for t in tables}


def _check_keys(connection, tables, constraints):
    """Let the database check what it checks fastest, and look for the row that breaks only when it says
    something does: PostgreSQL rebuilds the constraints set aside for the load (in a savepoint); SQLite
    has checked unique values at every insert and checks foreign keys with its own pragma."""
    if connection.dialect.name == "sqlite":
        if connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
            _check_constraints(connection, tables)
            raise TrialFailed("A foreign key does not hold (SQLite's foreign_key_check says so).")
        return
    savepoint = connection.begin_nested()
    try:
        database.put_back_constraints(connection, constraints)
    except sa.exc.DBAPIError as error:
        savepoint.rollback()
        _check_constraints(connection, tables)  # names the table and the row, when it can
        raise TrialFailed(f"Rebuilding the constraints failed: {_db_message(error)}.") from None
    savepoint.commit()


def _check_counts(connection, tables, counts):
    for table in tables:
        found = connection.scalar(sa.select(sa.func.count()).select_from(table))
        if found != counts[table.name]:
            raise TrialFailed(f"Table {table.name} holds {found} rows after loading, but {counts[table.name]} were "
                              "loaded.", table=table.name)


def _check_constraints(connection, tables):
    """The first row that breaks a foreign key or a unique constraint, by table and key, if any."""
    for table in tables:
        for key in _unique_keys(table):
            row = _first_duplicate(connection, table, key)
            if row is not None:
                raise TrialFailed(f"Table {table.name}: {_describe(row, key)} appears more than once, but it must "
                                  f"be unique ({_rows_with(connection, table, key, row)}).", table=table.name,
                                  row=_row_label(table, connection, key, row))
        for fk in table.foreign_key_constraints:
            row = _first_orphan(connection, table, fk)
            if row is not None:
                parent = fk.referred_table.name
                raise TrialFailed(f"Table {table.name}, {_pk_text(table, row)}: {_describe(row, fk.columns)} refers "
                                  f"to no row of {parent}.", table=table.name, row=_pk_text(table, row))


def _unique_keys(table):
    keys = [list(table.primary_key.columns)] if table.primary_key.columns else []
    keys += [list(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    keys += [list(i.columns) for i in table.indexes if i.unique]
    return keys


def _first_duplicate(connection, table, key):
    query = (sa.select(*key).where(*[c.is_not(None) for c in key]).group_by(*key)
             .having(sa.func.count() > 1).order_by(*key).limit(1))
    return connection.execute(query).first()


def _rows_with(connection, table, key, values):
    rows = connection.execute(sa.select(table).where(*[c == v for c, v in zip(key, values)]).limit(3)).all()
    return "the rows with " + " and ".join(_pk_values(table, row) for row in rows)


def _row_label(table, connection, key, values):
    row = connection.execute(sa.select(table).where(*[c == v for c, v in zip(key, values)]).limit(1)).first()
    return _pk_text(table, row) if row is not None else None


def _first_orphan(connection, table, fk):
    parent = fk.referred_table
    pairs = [(element.parent, element.column) for element in fk.elements]
    child = [c for c, _ in pairs]
    match = sa.and_(*[c == p for c, p in pairs])
    query = (sa.select(table).where(*[c.is_not(None) for c in child])
             .where(~sa.exists().where(match).select_from(parent))
             .order_by(*table.primary_key.columns).limit(1))
    return connection.execute(query).first()


def _pk_text(table, row):
    return "the row with " + _pk_values(table, row)


def _pk_values(table, row):
    mapping = row._mapping
    keys = list(table.primary_key.columns) or list(table.columns)[:1]
    return ", ".join(f"{c.name} {_shown(mapping[c.name])}" for c in keys)


def _describe(row, columns):
    mapping = row._mapping
    return ", ".join(f"{c.name} {_shown(mapping[c.name])}" for c in columns)


def _shown(value):
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def _unloadable(reader, connection, table, entry, limits, error):
    """A unique value twice (SQLite checks it at insert): find the row by loading the table again into a
    constraint-free temporary copy, and grouping there."""
    if connection.dialect.name != "sqlite":  # the transaction is aborted; PostgreSQL's message names the key
        return TrialFailed(f"Table {table.name} does not load: {_db_message(error)}.", table=table.name)
    if not isinstance(error, connection.dialect.dbapi.IntegrityError):
        return TrialFailed(f"Table {table.name} does not load: {_db_message(error)}.", table=table.name)
    probe = sa.Table(f"probe_{secrets.token_hex(4)}", sa.MetaData(),
                     *[sa.Column(c.name, c.type) for c in table.columns], prefixes=["TEMPORARY"])
    probe.create(connection)
    try:
        database.load_table(connection, probe, [c["name"] for c in entry["columns"]],
                            _table_chunks(reader, entry, limits), entry["rows"])
        for key in _unique_keys(table):
            probe_key = [probe.c[c.name] for c in key]
            row = _first_duplicate(connection, probe, probe_key)
            if row is not None:
                label = _rows_with(connection, probe, probe_key, row)
                return TrialFailed(f"Table {table.name}: {_describe(row, probe_key)} appears more than once, but it "
                                   f"must be unique ({label}).", table=table.name,
                                   row=_row_label(probe, connection, probe_key, row))
    finally:
        probe.drop(connection)
    return TrialFailed(f"Table {table.name} does not load: {_db_message(error)}.", table=table.name)


def _db_message(error):
    """The database's own words: its first line, and PostgreSQL's detail (which names the key)."""
    error = getattr(error, "orig", None) or error
    detail = getattr(getattr(error, "diag", None), "message_detail", None)
    return _first_line(error) + (f" ({detail})" if detail else "")


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def load_forward(path, scratch, *, signing_key, archive_revision, build, upgrade, metadata, parts=None,
                 progress=None, **limits):
    """An archive made at an older schema revision, loaded into ``scratch`` and brought to today's schema:
    ``build(connection)`` creates the scratch tables at ``archive_revision``, the archive is loaded by its
    manifest's columns and checked there, ``upgrade(connection)`` runs the migrations up to today's
    revision (``metadata``), and the keys are checked again. Returns the TrialResult, with today's counts."""
    with scratch.engine.begin() as connection:
        build(connection)
    with scratch.engine.connect() as connection:
        old_metadata = reflect_store(connection)
    result = load_archive(path, scratch, signing_key=signing_key, schema_revision=archive_revision,
                          metadata=old_metadata, parts=parts, progress=progress, **limits)
    if _has(result.parts, "database"):
        with scratch.engine.begin() as connection:
            upgrade(connection)
        with scratch.engine.connect() as connection:
            result.row_counts = check_loaded(connection, metadata)
    return result


def bring_forward(path, scratch, *, signing_key, archive_revision, build, upgrade, metadata, schema_revision,
                  app_version, out_dir, progress=None, **limits):
    """An archive made at an older schema revision, as a new archive at today's: returns (path, TrialResult).
    The scratch store ``load_forward`` made is written to ``out_dir`` as a backup of the same store, kind
    and parts, labelled with where it came from."""
    result = load_forward(path, scratch, signing_key=signing_key, archive_revision=archive_revision, build=build,
                          upgrade=upgrade, metadata=metadata, progress=progress, **limits)
    with Reader(path, signing_key) as reader:
        m = reader.manifest
    label = f"{m['label'] or 'Backup'} (brought forward from {Path(path).name}, schema {archive_revision})"
    new = create_archive(engine=scratch.engine, metadata=metadata, uploads_dir=scratch.uploads_dir,
                         backups_dir=out_dir, signing_key=signing_key, store_name=m["store"], kind=m["kind"],
                         parts=result.parts, created_by=m["created_by"], schema_revision=schema_revision,
                         app_version=app_version, label=label[:1000], safety=m["safety"], progress=progress)
    os.chmod(new, 0o600)
    return new, result
