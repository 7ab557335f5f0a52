"""The app's request class: file parts of a multipart body are streamed to the incoming folder."""
import tempfile

from flask import Request, has_app_context

from app.operations.incoming import incoming_dir


class UploadRequest(Request):
    """File parts go to an unnamed-on-failure temp file beside the backups, never into memory and
    never into the system temp folder (which may be small or shared)."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        if not has_app_context():
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        # Deleted on close unless incoming.store_upload() linked it under a real name first.
        return tempfile.NamedTemporaryFile("w+b", dir=incoming_dir(), prefix=".upload-", suffix=".part")
