"""Uploaded archives: streamed by werkzeug straight into a 0600 temp file in the backups folder."""
import os
import secrets
import tempfile
import time
from pathlib import Path

from flask import Request, current_app, has_app_context

INCOMING = "incoming"
# Keep this much disk free beyond what an upload needs.
FREE_SPACE_MARGIN = 256 * 1024 * 1024
# Uploaded archives nobody restored are removed after this long.
INCOMING_TTL = 24 * 3600


def incoming_dir():
    folder = Path(current_app.config["BACKUPS_DIR"]) / INCOMING
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


class UploadRequest(Request):
    """File parts of a multipart body go to an unnamed-on-failure temp file beside the backups,
    never into memory and never into the system temp folder (which may be small or shared)."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        if not has_app_context():
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        # Deleted on close unless store_upload() linked it under a real name first.
        return tempfile.NamedTemporaryFile("w+b", dir=incoming_dir(), prefix=".upload-", suffix=".part")


def store_upload(upload):
    """Give the received temp file a name of our own (never the client's) and return that name."""
    _remove_stale()
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


def source_path(options):
    """The archive a run works on: an uploaded one (by our own name) or a kept one."""
    from app.backup import service

    name = options.get("name", "")
    if options.get("source") == "upload":
        path = incoming_dir() / Path(name).name
        if path.name != name or not path.is_file():
            raise FileNotFoundError("The uploaded file is gone (uploads are kept for a day); upload it again.")
        return path
    return service.archive_path(name)


def _remove_stale():
    cutoff = time.time() - INCOMING_TTL
    for path in incoming_dir().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass
