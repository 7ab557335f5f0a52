"""The engine, configured from the app: create, check, restore, list and delete archives.

Archives are kept in the archive store the configuration names (app.storage: the BACKUPS_DIR folder,
or an S3 bucket shared by several hosts). The engine always writes into BACKUPS_DIR and reads local
files; with a bucket, a new archive is uploaded and its local file removed, and a kept archive is
fetched into a local file for the time it is read.
"""
import hashlib
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from flask import current_app

from app import audit, snapshot
from app.extensions import db
from app.models import StoreStatus, store_metadata
from app.schema import APP_VERSION, code_revision, upgrade_store
from app.snapshot import SnapshotError
from app.snapshot.container import NAME_PATTERN, PARTS, Reader
from app.snapshot import journal
from app.snapshot.progress import Reporter
from app.storage import SETTINGS, archive_store

# The accounts tables: what "keep today's users and roles" leaves as it is.
ACCOUNT_TABLES = ("users",)
# Under BACKUPS_DIR: uploaded archives, and kept ones fetched from a bucket, while a run works on them.
INCOMING = "incoming"
FETCHED_PREFIX = "fetched-"
DOWNLOAD_CHUNK = 1024 * 1024

__all__ = ["PARTS", "ACCOUNT_TABLES", "read_accounts", "SnapshotError", "export", "backup", "inspect", "restore", "manifest_of", "list_archives", "newest_backup",
           "archive_path", "readable", "limits", "delete", "recover", "end_store_sessions", "exports", "export_bytes", "folder_usage",
           "free_space", "store", "kept_locally", "local_path", "check_kept", "archive_size", "archive_sha256",
           "open_archive", "download_chunks", "incoming_folder", "fetch_copy", "release_copy", "fetched", "file_sha256",
           "export_as_csv"]


def _config(key):
    return current_app.config[key]


def store():
    """The archive store of this app's configuration (one per process: a bucket client is not shared
    across the fork of a worker's job)."""
    key = (os.getpid(),) + tuple(repr(current_app.config.get(name)) for name in SETTINGS)
    cached = current_app.extensions.get("archive_store")
    if cached is None or cached[0] != key:
        cached = current_app.extensions["archive_store"] = (key, archive_store(current_app.config))
    return cached[1]


def kept_locally():
    """Are kept archives files in BACKUPS_DIR (rather than objects in a bucket)?"""
    return store().is_local


def export(created_by, progress=None):
    return _create("export", "database", created_by, progress, redactions=snapshot.STORE_REDACTIONS)


def backup(parts, created_by, progress=None, label=None, safety=False):
    return _create("backup", parts, created_by, progress, label=label, safety=safety)


def _create(kind, parts, created_by, progress, **options):
    """Write the archive into BACKUPS_DIR, then keep it in the store: returns its Path (local folder)
    or its KeptArchive (bucket); both have .name, and str() says where it is."""
    path = snapshot.create_archive(
        engine=db.engine, metadata=store_metadata(), uploads_dir=_config("UPLOADS_DIR"),
        backups_dir=_config("BACKUPS_DIR"), signing_key=_config("BACKUP_SIGNING_KEY"),
        store_name=_config("STORE_NAME"), kind=kind, parts=parts, created_by=created_by,
        schema_revision=code_revision(), app_version=APP_VERSION, progress=progress, **options,
    )
    kept = store()
    if kept.is_local:
        return kept.put(path, _config("BACKUP_SIGNING_KEY"))
    report = Reporter(progress)
    where = kept.describe()
    report("upload", 0, None, "bytes", f"Uploading the archive to {where}", force=True)
    result = kept.put(path, _config("BACKUP_SIGNING_KEY"),
                      progress=lambda done, total: report("upload", done, total, "bytes", f"Uploading to {where}"))
    report("done", 1, 1, "archives", path.name, force=True)
    return result


def limits():
    """What an archive may hold, from the configuration (the engine's keyword arguments)."""
    return {"max_total_bytes": _config("MAX_RESTORE_BYTES"), "max_members": _config("MAX_RESTORE_MEMBERS"),
            "max_row_bytes": _config("MAX_RESTORE_ROW_BYTES"), "max_value_bytes": _config("MAX_RESTORE_VALUE_BYTES")}


def inspect(path, progress=None):
    """Check an archive completely (signature, manifest, every checksum); return its summary."""
    with readable(path) as local:
        return snapshot.inspect_archive(
            local, signing_key=_config("BACKUP_SIGNING_KEY"), schema_revision=code_revision(),
            metadata=store_metadata(), progress=progress, **limits(),
        )


def read_accounts(path):
    """The archive's user accounts (for the review of what a restore would change in who may do what)."""
    caps = limits()
    with readable(path) as local:
        return snapshot.read_table(local, signing_key=_config("BACKUP_SIGNING_KEY"), metadata=store_metadata(),
                                   table="users", max_row_bytes=caps["max_row_bytes"],
                                   max_value_bytes=caps["max_value_bytes"])


def manifest_of(path):
    """The signed manifest alone: cheap, for refusing what can be refused before any work. For a kept
    archive in a bucket named by its name alone, its signed summary (the same store, kind and parts)."""
    name = _kept_name(path)
    if name is not None and not kept_locally():
        return store().summary(name, _config("BACKUP_SIGNING_KEY"))
    with readable(path) as local, Reader(local, _config("BACKUP_SIGNING_KEY"), check_members=False) as reader:
        return reader.manifest


def restore(path, parts, progress=None, keep_accounts=False, maintenance=None):
    """``maintenance``: entered by the engine around the steps that change the store (see restore_archive)."""
    with readable(path) as local:
        result = snapshot.restore_archive(
            local, engine=db.engine, metadata=store_metadata(), uploads_dir=_config("UPLOADS_DIR"),
            signing_key=_config("BACKUP_SIGNING_KEY"), schema_revision=code_revision(), parts=parts,
            keep_tables=ACCOUNT_TABLES if keep_accounts else (), progress=progress, maintenance=maintenance,
            build=lambda connection: upgrade_store(connection, code_revision()), **limits(),
        )
    db.session.expire_all()  # the ORM's identity map still holds the rows from before
    return {"row_counts": result.row_counts, "file_count": result.file_count, "file_bytes": result.file_bytes}


def end_store_sessions():
    """After a restore every store session from before it is over (the users table was replaced)."""
    status = StoreStatus.for_update()
    status.session_epoch += 1
    db.session.commit()


def recover(actor="worker"):
    """Finish or undo a restore a killed process left half-done (only while holding the store's lock)."""
    actions = journal.recover(_config("UPLOADS_DIR"), db.engine)
    for action in actions:
        audit.record("restore.recover", detail=action, actor=actor)
    return actions


def _kept_name(source):
    """`source` when it is the bare name of an archive rather than a file here (`flask backup restore
    NAME`), else None: a path that exists is always read as the file it is."""
    name = str(source)
    if NAME_PATTERN.match(name) and not Path(name).exists():
        return name
    return None


@contextmanager
def readable(source):
    """A local file for `source`: the file itself; for the bare name of a kept archive, that archive
    (fetched from the bucket for the time it is read, then removed)."""
    name = _kept_name(source)
    if name is None:
        yield source
    elif kept_locally():
        yield archive_path(name)
    else:
        with fetched(name) as path:
            yield path


def list_archives():
    return store().list(signing_key=_config("BACKUP_SIGNING_KEY"))


def newest_backup():
    """The newest kept backup that reads correctly (any parts, a safety backup too), or None."""
    kept = [a for a in list_archives() if a.kind == "backup" and not a.problem]
    return kept[0] if kept else None


def archive_path(name):
    """The file of a kept archive in BACKUPS_DIR (the local folder store only; see local_path)."""
    return snapshot.archive_path(_config("BACKUPS_DIR"), name)


def local_path(name):
    """The kept archive's own file when archives are kept in BACKUPS_DIR; None when they are in a bucket."""
    return archive_path(name) if kept_locally() else None


def check_kept(name):
    """Raise ArchiveNotFound (a SnapshotError) unless `name` is a kept archive."""
    store().require(name)


def delete(name):
    store().delete(name)


def archive_size(name):
    return store().size(name)


def archive_sha256(name):
    """The kept archive's SHA-256: recorded at upload for a bucket, computed (and remembered) for a file."""
    return store().sha256(name)


@contextmanager
def open_archive(name):
    """A readable binary stream of a kept archive, wherever it is kept."""
    stream = store().open(name)
    try:
        yield stream
    finally:
        stream.close()


class _Chunks:
    """A kept archive's bytes for a streamed response; opened before the response starts (so a missing
    archive or an unreachable bucket is an error page, not a cut download) and closed by the server."""

    def __init__(self, name):
        self.stream = store().open(name)

    def __iter__(self):
        try:
            while chunk := self.stream.read(DOWNLOAD_CHUNK):
                yield chunk
        finally:
            self.close()

    def close(self):
        self.stream.close()


def download_chunks(name):
    return _Chunks(name)


def incoming_folder():
    """Where archives wait while a run works on them (uploads, fetched copies); private to this app."""
    folder = Path(_config("BACKUPS_DIR")) / INCOMING
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def fetch_copy(name, progress=None):
    """A local copy of a kept archive, in a fresh folder of its own under the incoming folder and
    under its own name (so messages and the audit name the archive); checked against its SHA-256.
    Remove it with release_copy."""
    folder = incoming_folder() / f"{FETCHED_PREFIX}{secrets.token_hex(8)}"
    folder.mkdir(mode=0o700)
    report = Reporter(progress)
    try:
        store().check_name(name)
        size = store().size(name)
        report("fetch", 0, size, "bytes", f"Fetching {name} from {store().describe()}", force=True)
        store().fetch(name, folder / name,
                      progress=lambda done: report("fetch", done, size, "bytes", f"Fetching {name}"))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder / name


def is_fetched_copy(path):
    path = Path(path)
    return path.parent.name.startswith(FETCHED_PREFIX) and path.parent.parent == incoming_folder()


def release_copy(path):
    """Remove a copy fetch_copy made (never anything else: a kept archive is not a fetched copy)."""
    if path is not None and is_fetched_copy(path):
        shutil.rmtree(Path(path).parent, ignore_errors=True)


@contextmanager
def fetched(name, progress=None):
    """A kept archive as a local file for the time of a `with` (fetched from the bucket, then removed)."""
    path = fetch_copy(name, progress)
    try:
        yield path
    finally:
        release_copy(path)


def free_space():
    """Free bytes on the backups folder's filesystem (the disk it will be on, if not created yet)."""
    folder = Path(_config("BACKUPS_DIR"))
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def folder_usage():
    """What the archive store holds, and what the backups folder's filesystem has left (archives are
    written there first, and fetched there to be restored, even when they are kept in a bucket)."""
    kept = store().usage()
    folder = Path(_config("BACKUPS_DIR"))
    while not folder.exists():  # not created yet (or removed by hand): measure the disk it will be on
        folder = folder.parent
    disk = shutil.disk_usage(folder)
    return {"archives": kept["archives"], "archive_bytes": kept["archive_bytes"], "free": disk.free,
            "total": disk.total, "percent_used": round(100 * (disk.total - disk.free) / disk.total) if disk.total else 0}


def exports():
    """Kept exports, told by their names alone (no archive is opened: this runs before every export)."""
    return [a for a in store().list() if a.kind == "export"]


def export_bytes():
    """What kept exports take on disk, for the export quota."""
    return sum(info.size for info in exports())


def file_sha256(path):
    """The SHA-256 of a local archive file (the one reviewed must be the one restored)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def export_as_csv(name, target):
    """A kept export as a ZIP of one CSV per table, at ``target`` (for a spreadsheet; the export's own
    redaction applies: it is read from the export). Only exports: a backup holds secrets."""
    with fetched(name) if not kept_locally() else _as_is(archive_path(name)) as path:
        manifest = manifest_of(path)
        if manifest.get("kind") != "export":
            raise snapshot.IncompatibleArchive(f"{name} is a backup; only exports (with secrets removed) can be "
                                               "downloaded as spreadsheets.")
        caps = limits()
        return snapshot.archive_to_csv(path, target, signing_key=_config("BACKUP_SIGNING_KEY"),
                                       metadata=store_metadata(), max_row_bytes=caps["max_row_bytes"],
                                       max_value_bytes=caps["max_value_bytes"])


@contextmanager
def _as_is(path):
    yield path
