"""Typed errors of the engine; every message says what happened, what was left alone, what to do."""


class SnapshotError(Exception):
    """Base class: an operation refused or failed; the store was left as it was unless said otherwise."""


class ArchiveNotFound(SnapshotError):
    pass


class ArchiveInvalid(SnapshotError):
    """Not a readable archive of ours: truncated, corrupted, or not a backup file at all."""


class SignatureInvalid(SnapshotError):
    """The manifest's signature does not match: tampered with, or signed with another key."""


class IncompatibleArchive(SnapshotError):
    """A sound archive this code cannot restore: other format or schema version, or an export."""


class UnsafeArchive(SnapshotError):
    """An archive whose members could escape the staging folder or exhaust the machine."""


class InsufficientSpace(SnapshotError):
    pass


class RestoreFailed(SnapshotError):
    """Loading failed part-way; everything was rolled back."""
