"""The archive store as it always was: the BACKUPS_DIR folder on this machine's disk."""
import hashlib
from pathlib import Path

from app.snapshot import delete_archive, list_archives
from app.snapshot.container import Reader, archive_path
from app.storage.base import CHUNK, ArchiveStore, copy_checked
from app.storage.summary import FIELDS


class LocalFolder(ArchiveStore):
    """Archives are files in one folder; the engine writes them there, so `put` has nothing to move."""

    is_local = True

    def __init__(self, path):
        self.path = Path(path)
        self._hashed = {}  # (path, size, mtime, inode) -> SHA-256: hashing a large archive takes a while

    def describe(self):
        return "the backups folder"

    def local_path(self, name):
        """The archive's file (ArchiveNotFound, with the engine's own wording, if there is none)."""
        return archive_path(self.path, name)

    def list(self, signing_key=None):
        return list_archives(self.path, signing_key=signing_key)

    def put(self, path, signing_key=None, progress=None):
        path = Path(path)
        if path.parent.resolve() != self.path.resolve():
            raise ValueError(f"{path} was not written into the backups folder {self.path}")
        return path

    def open(self, name):
        return open(self.local_path(name), "rb")

    def fetch(self, name, target, progress=None):
        with self.open(name) as source:
            return copy_checked(source, target, progress=progress, what=name)

    def delete(self, name):
        delete_archive(self.path, name)

    def size(self, name):
        return self.local_path(name).stat().st_size

    def sha256(self, name):
        path = self.local_path(name)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in self._hashed:
            digest = hashlib.sha256()
            with open(path, "rb") as source:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
            self._hashed = {k: v for k, v in self._hashed.items() if k[0] != key[0]}
            self._hashed[key] = digest.hexdigest()
        return self._hashed[key]

    def summary(self, name, signing_key):
        path = self.local_path(name)
        with Reader(path, signing_key, check_members=False) as reader:
            fields = {key: reader.manifest[key] for key in FIELDS}
        return {"name": name, "size": path.stat().st_size, **fields}

    def usage(self):
        kept = list_archives(self.path)
        return {"archives": len(kept), "archive_bytes": sum(a.size for a in kept)}

