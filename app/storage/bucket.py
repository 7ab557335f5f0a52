"""The archive store in an S3-compatible bucket: what several hosts share (with PostgreSQL and Redis).

Each archive is one object, uploaded streamed from the file the engine wrote in BACKUPS_DIR (which is
then removed), followed by its signed summary ("<name>.manifest.json", see summary.py), so that a
listing reads small sidecars and never an archive. Reading back is checked against the SHA-256 we
recorded at upload.
"""
from pathlib import Path

from app.snapshot import ArchiveInfo
from app.snapshot.container import NAME_PATTERN, Reader, sign
from app.storage import summary
from app.storage.base import ArchiveStore, KeptArchive, copy_checked
from app.storage.s3 import ObjectMissing, StorageError


class S3ArchiveStore(ArchiveStore):
    def __init__(self, bucket):
        self.bucket = bucket
        self._listed = {}  # (name, size, modified, sidecar's (size, modified), key tag) -> listing fields

    def describe(self):
        return f"the bucket {self.bucket.url}"

    # -- listing ---------------------------------------------------------------------------------------

    def list(self, signing_key=None):
        objects = {name: (size, modified) for name, size, modified in self.bucket.list()}
        found = []
        for name, (size, modified) in objects.items():
            match = NAME_PATTERN.match(name)
            if not match:
                continue
            info = ArchiveInfo(name=name, size=size, kind=match["kind"], parts=match["parts"])
            if signing_key is not None:
                sidecar = objects.get(summary.sidecar_name(name))
                key = (name, size, modified, sidecar, sign(b"list", signing_key))
                fields = self._listed.get(key)
                if fields is None:
                    fields, lasting = self._listing_fields(name, size, sidecar, signing_key)
                    if lasting:
                        self._listed[key] = fields
                for field_name, value in fields.items():
                    setattr(info, field_name, value)
            found.append(info)
        for key in [k for k in tuple(self._listed) if k[0] not in objects]:  # tuple(): other threads list too
            self._listed.pop(key, None)
        return sorted(found, key=lambda i: NAME_PATTERN.match(i.name)["stamp"], reverse=True)

    def _listing_fields(self, name, size, sidecar, signing_key):
        """The list's fields from the sidecar, or a problem; and whether the answer may be remembered."""
        if sidecar is None:
            return {"problem": f"{name} has no summary ({summary.sidecar_name(name)}) in {self.describe()}: its "
                               "upload did not finish, or the summary was removed. It is listed as it is; check "
                               "it before relying on it."}, False
        try:
            found = self._read_summary(name, signing_key)
        except summary.SummaryInvalid as error:
            return {"problem": str(error)}, True
        except StorageError as error:  # not remembered: the next listing asks again
            return {"problem": str(error)}, False
        if found["size"] != size:
            return {"problem": f"{name} is {size} bytes in {self.describe()} but was {found['size']} bytes when it "
                               "was stored: it was changed or damaged there."}, True
        return summary.listing_fields(found), True

    def _read_summary(self, name, signing_key):
        with self.bucket.open(summary.sidecar_name(name)) as body:
            data = body.read(summary.MAX_BYTES + 1)
        return summary.read(name, data, signing_key)

    def summary(self, name, signing_key):
        self.check_name(name)
        try:
            return self._read_summary(name, signing_key)
        except ObjectMissing:
            self.require(name)  # no archive at all says so; an archive without its summary is damaged
            raise StorageError(f"{name} has no summary in {self.describe()}; its upload did not finish, or the "
                               "summary was removed.") from None
        except summary.SummaryInvalid as error:
            raise StorageError(str(error)) from None

    # -- writing ----------------------------------------------------------------------------------------

    def put(self, path, signing_key, progress=None):
        """Upload the archive, then its summary, then remove the local file. On any failure both objects
        and the local file are removed: the run fails, and nothing half-stored is ever listed."""
        path = Path(path)
        name = self.check_name(path.name)
        try:
            with Reader(path, signing_key, check_members=False) as reader:
                manifest = reader.manifest
            size = path.stat().st_size
            with open(path, "rb") as source:
                sha256 = self.bucket.upload(source, name, size=size,
                                            progress=(lambda done: progress(done, size)) if progress else None)
            self.bucket.put_bytes(summary.sidecar_name(name), summary.make(name, manifest, size, sha256, signing_key),
                                  content_type="application/json")
        except BaseException:
            for object_name in (summary.sidecar_name(name), name):
                try:
                    self.bucket.delete(object_name)
                except StorageError:
                    pass
            path.unlink(missing_ok=True)
            raise
        path.unlink()
        return KeptArchive(name=name, size=size, sha256=sha256, location=self.bucket.url + name)

    def delete(self, name):
        """The archive first, then its summary (a summary without its archive is never listed)."""
        self.require(name)
        self.bucket.delete(name)
        self.bucket.delete(summary.sidecar_name(name))

    # -- reading ----------------------------------------------------------------------------------------

    def _head(self, name):
        found = self.bucket.head(self.check_name(name))
        if found is None:
            raise self.missing(name)
        return found

    def size(self, name):
        return self._head(name)["size"]

    def sha256(self, name):
        recorded = self._head(name)["sha256"]
        if not recorded:
            raise StorageError(f"{name} in {self.describe()} has no recorded SHA-256; it was not stored by this "
                               "application.")
        return recorded

    def open(self, name):
        try:
            return self.bucket.open(self.check_name(name))
        except ObjectMissing:
            raise self.missing(name) from None

    def fetch(self, name, target, progress=None):
        expected = self.sha256(name)
        with self.open(name) as source:
            return copy_checked(source, target, expected, progress, what=name, origin=self.describe())

