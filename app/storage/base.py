"""What the operations need from wherever archives are kept, whichever place that is.

An archive is always written by the engine into BACKUPS_DIR first (it is a ZIP whose end is written
last), then `put` into the store; reading goes through `open` (a stream) or `fetch` (a local file,
for inspect and restore, which read the ZIP's directory at its end).
"""
import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from app.snapshot.container import NAME_PATTERN
from app.snapshot.errors import ArchiveInvalid, ArchiveNotFound, InsufficientSpace

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class KeptArchive:
    """An archive once it is in a store that is not a local folder (a local one gives its Path)."""

    name: str
    size: int
    sha256: str
    location: str

    def __str__(self):
        return self.location


class ArchiveStore:
    """The interface: list, put, open, fetch, delete, and each archive's SHA-256 and size.

    Names are archive names only (NAME_PATTERN); anything else is refused as "not an archive"."""

    is_local = False

    def describe(self):
        """Where the archives are, in words for a message ("the backups folder", "the bucket s3://…")."""
        raise NotImplementedError

    def list(self, signing_key=None):
        """ArchiveInfo of every kept archive, newest first; with the key, the signed fields too (an
        archive whose summary cannot be trusted is listed with its problem)."""
        raise NotImplementedError

    def put(self, path, signing_key, progress=None):
        """Keep the archive the engine wrote at `path` (in BACKUPS_DIR); returns where it now is."""
        raise NotImplementedError

    def open(self, name):
        """A readable binary stream of the archive (use it in a `with`)."""
        raise NotImplementedError

    def fetch(self, name, target, progress=None):
        """Copy the archive to the local file `target`, checked; returns its SHA-256."""
        raise NotImplementedError

    def delete(self, name):
        raise NotImplementedError

    def sha256(self, name):
        raise NotImplementedError

    def size(self, name):
        raise NotImplementedError

    def summary(self, name, signing_key):
        """The archive's signed summary (store, kind, parts, created_at, ...), without reading it all."""
        raise NotImplementedError

    def require(self, name):
        """Raise ArchiveNotFound unless `name` is a kept archive."""
        self.size(name)

    def usage(self):
        kept = self.list()
        return {"archives": len(kept), "archive_bytes": sum(a.size for a in kept)}

    def check_name(self, name):
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ArchiveNotFound(f"{name!r} is not the name of an archive; pick one from the list of kept archives.")
        return name

    def missing(self, name):
        return ArchiveNotFound(f"There is no archive named {name} in {self.describe()}.")


def copy_checked(source, target, expected=None, progress=None, what="the archive", origin="where it is kept"):
    """Copy the stream `source` into the new file `target` (written beside it, then renamed, so a
    half-copied file never has the final name); returns its SHA-256, refused if not `expected`."""
    target = Path(target)
    part = target.with_name(f".{target.name}.part")
    digest, done = hashlib.sha256(), 0
    try:
        with open(part, "xb") as out:
            os.chmod(part, 0o600)
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
        if expected and digest.hexdigest() != expected:
            raise ArchiveInvalid(f"{what} as read from {origin} does not match its recorded SHA-256: it was changed "
                                "or damaged there. The copy was discarded and nothing was changed.")
        os.replace(part, target)
    except BaseException as error:
        part.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise InsufficientSpace(f"There is not enough free disk space in {target.parent} to fetch {what} "
                                    f"({error.strerror}); the partial copy was removed and nothing was changed. "
                                    "Free some space and try again.") from error
        raise
    return digest.hexdigest()
