"""The three operations: create an archive, inspect one completely, restore from one atomically."""
import errno
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import zstandard

from app.snapshot import container, database, files, journal
from app.snapshot.container import FORMAT, FORMAT_VERSION, KINDS, PARTS, Reader, Writer
from app.snapshot.errors import (
    ArchiveInvalid, IncompatibleArchive, InsufficientSpace, RestoreFailed, SnapshotError, UnsafeArchive,
)
from app.snapshot.progress import Reporter

DB_PREFIX = "database/"
# Level 1 on one thread: the rows compress ~4x already and the compressor keeps pace with COPY
# (zstd's own threads cost ~40 MB of buffers and gained nothing measurable here).
ZSTD_LEVEL = 1
DEFAULT_MAX_MEMBERS = 1_000_000
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
                   progress=None):
    """Write a new archive and return its path; on any failure nothing is left behind."""
    if kind not in KINDS or parts not in PARTS:
        raise SnapshotError(f"Unknown archive kind/parts {kind}/{parts}.")
    if kind == "export" and parts != "database":
        raise SnapshotError("An export holds the database only.")
    report = Reporter(progress)
    backups = Path(backups_dir)
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    _remove_stale_parts(backups)
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
    try:
        writer = Writer(temp)
        if _has(parts, "database"):
            manifest["tables"] = _dump_database(writer, engine, tables, redactions if kind == "export" else (), report)
        if _has(parts, "files"):
            count, size, skipped = files.pack(writer, uploads_dir, report)
            manifest["files"] = {"count": count, "bytes": size, "skipped": skipped}
        manifest["members"] = writer.members
        writer.finish(manifest, signing_key)
        writer = None
        report("verify", 0, None, "members", "Checking the new archive", force=True)
        _verify_members(temp, signing_key)
        os.rename(temp, final)
    except BaseException as error:
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


def _dump_database(writer, engine, tables, redactions, report):
    entries = []
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            # One consistent snapshot of every table, in a format independent of the session's settings.
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            connection.exec_driver_sql("SET LOCAL DateStyle TO ISO, YMD")
            connection.exec_driver_sql("SET LOCAL TimeZone TO UTC")
            connection.exec_driver_sql("SET LOCAL extra_float_digits TO 3")
        totals = database.count_rows(connection, tables)
        grand_total = sum(totals.values())
        done_before = 0
        for table in tables:
            member = f"{DB_PREFIX}{table.name}.tsv.zst"
            with writer.member(member) as out:
                with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(out, closefd=False) as compressor:
                    counter = _CountingWriter(compressor)
                    rows = database.dump_table(
                        connection, table, counter.write, redactions,
                        on_rows=lambda n, base=done_before, t=table.name: report("database", base + n, grand_total,
                                                                                 "rows", t))
            entries.append({"name": table.name, "member": member, "rows": rows, "raw_bytes": counter.bytes,
                             "columns": database.table_columns(table)})
            done_before += rows
        report("database", done_before, grand_total, "rows", "Database written", force=True)
    return entries


class _CountingWriter:
    def __init__(self, target):
        self.target, self.bytes = target, 0

    def write(self, data):
        self.bytes += len(data)
        self.target.write(data)


def _verify_members(path, signing_key):
    """Read back every member of a freshly written archive against its manifest checksum."""
    with Reader(path, signing_key) as reader:
        for name, meta in reader.manifest["members"].items():
            files.copy_member(reader, name, meta, None)


def inspect_archive(path, *, signing_key, schema_revision, metadata, max_total_bytes=None,
                    max_members=DEFAULT_MAX_MEMBERS, progress=None):
    """Check everything before anything is touched; return what the archive holds."""
    report = Reporter(progress)
    with Reader(path, signing_key) as reader:
        summary = _check_manifest(reader, schema_revision, metadata, max_total_bytes, max_members)
        members = reader.manifest["members"]
        total = sum(meta["size"] for meta in members.values())
        done = 0
        for name, meta in members.items():
            done += files.copy_member(reader, name, meta, None, report, (done, total))
        for entry in reader.manifest["tables"]:
            _check_expansion(reader, entry)
    report("done", 1, 1, "archives", "The archive is valid", force=True)
    return summary


def _check_manifest(reader, schema_revision, metadata, max_total_bytes, max_members):
    m = reader.manifest
    name = reader.path.name
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ArchiveInvalid(f"{name} is not a store snapshot archive; nothing was changed.")
    if m.get("format_version") != FORMAT_VERSION:
        newer = isinstance(m.get("format_version"), int) and m["format_version"] > FORMAT_VERSION
        raise IncompatibleArchive(
            f"{name} uses archive format {m.get('format_version')!r}; this version of the application reads format "
            f"{FORMAT_VERSION}. " + ("Upgrade the application first." if newer else "It cannot be restored here."))
    if m.get("kind") not in KINDS or m.get("parts") not in PARTS:
        raise ArchiveInvalid(f"{name} has an unknown kind or parts in its manifest; nothing was changed.")
    if m.get("schema_revision") != schema_revision:
        raise IncompatibleArchive(
            f"{name} was made with store schema revision {m.get('schema_revision')!r}, but this application is at "
            f"{schema_revision!r}. Restore it with the application version that made it (app "
            f"{m.get('app_version')!r}), or upgrade/downgrade this one to match; nothing was changed.")
    members = m.get("members")
    if not isinstance(members, dict):
        raise ArchiveInvalid(f"{name} has no member list in its manifest; nothing was changed.")
    if len(reader.entries) > max_members:
        raise UnsafeArchive(f"{name} holds {len(reader.entries)} members, over the limit of {max_members}; refused.")
    expected = set(members) | {container.MANIFEST, container.SIGNATURE}
    extra, missing = set(reader.entries) - expected, expected - set(reader.entries)
    if extra:
        raise UnsafeArchive(f"{name} contains {sorted(extra)[0]!r}, which its manifest does not list; refused, "
                            "nothing was changed.")
    if missing:
        raise ArchiveInvalid(f"{name} is missing {sorted(missing)[0]!r}; it is incomplete. Nothing was changed.")
    for member, meta in members.items():
        if not member.startswith((DB_PREFIX, files.PREFIX)) or not isinstance(meta, dict) \
                or not isinstance(meta.get("size"), int) or meta["size"] < 0 or not isinstance(meta.get("sha256"), str):
            raise UnsafeArchive(f"{name} lists a member {member!r} this tool never writes; refused.")
        if reader.entries[member].file_size != meta["size"]:
            raise UnsafeArchive(f"The archive member {member!r} is {reader.entries[member].file_size} bytes but the "
                                f"manifest says {meta['size']}; refused, nothing was changed.")
    _check_tables(name, m, metadata)
    file_members = files.file_members(m)
    files.check_layout(file_members)
    file_bytes = sum(meta["size"] for meta in file_members.values())
    if max_total_bytes is not None and file_bytes > max_total_bytes:
        raise InsufficientSpace(f"{name} would restore {file_bytes / 1e6:.0f} MB of files, over the configured limit "
                                f"of {max_total_bytes / 1e6:.0f} MB; nothing was changed.")
    if _has(m["parts"], "files") != bool(file_members) and file_members:
        raise ArchiveInvalid(f"{name} holds files but says it does not; nothing was changed.")
    created_at = datetime.strptime(m["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return ArchiveSummary(
        name=name, kind=m["kind"], parts=m["parts"], store=str(m.get("store")), created_at=created_at,
        created_by=str(m.get("created_by")), schema_revision=m["schema_revision"], app_version=str(m.get("app_version")),
        source_engine=str(m.get("source_engine")), label=m.get("label"), safety=bool(m.get("safety")),
        row_counts={t["name"]: t["rows"] for t in m["tables"]}, file_count=len(file_members), file_bytes=file_bytes,
        archive_bytes=reader.path.stat().st_size, skipped=list(m.get("files", {}).get("skipped", [])),
    )


def _check_tables(name, manifest, metadata):
    tables = manifest.get("tables")
    if not isinstance(tables, list):
        raise ArchiveInvalid(f"{name} has no table list in its manifest; nothing was changed.")
    known = {t.name: t for t in store_tables(metadata)}
    seen = set()
    for entry in tables:
        table = known.get(entry.get("name")) if isinstance(entry, dict) else None
        if table is None:
            raise UnsafeArchive(f"{name} holds a table {entry.get('name') if isinstance(entry, dict) else entry!r} "
                                "that is not a store table of this application; refused, nothing was changed.")
        if entry["name"] in seen:
            raise UnsafeArchive(f"{name} lists table {entry['name']!r} twice; refused.")
        seen.add(entry["name"])
        columns = [c.get("name") for c in entry.get("columns", []) if isinstance(c, dict)]
        if sorted(columns) != sorted(c.name for c in table.columns) or len(columns) != len(set(columns)):
            raise IncompatibleArchive(f"{name}: the columns of table {entry['name']!r} do not match this "
                                      "application's schema; nothing was changed.")
        if entry.get("member") not in manifest["members"] or not isinstance(entry.get("rows"), int):
            raise ArchiveInvalid(f"{name}: table {entry['name']!r} has no data member; nothing was changed.")
    if _has(manifest["parts"], "database") and seen != set(known):
        missing = sorted(set(known) - seen)
        raise ArchiveInvalid(f"{name} lacks table {missing[0]!r}; it is incomplete. Nothing was changed.")


def _check_expansion(reader, entry):
    meta = reader.manifest["members"][entry["member"]]
    raw = entry.get("raw_bytes")
    if not isinstance(raw, int) or raw < 0 or raw > max(meta["size"], 1) * MAX_EXPANSION + 1024 * 1024:
        raise UnsafeArchive(f"The table data of {entry['name']!r} claims an implausible size (a decompression "
                            "bomb?); refused, nothing was changed.")


def _table_chunks(reader, entry):
    """Decompressed table data, stopping at the size the manifest declares."""
    meta = reader.manifest["members"][entry["member"]]
    limit = entry["raw_bytes"]
    seen = 0
    with reader.open(entry["member"], meta["size"]) as raw:
        with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as stream:
            while True:
                try:
                    chunk = stream.read(files.CHUNK)
                except zstandard.ZstdError as error:
                    raise RestoreFailed(f"The table data of {entry['name']!r} is corrupt ({error}); the restore "
                                        "was rolled back and the store is unchanged.") from None
                if not chunk:
                    break
                seen += len(chunk)
                if seen > limit:
                    raise RestoreFailed(f"The table data of {entry['name']!r} is larger than declared; the restore "
                                        "was rolled back and the store is unchanged.")
                yield chunk


@dataclass
class RestoreResult:
    parts: str
    row_counts: dict
    file_count: int
    file_bytes: int


def restore_archive(path, *, engine, metadata, uploads_dir, signing_key, schema_revision, parts,
                    max_total_bytes=None, max_members=DEFAULT_MAX_MEMBERS, progress=None, _fail_after_rows=None):
    """Replace the chosen parts of the store; all of it happens, or none of it."""
    report = Reporter(progress)
    journal.recover(uploads_dir, engine)
    summary = inspect_archive(path, signing_key=signing_key, schema_revision=schema_revision, metadata=metadata,
                              max_total_bytes=max_total_bytes, max_members=max_members, progress=progress)
    if summary.kind != "backup":
        raise IncompatibleArchive(f"{summary.name} is an export, not a backup: exports leave out passwords and "
                                  "secrets and cannot be restored. Restore a backup instead; nothing was changed.")
    if parts not in PARTS or not (parts == summary.parts or summary.parts == "both"):
        raise IncompatibleArchive(f"{summary.name} holds {summary.parts}; it cannot restore {parts}. Nothing was changed.")
    with Reader(path, signing_key) as reader:
        staged = None
        if _has(parts, "files"):
            staged = files.StagedFiles(uploads_dir)
            try:
                staged.extract(reader, files.file_members(reader.manifest), report)
            except BaseException:
                staged.undo()
                raise
        try:
            if _has(parts, "database"):
                journal.ensure_marker_table(engine)
                _restore_database(reader, engine, metadata, staged, report, _fail_after_rows)
            elif staged is not None:
                report("swap", 0, 1, "steps", "Moving the restored files into place", force=True)
                staged.swap_in()
        except BaseException:
            if staged is not None:
                staged.undo()
            raise
    if staged is not None:
        staged.commit()
    report("done", 1, 1, "restores", "Restore complete", force=True)
    return RestoreResult(parts=parts, row_counts=summary.row_counts if _has(parts, "database") else {},
                         file_count=summary.file_count if _has(parts, "files") else 0,
                         file_bytes=summary.file_bytes if _has(parts, "files") else 0)


def _restore_database(reader, engine, metadata, staged, report, fail_after_rows):
    tables = store_tables(metadata)
    entries = {entry["name"]: entry for entry in reader.manifest["tables"]}
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
                database.load_table(connection, table, columns, _table_chunks(reader, entry), entry["rows"],
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
    """Kept archives, newest first; one that cannot be read is listed with its problem."""
    folder = Path(backups_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = container.NAME_PATTERN.match(path.name)
        if not match or not path.is_file() or path.is_symlink():
            continue
        info = ArchiveInfo(name=path.name, size=path.stat().st_size, kind=match["kind"], parts=match["parts"])
        if signing_key is not None:
            try:
                with Reader(path, signing_key) as reader:
                    m = reader.manifest
                    info.created_at = str(m.get("created_at", "")).replace("T", " ").rstrip("Z")
                    info.created_by, info.label = str(m.get("created_by", "")), m.get("label")
                    info.safety, info.kind, info.parts = bool(m.get("safety")), m.get("kind"), m.get("parts")
            except SnapshotError as error:
                info.problem = str(error)
        found.append(info)
    return sorted(found, key=lambda i: container.NAME_PATTERN.match(i.name)["stamp"], reverse=True)


def delete_archive(backups_dir, name):
    container.archive_path(backups_dir, name).unlink()
