"""Archives a run works on: uploads waiting for their check and restore (named by us, removed when
their run ends), and kept archives fetched from a bucket for one run (removed when it ends)."""
import os
import secrets
import shutil
import time
from pathlib import Path

from flask import current_app
from sqlalchemy import text

from app.extensions import db
from app.operations import archives
from app.operations.archives import INCOMING, archive_path
from app.snapshot.files import FREE_SPACE_MARGIN

__all__ = ["INCOMING", "incoming_dir", "has_room_for", "upload_cap", "store_size", "store_upload", "source_path",
           "discard", "release", "remove_stale"]
# The store's size is measured at most this often (it walks the uploads folder).
STORE_SIZE_SECONDS = 300


def incoming_dir():
    return archives.incoming_folder()


def has_room_for(size):
    """Is there room to receive ``size`` bytes and still keep the engine's safety margin free?"""
    return shutil.disk_usage(incoming_dir()).free - size >= FREE_SPACE_MARGIN


def upload_cap():
    """The largest upload this store accepts: UPLOAD_STORE_FACTOR times the store's own size (an archive
    of it is never larger), at least UPLOAD_FLOOR_BYTES (a new store must be able to receive an older or
    another one), at most MAX_UPLOAD_BYTES."""
    config = current_app.config
    return min(config["MAX_UPLOAD_BYTES"],
               max(config["UPLOAD_FLOOR_BYTES"], config["UPLOAD_STORE_FACTOR"] * store_size()))


def store_size():
    """The store's database and uploaded files in bytes, measured at most every STORE_SIZE_SECONDS."""
    measured = current_app.extensions.get("store_size")
    if measured is None or time.monotonic() - measured[0] > STORE_SIZE_SECONDS:
        measured = current_app.extensions["store_size"] = (time.monotonic(), _database_bytes() + _folder_bytes(
            Path(current_app.config["UPLOADS_DIR"])))
    return measured[1]


def _database_bytes():
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            return connection.scalar(text("SELECT pg_database_size(current_database())"))
    if engine.dialect.name == "sqlite" and engine.url.database:
        path = Path(engine.url.database)
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.is_file())
    return 0


def _folder_bytes(folder):
    total = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def store_upload(upload):
    """Give a received upload (a werkzeug FileStorage) a name of our own, never the client's."""
    remove_stale()
    name = f"{secrets.token_hex(12)}.zip"
    target = incoming_dir() / name
    stream = upload.stream
    temp_name = getattr(stream, "name", None)
    if isinstance(temp_name, str) and Path(temp_name).parent == incoming_dir():
        stream.flush()
        os.link(temp_name, target)  # the temp file itself vanishes when the request closes it
    else:  # a small body werkzeug kept in memory
        with open(target, "xb") as out:
            os.chmod(target, 0o600)
            upload.save(out)
    return name


def source_path(options, progress=None):
    """The archive a run works on: an uploaded one (by our own name) or a kept one. A kept archive in a
    bucket is fetched into a folder of its own here, every time (the run may be on a host that has never
    seen it); the run gives it back with `release` when it ends."""
    name = options.get("name", "")
    if options.get("source") == "upload":
        path = incoming_dir() / Path(name).name
        if path.name != name or not path.is_file():
            raise FileNotFoundError("The uploaded file is gone (uploads are kept for a day); upload it again.")
        return path
    if archives.kept_locally():
        return archive_path(name)
    return archives.fetch_copy(name, progress)


def release(path):
    """Remove a kept archive's fetched copy once its run is over (an upload or a kept file stays)."""
    archives.release_copy(path)


def discard(options):
    """Remove a run's uploaded archive (after its restore, or when its check refused it)."""
    if options.get("source") == "upload":
        name = Path(options.get("name", "")).name
        if name:
            (incoming_dir() / name).unlink(missing_ok=True)


def remove_stale(max_age=None):
    """Uploads nobody restored, and fetched copies a killed run left, past INCOMING_TTL seconds; also run
    by the worker at start."""
    cutoff = time.time() - (max_age if max_age is not None else current_app.config["INCOMING_TTL"])
    removed = 0
    for path in incoming_dir().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
            elif path.is_dir() and not path.is_symlink() and path.name.startswith(archives.FETCHED_PREFIX) \
                    and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            pass
    return removed
