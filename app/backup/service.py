"""The service layer between the web/CLI/jobs and the engine: reads the app's configuration, calls app.snapshot."""
from flask import current_app

from app import snapshot
from app.extensions import db
from app.models import store_metadata
from app.schema import APP_VERSION, code_revision
from app.snapshot import SnapshotError  # noqa: F401  (re-exported for callers)


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


def inspect(path, progress=None):
    return snapshot.inspect_archive(
        path, signing_key=_config("BACKUP_SIGNING_KEY"), schema_revision=code_revision(), metadata=store_metadata(),
        max_total_bytes=_config("MAX_RESTORE_BYTES"), progress=progress,
    )


def restore(path, parts, progress=None):
    result = snapshot.restore_archive(
        path, engine=db.engine, metadata=store_metadata(), uploads_dir=_config("UPLOADS_DIR"),
        signing_key=_config("BACKUP_SIGNING_KEY"), schema_revision=code_revision(), parts=parts,
        max_total_bytes=_config("MAX_RESTORE_BYTES"), progress=progress,
    )
    db.session.expire_all()  # the ORM's identity map still holds the rows from before
    return {"row_counts": result.row_counts, "file_count": result.file_count, "file_bytes": result.file_bytes}


def end_store_sessions():
    """After a restore every store session from before it is over (the users table was replaced)."""
    from app.models import StoreStatus

    status = StoreStatus.for_update()
    status.session_epoch += 1
    db.session.commit()


def list_archives():
    return snapshot.list_archives(_config("BACKUPS_DIR"), signing_key=_config("BACKUP_SIGNING_KEY"))


def archive_path(name):
    return snapshot.archive_path(_config("BACKUPS_DIR"), name)


def delete(name):
    snapshot.delete_archive(_config("BACKUPS_DIR"), name)


def recover():
    """Finish or undo a restore a killed worker left half-done (call only while holding the store's lock)."""
    from app import audit
    from app.snapshot import journal

    actions = journal.recover(_config("UPLOADS_DIR"), db.engine)
    for action in actions:
        audit.record("restore.recover", detail=action, actor="worker")
    return actions
