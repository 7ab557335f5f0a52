"""The engine, configured from the app: create, check, restore, list and delete archives."""
import shutil
from pathlib import Path

from flask import current_app

from app import audit, snapshot
from app.extensions import db
from app.models import StoreStatus, store_metadata
from app.schema import APP_VERSION, code_revision
from app.snapshot import SnapshotError
from app.snapshot.container import PARTS, Reader
from app.snapshot import journal

# The accounts tables: what "keep today's users and roles" leaves as it is.
ACCOUNT_TABLES = ("users",)

__all__ = ["PARTS", "ACCOUNT_TABLES", "read_accounts", "SnapshotError", "export", "backup", "inspect", "restore", "manifest_of", "list_archives",
           "archive_path", "delete", "recover", "end_store_sessions", "exports", "export_bytes", "folder_usage",
           "free_space"]


def _config(key):
    return current_app.config[key]


def export(created_by, progress=None):
    return _create("export", "database", created_by, progress, redactions=snapshot.STORE_REDACTIONS)


def backup(parts, created_by, progress=None, label=None, safety=False):
    return _create("backup", parts, created_by, progress, label=label, safety=safety)


def _create(kind, parts, created_by, progress, **options):
    return snapshot.create_archive(
        engine=db.engine, metadata=store_metadata(), uploads_dir=_config("UPLOADS_DIR"),
        backups_dir=_config("BACKUPS_DIR"), signing_key=_config("BACKUP_SIGNING_KEY"),
        store_name=_config("STORE_NAME"), kind=kind, parts=parts, created_by=created_by,
        schema_revision=code_revision(), app_version=APP_VERSION, progress=progress, **options,
    )


def _limits():
    """What an archive may hold, from the configuration (the engine's keyword arguments)."""
    return {"max_total_bytes": _config("MAX_RESTORE_BYTES"), "max_members": _config("MAX_RESTORE_MEMBERS"),
            "max_row_bytes": _config("MAX_RESTORE_ROW_BYTES"), "max_value_bytes": _config("MAX_RESTORE_VALUE_BYTES")}


def inspect(path, progress=None):
    """Check an archive completely (signature, manifest, every checksum); return its summary."""
    return snapshot.inspect_archive(
        path, signing_key=_config("BACKUP_SIGNING_KEY"), schema_revision=code_revision(), metadata=store_metadata(),
        progress=progress, **_limits(),
    )


def read_accounts(path):
    """The archive's user accounts (for the review of what a restore would change in who may do what)."""
    limits = _limits()
    return snapshot.read_table(path, signing_key=_config("BACKUP_SIGNING_KEY"), metadata=store_metadata(),
                               table="users", max_row_bytes=limits["max_row_bytes"],
                               max_value_bytes=limits["max_value_bytes"])


def manifest_of(path):
    """The signed manifest alone: cheap, for refusing what can be refused before any work."""
    with Reader(path, _config("BACKUP_SIGNING_KEY"), check_members=False) as reader:
        return reader.manifest


def restore(path, parts, progress=None, keep_accounts=False):
    result = snapshot.restore_archive(
        path, engine=db.engine, metadata=store_metadata(), uploads_dir=_config("UPLOADS_DIR"),
        signing_key=_config("BACKUP_SIGNING_KEY"), schema_revision=code_revision(), parts=parts,
        keep_tables=ACCOUNT_TABLES if keep_accounts else (), progress=progress, **_limits(),
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


def list_archives():
    return snapshot.list_archives(_config("BACKUPS_DIR"), signing_key=_config("BACKUP_SIGNING_KEY"))


def archive_path(name):
    return snapshot.archive_path(_config("BACKUPS_DIR"), name)


def delete(name):
    snapshot.delete_archive(_config("BACKUPS_DIR"), name)


def free_space():
    """Free bytes on the backups folder's filesystem (the disk it will be on, if not created yet)."""
    folder = Path(_config("BACKUPS_DIR"))
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def folder_usage():
    """What the backups folder holds and what its filesystem has left, for the page."""
    folder = Path(_config("BACKUPS_DIR"))
    kept = snapshot.list_archives(folder)
    while not folder.exists():  # not created yet (or removed by hand): measure the disk it will be on
        folder = folder.parent
    disk = shutil.disk_usage(folder)
    return {"archives": len(kept), "archive_bytes": sum(a.size for a in kept), "free": disk.free,
            "total": disk.total, "percent_used": round(100 * (disk.total - disk.free) / disk.total) if disk.total else 0}


def exports():
    """Kept exports, told by their names alone (no archive is opened: this runs before every export)."""
    return [a for a in snapshot.list_archives(_config("BACKUPS_DIR")) if a.kind == "export"]


def export_bytes():
    """What kept exports take on disk, for the export quota."""
    return sum(info.size for info in exports())
