"""The backup engine: archives of the store's database and files. It knows nothing of Flask, RQ or Redis."""
from app.snapshot.container import archive_path
from app.snapshot.database import Redaction
from app.snapshot.errors import (
    ArchiveInvalid, ArchiveNotFound, IncompatibleArchive, InsufficientSpace, RestoreFailed, SignatureInvalid,
    SnapshotError, UnsafeArchive,
)
from app.snapshot.operations import (
    ArchiveInfo, ArchiveSummary, RestoreResult, archive_to_csv, create_archive, delete_archive, inspect_archive,
    list_archives, read_table, restore_archive,
)
from app.snapshot.progress import ProgressEvent
from app.snapshot.redaction import STORE_REDACTIONS

__all__ = [
    "create_archive", "archive_to_csv", "inspect_archive", "read_table", "restore_archive", "list_archives", "delete_archive", "archive_path",
    "ArchiveSummary", "ArchiveInfo", "RestoreResult", "ProgressEvent", "Redaction", "STORE_REDACTIONS",
    "SnapshotError", "ArchiveInvalid", "ArchiveNotFound", "IncompatibleArchive", "InsufficientSpace",
    "RestoreFailed", "SignatureInvalid", "UnsafeArchive",
]
