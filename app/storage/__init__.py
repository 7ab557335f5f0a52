"""Where archives live: a local folder or an S3-compatible bucket, behind one small interface.

`archive_store(config)` builds the store the configuration names: ARCHIVE_STORE_URL unset, the
BACKUPS_DIR folder (`LocalFolder`); "s3://bucket/prefix", that bucket (`S3ArchiveStore`) with the
S3_* settings. `S3Bucket` is the plain bucket client (also what off-site copies use). Every failure
is a `StorageError` (a SnapshotError) whose message says what to fix.
"""
from urllib.parse import urlsplit

from app.storage.base import ArchiveStore, KeptArchive, copy_checked
from app.storage.bucket import S3ArchiveStore
from app.storage.local import LocalFolder
from app.storage.s3 import ObjectMissing, S3Bucket, StorageError, check_name

# The settings archive_store reads: a store built from them stays valid while they do not change.
SETTINGS = ("ARCHIVE_STORE_URL", "BACKUPS_DIR", "S3_ENDPOINT_URL", "S3_REGION", "S3_ACCESS_KEY_ID",
            "S3_SECRET_ACCESS_KEY", "S3_CHECKSUMS")


def archive_store(config):
    """The archive store the configuration (a mapping, e.g. app.config) names."""
    url = config.get("ARCHIVE_STORE_URL")
    if not url:
        return LocalFolder(config["BACKUPS_DIR"])
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise StorageError(f"ARCHIVE_STORE_URL={url!r} is not understood: use s3://bucket/prefix (the endpoint "
                           "and keys go in S3_ENDPOINT_URL, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY).")
    bucket = S3Bucket(config.get("S3_ENDPOINT_URL"), parts.netloc, parts.path.strip("/"),
                      access_key=config.get("S3_ACCESS_KEY_ID"), secret_key=config.get("S3_SECRET_ACCESS_KEY"),
                      region=config.get("S3_REGION") or "us-east-1", checksums=config.get("S3_CHECKSUMS", True))
    return S3ArchiveStore(bucket)


__all__ = ["ArchiveStore", "KeptArchive", "LocalFolder", "ObjectMissing", "S3ArchiveStore", "S3Bucket", "SETTINGS",
           "StorageError", "archive_store", "check_name", "copy_checked"]
