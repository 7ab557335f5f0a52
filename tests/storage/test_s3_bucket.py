"""The S3 client against a real S3 server (SeaweedFS): streamed multipart uploads with our SHA-256 and
the server's per-part checksums, reading back, and failures that say what to fix."""
import base64
import hashlib
import io
import os
from datetime import datetime, timedelta, timezone

import pytest

from app.storage import S3Bucket, StorageError
from app.storage.s3 import MIB, MIN_PART_SIZE
from tests.seaweed import SeaweedServer

pytestmark = pytest.mark.usefixtures("s3_server")


def bucket_of(server, name=None, **options):
    return S3Bucket(server.endpoint, name or server.new_bucket(), options.pop("prefix", "archives"),
                    access_key=server.access_key, secret_key=server.secret_key, **options)


class Stream(io.RawIOBase):
    """A stream that cannot seek (a pipe, an encryptor): its hash is known only at its end."""

    def __init__(self, data, fail_after=None):
        self.data, self.at, self.fail_after = data, 0, fail_after

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.fail_after is not None and self.at >= self.fail_after:
            raise OSError("the source broke")
        piece = self.data[self.at:self.at + min(len(buffer), 1024 * 1024)]
        buffer[:len(piece)] = piece
        self.at += len(piece)
        return len(piece)


def composite_sha256(data, part_size):
    """S3's checksum of a multipart object: the SHA-256 of its parts' SHA-256s, and the part count."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    joined = b"".join(hashlib.sha256(p).digest() for p in parts)
    return f"{base64.b64encode(hashlib.sha256(joined).digest()).decode()}-{len(parts)}"


def test_a_multipart_upload_records_our_sha256_and_the_server_checks_every_part(s3_server):
    bucket = bucket_of(s3_server, part_size=MIN_PART_SIZE)
    data = os.urandom(2 * MIN_PART_SIZE + 12345)
    seen = []
    digest = bucket.upload(io.BytesIO(data), "big.zip", size=len(data), progress=seen.append)
    assert digest == hashlib.sha256(data).hexdigest()
    assert seen == [MIN_PART_SIZE, 2 * MIN_PART_SIZE, len(data)]
    head = bucket.head("big.zip")
    assert (head["size"], head["sha256"]) == (len(data), digest)
    raw = s3_server.client()
    stored = raw.head_object(Bucket=bucket.bucket, Key="archives/big.zip", ChecksumMode="ENABLED")
    assert stored["ChecksumSHA256"] == composite_sha256(data, MIN_PART_SIZE)
    parts = raw.get_object_attributes(Bucket=bucket.bucket, Key="archives/big.zip", ObjectAttributes=["ObjectParts"])
    assert [p["Size"] for p in parts["ObjectParts"]["Parts"]] == [MIN_PART_SIZE, MIN_PART_SIZE, 12345]
    out = io.BytesIO()
    assert bucket.download("big.zip", out) == digest and out.getvalue() == data
    assert bucket.sha256_of("big.zip") == digest


def test_a_wrong_part_checksum_is_refused_by_the_server(s3_server):
    """What our per-part checksum buys: a part damaged on the way is refused (BadDigest), not stored."""
    bucket = bucket_of(s3_server)
    raw = bucket.client
    upload = raw.create_multipart_upload(Bucket=bucket.bucket, Key=bucket.key("bad.zip"), ChecksumAlgorithm="SHA256")
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    with pytest.raises(Exception, match="BadDigest|checksum|Checksum"):
        raw.upload_part(Bucket=bucket.bucket, Key=bucket.key("bad.zip"), UploadId=upload["UploadId"], PartNumber=1,
                        Body=b"x" * 1024, ChecksumSHA256=wrong)
    raw.abort_multipart_upload(Bucket=bucket.bucket, Key=bucket.key("bad.zip"), UploadId=upload["UploadId"])


def test_a_stream_that_cannot_seek_is_uploaded_with_its_sha256(s3_server):
    bucket = bucket_of(s3_server, part_size=MIN_PART_SIZE)
    data = os.urandom(MIN_PART_SIZE + 999)
    digest = bucket.upload(Stream(data), "stream.zip")
    assert digest == hashlib.sha256(data).hexdigest() == bucket.head("stream.zip")["sha256"]
    assert bucket.sha256_of("stream.zip") == digest


@pytest.mark.parametrize("data", [b"", b"small archive"])
def test_small_and_empty_objects(s3_server, data):
    bucket = bucket_of(s3_server)
    assert bucket.upload(io.BytesIO(data), "small.zip") == hashlib.sha256(data).hexdigest()
    with bucket.open("small.zip") as body:
        assert body.read() == data
    assert bucket.head("small.zip")["size"] == len(data)


def test_a_failed_upload_is_aborted_and_leaves_nothing(s3_server):
    bucket = bucket_of(s3_server, part_size=MIN_PART_SIZE)
    with pytest.raises(StorageError, match="Could not upload 'broken.zip'.*the source broke"):
        bucket.upload(Stream(os.urandom(3 * MIN_PART_SIZE), fail_after=MIN_PART_SIZE + MIB), "broken.zip")
    assert bucket.head("broken.zip") is None
    assert bucket.client.list_multipart_uploads(Bucket=bucket.bucket).get("Uploads", []) == []


def test_a_file_that_changes_while_uploaded_is_refused(s3_server, tmp_path):
    bucket = bucket_of(s3_server, part_size=MIN_PART_SIZE)
    path = tmp_path / "moving.zip"
    path.write_bytes(os.urandom(2 * MIN_PART_SIZE))

    def scribble(done):
        if done == MIN_PART_SIZE:
            with open(path, "r+b") as f:
                f.seek(MIN_PART_SIZE + 10)
                f.write(b"changed")

    with open(path, "rb") as source, pytest.raises(StorageError, match="changed while it was being uploaded"):
        bucket.upload(source, "moving.zip", progress=scribble)
    assert bucket.head("moving.zip") is None


def test_listing_sees_its_prefix_only_and_deletes(s3_server):
    name = s3_server.new_bucket()
    one, other = bucket_of(s3_server, name, prefix="one"), bucket_of(s3_server, name, prefix="other")
    for n in range(3):
        one.upload(io.BytesIO(b"x" * n), f"a{n}.zip")
    other.upload(io.BytesIO(b"y"), "b.zip")
    s3_server.client().put_object(Bucket=name, Key="one/deeper/c.zip", Body=b"z")
    assert sorted((n, size) for n, size, _ in one.list()) == [("a0.zip", 0), ("a1.zip", 1), ("a2.zip", 2)]
    one.delete("a1.zip")
    one.delete("a1.zip")  # already gone: not an error
    assert [n for n, _, _ in other.list()] == ["b.zip"]
    assert sorted(n for n, _, _ in one.list()) == ["a0.zip", "a2.zip"]


def test_checksums_can_be_turned_off_for_providers_that_reject_them(s3_server):
    bucket = bucket_of(s3_server, checksums=False, part_size=MIN_PART_SIZE)
    data = os.urandom(MIN_PART_SIZE + 1)
    digest = bucket.upload(io.BytesIO(data), "plain.zip")
    assert digest == bucket.sha256_of("plain.zip") == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("name", ["", "..", "../x.zip", "a/b.zip", "/abs.zip", "x\\y.zip", "x..zip", "tab\t.zip"])
def test_hostile_names_are_refused(s3_server, name):
    bucket = bucket_of(s3_server)
    for call in (lambda: bucket.upload(io.BytesIO(b"x"), name), lambda: bucket.open(name), lambda: bucket.head(name),
                 lambda: bucket.delete(name), lambda: bucket.sha256_of(name)):
        with pytest.raises(StorageError, match="only plain archive names"):
            call()
    assert bucket.list() == []


def test_a_missing_bucket_says_so_and_is_not_created(s3_server):
    bucket = bucket_of(s3_server, "no-such-bucket-here")
    for call in (bucket.check, bucket.list, lambda: bucket.upload(io.BytesIO(b"x"), "a.zip"),
                 lambda: bucket.open("a.zip")):
        with pytest.raises(StorageError, match="the bucket 'no-such-bucket-here' does not exist at http://127.0.0.1"):
            call()
    assert "no-such-bucket-here" not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]


def test_wrong_credentials_say_so(s3_server):
    bucket = S3Bucket(s3_server.endpoint, s3_server.new_bucket(), access_key=s3_server.access_key,
                      secret_key="not-the-secret")
    for call in (bucket.check, bucket.list, lambda: bucket.upload(io.BytesIO(b"x"), "a.zip"),
                 lambda: bucket.open("a.zip")):
        with pytest.raises(StorageError, match="refused the access key or secret key.*Check the credentials"):
            call()


def test_a_stopped_server_says_it_cannot_be_reached(tmp_path):
    server = SeaweedServer(tmp_path / "weed").start()
    try:
        bucket = bucket_of(server)
        bucket.upload(io.BytesIO(b"kept"), "a.zip")
        server.stop()
        for call in (bucket.list, lambda: bucket.upload(io.BytesIO(b"x"), "b.zip"), lambda: bucket.open("a.zip"),
                     lambda: bucket.delete("a.zip")):
            with pytest.raises(StorageError, match=f"the S3 server {server.endpoint} cannot be reached"):
                call()
    finally:
        server.remove()


def test_object_lock_settings_go_with_the_upload_and_a_streams_hash_is_tagged(s3_server):
    """What off-site copies need: a copy locked until a date, sent from a stream (an encryptor, say)."""
    bucket = bucket_of(s3_server, s3_server.new_bucket(object_lock=True), part_size=MIN_PART_SIZE)
    until = datetime.now(timezone.utc) + timedelta(days=1)
    data = os.urandom(MIN_PART_SIZE + 10)
    digest = bucket.upload(Stream(data), "locked.zip",
                           extra_args={"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until})
    head = s3_server.client().head_object(Bucket=bucket.bucket, Key=bucket.key("locked.zip"))
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"] > until - timedelta(minutes=1)
    assert bucket.head("locked.zip")["sha256"] == digest == bucket.sha256_of("locked.zip")
