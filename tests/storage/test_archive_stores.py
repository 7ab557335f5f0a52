"""The two archive stores, local folder and S3 bucket (a real SeaweedFS), held to the same behaviour:
put, list (with the signed fields), open, fetch, SHA-256, delete; names that are not archives refused."""
import hashlib
import json

import pytest

from app.snapshot import ArchiveNotFound, SnapshotError
from app.storage import KeptArchive, LocalFolder, S3ArchiveStore, S3Bucket, StorageError, archive_store
from app.storage.summary import sidecar_name
from tests.factories import KEY, new_store
from tests.faults.harness import fill

HOSTILE = ["", "..", "../x.zip", "a/b.zip", "notes.txt",
           "test-store-backup-both-20260101T000000000000Z-abcdef.zip/..",
           "../test-store-backup-both-20260101T000000000000Z-abcdef.zip"]


@pytest.fixture(scope="module")
def engine_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    store = new_store(f"sqlite:///{root}/store.db", root)
    fill(store.engine, store.uploads, orders=50, files=3)
    yield store
    store.engine.dispose()


@pytest.fixture(params=["local", "s3"])
def kept(request, engine_store, tmp_path):
    """(the archive store, a function that writes a new archive where the engine writes them)."""
    backups = tmp_path / "backups"
    if request.param == "local":
        place = LocalFolder(backups)
    else:
        server = request.getfixturevalue("s3_server")
        place = S3ArchiveStore(S3Bucket(server.endpoint, server.new_bucket(), "store-1", server.access_key,
                                        server.secret_key))

    def write(**extra):
        return engine_store.create(backups_dir=backups, **extra)

    return place, write


def read(path):
    return path.read_bytes()


def test_put_list_open_fetch_and_delete(kept, tmp_path):
    place, write = kept
    path = write(label="before the sale")
    data = read(path)
    where = place.put(path, KEY)
    assert where.name == path.name
    if place.is_local:
        assert where == path and path.is_file()
    else:
        assert isinstance(where, KeptArchive) and not path.exists()  # uploaded, then the local file removed
        assert str(where) == f"{place.bucket.url}{path.name}" and where.sha256 == hashlib.sha256(data).hexdigest()
    [info] = place.list(KEY)
    assert (info.name, info.size, info.kind, info.parts, info.created_by, info.label, info.safety, info.problem) == \
        (path.name, len(data), "backup", "both", "tester", "before the sale", False, None)
    assert info.created_at and "T" not in info.created_at
    [names_only] = place.list()
    assert (names_only.name, names_only.size, names_only.created_by) == (path.name, len(data), "")
    assert place.usage() == {"archives": 1, "archive_bytes": len(data)}
    with place.open(path.name) as stream:
        assert stream.read() == data
    assert place.sha256(path.name) == hashlib.sha256(data).hexdigest()
    assert place.size(path.name) == len(data)
    assert {k: place.summary(path.name, KEY)[k] for k in ("name", "store", "kind", "parts", "size")} == \
        {"name": path.name, "store": "Test Store", "kind": "backup", "parts": "both", "size": len(data)}
    target = tmp_path / "fetched" / path.name
    target.parent.mkdir()
    assert place.fetch(path.name, target) == hashlib.sha256(data).hexdigest() and read(target) == data
    place.delete(path.name)
    assert place.list(KEY) == []
    for call in (place.open, place.delete, place.sha256, place.size, place.require):
        with pytest.raises(ArchiveNotFound, match=f"no archive named {path.name}"):
            call(path.name)


def test_the_list_is_newest_first_and_says_what_cannot_be_trusted(kept):
    place, write = kept
    older = write(parts="database")
    place.put(older, KEY)
    newer = write(parts="files", signing_key="another-key")
    if place.is_local:
        place.put(newer, KEY)
    else:  # a bucket can only hold what was put; sign the summary with the other key as the engine did
        place.put(newer, "another-key")
    listed = place.list(KEY)
    assert [a.name for a in listed] == [newer.name, older.name]
    assert listed[1].problem is None
    assert listed[0].problem and "sign" in listed[0].problem
    assert listed[0].kind == "backup" and listed[0].parts == "files"  # from the name, as for a local file


@pytest.mark.parametrize("name", HOSTILE)
def test_names_that_are_not_archives_are_refused(kept, name, tmp_path):
    place, _ = kept
    for call in (place.open, place.delete, place.sha256, place.size, place.require,
                 lambda n: place.fetch(n, tmp_path / "out.zip")):
        with pytest.raises(ArchiveNotFound, match="not the name of an archive"):
            call(name)
    assert not (tmp_path / "out.zip").exists()


# -- what only a bucket can do wrong ---------------------------------------------------------------------


@pytest.fixture
def bucket_store(s3_server, engine_store, tmp_path):
    place = S3ArchiveStore(S3Bucket(s3_server.endpoint, s3_server.new_bucket(), "p", s3_server.access_key,
                                    s3_server.secret_key))
    path = engine_store.create(backups_dir=tmp_path / "backups")
    data = path.read_bytes()
    place.put(path, KEY)
    return place, path.name, data, s3_server.client()


def test_an_archive_without_its_summary_is_listed_with_a_problem(bucket_store):
    place, name, _, raw = bucket_store
    raw.delete_object(Bucket=place.bucket.bucket, Key=place.bucket.key(sidecar_name(name)))
    [info] = place.list(KEY)
    assert info.name == name and "has no summary" in info.problem
    with pytest.raises(StorageError, match="has no summary"):
        place.summary(name, KEY)


def test_a_forged_or_moved_summary_is_not_trusted(bucket_store, engine_store, tmp_path):
    place, name, _, raw = bucket_store
    key = place.bucket.key(sidecar_name(name))
    sidecar = json.loads(raw.get_object(Bucket=place.bucket.bucket, Key=key)["Body"].read())
    forged = json.loads(sidecar["summary"])
    forged["created_by"] = "someone else"
    raw.put_object(Bucket=place.bucket.bucket, Key=key,
                   Body=json.dumps({"summary": json.dumps(forged), "signature": sidecar["signature"]}).encode())
    [info] = place.list(KEY)
    assert "not signed with this store's key" in info.problem and info.created_by == ""
    other = engine_store.create(backups_dir=tmp_path / "other")
    place.put(other, KEY)
    moved = raw.get_object(Bucket=place.bucket.bucket, Key=place.bucket.key(sidecar_name(other.name)))["Body"].read()
    raw.put_object(Bucket=place.bucket.bucket, Key=key, Body=moved)
    problems = {a.name: a.problem for a in place.list(KEY)}
    assert "belongs to another archive" in problems[name] and problems[other.name] is None


def test_an_archive_changed_in_the_bucket_is_caught(bucket_store, tmp_path):
    place, name, data, raw = bucket_store
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    head = raw.head_object(Bucket=place.bucket.bucket, Key=place.bucket.key(name))
    raw.put_object(Bucket=place.bucket.bucket, Key=place.bucket.key(name), Body=bytes(damaged),
                   Metadata=head["Metadata"])  # same size, same recorded SHA-256: only reading finds it
    (tmp_path / "fetched").mkdir()
    target = tmp_path / "fetched" / name
    with pytest.raises(SnapshotError, match="does not match its recorded SHA-256"):
        place.fetch(name, target)
    assert list(target.parent.iterdir()) == []  # not even the partial copy
    raw.put_object(Bucket=place.bucket.bucket, Key=place.bucket.key(name), Body=data[:-10], Metadata=head["Metadata"])
    [info] = place.list(KEY)
    assert "was changed or damaged there" in info.problem


def test_a_failed_upload_leaves_nothing_listed_and_no_local_file(s3_server, engine_store, tmp_path):
    place = S3ArchiveStore(S3Bucket(s3_server.endpoint, "no-such-bucket", "", s3_server.access_key,
                                    s3_server.secret_key))
    path = engine_store.create(backups_dir=tmp_path / "backups")
    with pytest.raises(StorageError, match="does not exist"):
        place.put(path, KEY)
    assert not path.exists()


def test_the_configuration_names_the_store(tmp_path, s3_server):
    assert isinstance(archive_store({"BACKUPS_DIR": str(tmp_path)}), LocalFolder)
    made = archive_store({"BACKUPS_DIR": str(tmp_path), "ARCHIVE_STORE_URL": "s3://shop-archives/eu/shop-1/",
                          "S3_ENDPOINT_URL": s3_server.endpoint, "S3_ACCESS_KEY_ID": "k", "S3_SECRET_ACCESS_KEY": "s",
                          "S3_REGION": "eu-central-1", "S3_CHECKSUMS": False})
    assert isinstance(made, S3ArchiveStore)
    assert (made.bucket.bucket, made.bucket.prefix, made.bucket.checksums) == ("shop-archives", "eu/shop-1/", False)
    assert made.describe() == "the bucket s3://shop-archives/eu/shop-1/"
    for url in ("https://bucket/x", "s3:///prefix", "bucket/prefix"):
        with pytest.raises(StorageError, match="is not understood: use s3://bucket/prefix"):
            archive_store({"BACKUPS_DIR": str(tmp_path), "ARCHIVE_STORE_URL": url})
