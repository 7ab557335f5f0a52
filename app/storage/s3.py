"""One S3 bucket (and a prefix in it) as a place to keep whole files: a small client around boto3.

Knows nothing of Flask or of archives beyond their names. Everything is streamed: an upload reads one
part at a time (multipart), a download writes one chunk at a time, so memory does not grow with the
size of what is stored. Every object carries our own SHA-256 (object metadata "sha256"), computed
from the bytes we read, so a copy can be verified by reading it back without trusting the server.
Every failure comes out as a StorageError whose message says what is wrong in words a store owner or
platform operator can act on (wrong credentials, missing bucket, unreachable server).
"""
import base64
import hashlib
import io
import math

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectionError as BotoConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from app.snapshot.errors import SnapshotError

MIB = 1024 * 1024
PART_SIZE = 16 * MIB
MIN_PART_SIZE = 5 * MIB  # S3's own floor for every part but the last
MAX_PARTS = 10_000
CHUNK = MIB

# What S3 answers, grouped by what the operator has to do about it.
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "TokenRefreshRequired", "InvalidSecurity"}
_REGION_CODES = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException", "301"}
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class StorageError(SnapshotError):
    """The bucket could not do what was asked; the message says why, for a person. A SnapshotError, so
    that every caller that reports an operation's failure in one line reports this one too."""


class ObjectMissing(StorageError):
    """The object asked for is not in the bucket."""


def check_name(name):
    """An object name is one archive name: no folders, no way out of the prefix."""
    if (not isinstance(name, str) or not name or "/" in name or "\\" in name or ".." in name
            or len(name) > 512 or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise StorageError(f"Refusing the object name {name!r}: only plain archive names are stored.")
    return name


def _read_full(fileobj, size):
    """Up to `size` bytes: a raw stream may return less than asked before its end."""
    pieces, missing = [], size
    while missing:
        piece = fileobj.read(missing)
        if not piece:
            break
        pieces.append(piece)
        missing -= len(piece)
    return b"".join(pieces)


def _b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class S3Bucket:
    """Objects named prefix + name in one bucket."""

    def __init__(self, endpoint_url, bucket, prefix="", access_key=None, secret_key=None,
                 region="us-east-1", checksums=True, part_size=PART_SIZE):
        if not bucket:
            raise StorageError("No S3 bucket is configured.")
        if part_size < MIN_PART_SIZE:
            raise StorageError(f"An S3 part must be at least {MIN_PART_SIZE // MIB} MiB.")
        self.endpoint_url = endpoint_url or None
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.checksums = checksums
        self.part_size = part_size
        self.region = region or "us-east-1"
        settings = {
            "retries": {"mode": "standard", "max_attempts": 3},
            "connect_timeout": 5,
            "read_timeout": 60,
            # Self-hosted S3 servers rarely have wildcard DNS for bucket.host names.
            "s3": {"addressing_style": "path" if self.endpoint_url else "auto"},
        }
        if not checksums:
            settings.update(request_checksum_calculation="when_required",
                            response_checksum_validation="when_required")
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
            config=Config(**settings))

    # -- what it is, for messages -------------------------------------------------------------

    @property
    def url(self):
        """s3://bucket/prefix/ — what an object's name is appended to."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def where(self):
        return f"{self.url} at {self.endpoint_url or 'AWS S3'}"

    def key(self, name):
        return self.prefix + check_name(name)

    def _error(self, error, doing, name=None):
        """A StorageError saying, in plain words, why `doing` failed."""
        what = f"{doing} {name!r}" if name else doing
        if isinstance(error, StorageError):
            return error
        if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"Could not {what}: no S3 access key and secret key are configured "
                                f"for {self.where}.")
        if isinstance(error, SSLError):
            return StorageError(f"Could not {what}: the TLS connection to the S3 server "
                                f"{self.endpoint_url or 'AWS S3'} failed ({error}).")
        if isinstance(error, BotoConnectionError):
            return StorageError(f"Could not {what}: the S3 server {self.endpoint_url or 'AWS S3'} "
                                "cannot be reached (is it running, and is the address right?).")
        if isinstance(error, (ReadTimeoutError, ConnectionClosedError)):
            return StorageError(f"Could not {what}: the S3 server {self.endpoint_url or 'AWS S3'} "
                                "stopped answering or closed the connection.")
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            message = error.response.get("Error", {}).get("Message") or code
            if code == "NoSuchBucket":
                return StorageError(f"Could not {what}: the bucket {self.bucket!r} does not exist "
                                    f"at {self.endpoint_url or 'AWS S3'}. Create it or fix the bucket name.")
            if code in _CREDENTIAL_CODES:
                return StorageError(f"Could not {what}: the S3 server refused the access key or secret key "
                                    f"for {self.where}. Check the credentials.")
            if code in _REGION_CODES:
                return StorageError(f"Could not {what}: the bucket {self.bucket!r} is in another region than the "
                                    f"one configured ({self.region}). Set the bucket's region.")
            if code in _DENIED_CODES:
                return StorageError(f"Could not {what}: the S3 credentials are not allowed to do this on "
                                    f"{self.where}. Check the key's permissions.")
            if code in _MISSING_CODES:
                return ObjectMissing(f"Could not {what}: it is not in {self.where}.")
            return StorageError(f"Could not {what} in {self.where}: the S3 server answered {code}: {message}")
        if isinstance(error, BotoCoreError):
            return StorageError(f"Could not {what} in {self.where}: {error}")
        return StorageError(f"Could not {what} in {self.where}: {error}")

    # -- checks ------------------------------------------------------------------------------------

    def check(self):
        """Raise a StorageError unless the bucket exists and the credentials can use it."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                error.response["Error"]["Code"] = "NoSuchBucket"
            elif code in ("403", "Forbidden"):
                # HEAD answers carry no body: ask again with a listing, whose answer names the reason.
                try:
                    self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
                except (BotoCoreError, ClientError) as listing_error:
                    raise self._error(listing_error, "use the bucket") from None
            raise self._error(error, "use the bucket") from None
        except BotoCoreError as error:
            raise self._error(error, "use the bucket") from None

    # -- writing -------------------------------------------------------------------------------------

    def upload(self, fileobj, name, *, size=None, progress=None, extra_metadata=None, extra_args=None):
        """Store what `fileobj` holds as `name`, streamed; return its SHA-256, also kept with the object:
        as metadata "sha256" when `fileobj` can seek (it is hashed first), else as the tag "sha256".
        `extra_args` go to the request that creates the object (e.g. ObjectLockMode and
        ObjectLockRetainUntilDate)."""
        key = self.key(name)
        # Some servers (SeaweedFS) create a missing bucket on the first write: say it is missing instead.
        self.check()
        metadata = {str(k): str(v) for k, v in (extra_metadata or {}).items()}
        expected = None
        if _seekable(fileobj):
            # Metadata is fixed when the upload begins, so hash a file first; the upload's own hash
            # must then agree, which also catches a file changing under us.
            start = fileobj.tell()
            expected = _hash_stream(fileobj)
            fileobj.seek(start)
            metadata["sha256"] = expected
        try:
            digest, done = self._upload(fileobj, key, size, progress, metadata, dict(extra_args or {}))
        except Exception as error:
            raise self._error(error, "upload", name) from error
        if expected is not None and digest != expected:
            self._delete_quietly(key)
            raise StorageError(f"Could not upload {name!r}: the file changed while it was being uploaded.")
        if size is not None and done != size:
            self._delete_quietly(key)
            raise StorageError(f"Could not upload {name!r}: {done} bytes were read where {size} were expected.")
        if expected is None:
            self._tag_sha256(key, name, digest)
        return digest

    def _upload(self, fileobj, key, size, progress, metadata, extra):
        part_size = self.part_size
        if size:
            part_size = max(part_size, math.ceil(size / (MAX_PARTS - 1000)))
        whole = hashlib.sha256()
        first = _read_full(fileobj, part_size)
        whole.update(first)
        if len(first) < part_size:
            # Small enough for one request (this is also the only way to store an empty file).
            sums = {"ChecksumSHA256": _b64_sha256(first)} if self.checksums else {}
            self.client.put_object(Bucket=self.bucket, Key=key, Body=first, Metadata=metadata, **sums, **extra)
            if progress:
                progress(len(first))
            return whole.hexdigest(), len(first)
        if self.checksums:
            extra["ChecksumAlgorithm"] = "SHA256"
        upload_id = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata=metadata, **extra)["UploadId"]
        try:
            parts, done, data = [], 0, first
            while data:
                number = len(parts) + 1
                if number > MAX_PARTS:
                    raise ValueError("the file is too large for one S3 object")
                sums = {"ChecksumSHA256": _b64_sha256(data)} if self.checksums else {}
                answer = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                 PartNumber=number, Body=data, **sums)
                part = {"PartNumber": number, "ETag": answer["ETag"]}
                if self.checksums:
                    if answer.get("ChecksumSHA256") not in (None, sums["ChecksumSHA256"]):
                        raise ValueError(f"the server stored part {number} with a different checksum")
                    part["ChecksumSHA256"] = sums["ChecksumSHA256"]
                parts.append(part)
                done += len(data)
                if progress:
                    progress(done)
                data = _read_full(fileobj, part_size)
                whole.update(data)
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (BotoCoreError, ClientError):
                pass  # the bucket's lifecycle rules are the last resort for an orphaned upload
            raise
        return whole.hexdigest(), done

    def _tag_sha256(self, key, name, digest):
        """A stream's hash is known only at its end, after the metadata was fixed: record it as the
        object's "sha256" tag instead (tags may be set on a locked object, and make no new version)."""
        try:
            self.client.put_object_tagging(Bucket=self.bucket, Key=key,
                                           Tagging={"TagSet": [{"Key": "sha256", "Value": digest}]})
        except (BotoCoreError, ClientError) as error:
            self._delete_quietly(key)
            raise self._error(error, "record the SHA-256 of", name) from error

    def put_bytes(self, name, data, *, content_type="application/octet-stream"):
        """A small object in one request (a sidecar, a marker); returns its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        sums = {"ChecksumSHA256": _b64_sha256(data)} if self.checksums else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data, ContentType=content_type,
                                   Metadata={"sha256": digest}, **sums)
        except (BotoCoreError, ClientError) as error:
            raise self._error(error, "write", name) from error
        return digest

    def delete(self, name):
        """Remove `name`; removing what is not there is not an error (S3 says the same)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except (BotoCoreError, ClientError) as error:
            raise self._error(error, "delete", name) from error

    def _delete_quietly(self, key):
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError):
            pass

    # -- reading ---------------------------------------------------------------------------------------

    def head(self, name):
        """{size, sha256, last_modified, metadata} of `name`, or None when it is not there."""
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) in _MISSING_CODES:
                self.check()  # a HEAD answer does not say whether the object or the whole bucket is missing
                return None
            raise self._error(error, "look up", name) from error
        except BotoCoreError as error:
            raise self._error(error, "look up", name) from error
        metadata = answer.get("Metadata") or {}
        return {"size": answer["ContentLength"], "sha256": metadata.get("sha256") or self._tagged_sha256(name),
                "last_modified": answer["LastModified"], "metadata": metadata}

    def _tagged_sha256(self, name):
        try:
            tags = self.client.get_object_tagging(Bucket=self.bucket, Key=self.key(name))["TagSet"]
        except (BotoCoreError, ClientError) as error:
            raise self._error(error, "look up", name) from error
        return next((tag["Value"] for tag in tags if tag["Key"] == "sha256"), None)

    def list(self):
        """[(name, size, last_modified)] of every object directly under the prefix, all pages."""
        found = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", ()):
                    name = item["Key"][len(self.prefix):]
                    if name and "/" not in name:  # deeper "folders" are not ours
                        found.append((name, item["Size"], item["LastModified"]))
        except (BotoCoreError, ClientError) as error:
            raise self._error(error, "list the archives") from error
        return found

    def open(self, name):
        """A readable, closable stream of `name`'s bytes (use it in a `with`)."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except (BotoCoreError, ClientError) as error:
            raise self._error(error, "read", name) from error
        return _Body(answer["Body"], self, name, answer.get("ContentLength"))

    def read_bytes(self, name):
        """A small object's whole content (sidecars only: never an archive)."""
        with self.open(name) as body:
            return body.read()

    def download(self, name, fileobj, *, progress=None):
        """Write `name` into `fileobj` chunk by chunk; return the SHA-256 of what was read."""
        digest, done = hashlib.sha256(), 0
        with self.open(name) as body:
            while chunk := body.read(CHUNK):
                digest.update(chunk)
                fileobj.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done)
        return digest.hexdigest()

    def sha256_of(self, name):
        """Read `name` back and hash it: verification that does not trust the server's word."""
        return self.download(name, _Discard())


class _Body(io.RawIOBase):
    """An object's content as a plain binary stream, whose failures are StorageErrors too."""

    def __init__(self, body, bucket, name, size):
        self._body, self._bucket, self._name, self.size = body, bucket, name, size

    def readable(self):
        return True

    def read(self, size=-1):
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except Exception as error:
            raise self._bucket._error(error, "read", self._name) from error

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._body.close()
        super().close()


class _Discard:
    def write(self, data):
        return len(data)


def _seekable(fileobj):
    try:
        return fileobj.seekable()
    except (AttributeError, OSError, ValueError):
        return False


def _hash_stream(fileobj):
    digest = hashlib.sha256()
    while chunk := fileobj.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
