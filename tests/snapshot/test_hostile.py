"""Every class of bad archive is refused with a one-line reason and the store stays byte-identical.

Archives come from tests/snapshot/hostile.py, which rewrites a valid backup and signs it again with
the right key (except the cases about the signature), so the checks behind the signature are hit.
"""
from collections import namedtuple
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import snapshot
from app.snapshot import (
    ArchiveInvalid, IncompatibleArchive, InsufficientSpace, RestoreFailed, SignatureInvalid, SnapshotError,
    UnsafeArchive,
)
from app.snapshot import files as files_module
from tests.faults.harness import damage, metadata
from tests.snapshot import hostile

Case = namedtuple("Case", "error match stage")  # stage: refused by "inspect", or rolled back during "load"

CASES = {
    "truncated": Case(ArchiveInvalid, "truncated or corrupted", "inspect"),
    "truncated_tail": Case(ArchiveInvalid, "truncated or corrupted", "inspect"),
    "flipped_byte": Case(SnapshotError, None, "inspect"),
    "not_a_zip": Case(ArchiveInvalid, "not a readable backup archive", "inspect"),
    "tampered_manifest": Case(SignatureInvalid, "signature", "inspect"),
    "other_key": Case(SignatureInvalid, "another signing key", "inspect"),
    "nul_in_name": Case(SnapshotError, None, "inspect"),
    "absolute_path": Case(UnsafeArchive, "absolute path", "inspect"),
    "dot_dot": Case(UnsafeArchive, r"'\.\.'", "inspect"),
    "backslash": Case(UnsafeArchive, "backslash", "inspect"),
    "drive_letter": Case(UnsafeArchive, "drive letter", "inspect"),
    "control_character": Case(UnsafeArchive, "control character", "inspect"),
    "symlink": Case(UnsafeArchive, "not a regular file", "inspect"),
    "symlink_outside": Case(UnsafeArchive, "not a regular file", "inspect"),
    "hard_link_like_device": Case(UnsafeArchive, "not a regular file", "inspect"),
    "fifo": Case(UnsafeArchive, "not a regular file", "inspect"),
    "directory_entry": Case(UnsafeArchive, "empty, '.' or '..' path segment|not a regular file", "inspect"),
    "unlisted_member": Case(UnsafeArchive, "does not list", "inspect"),
    "member_outside_known_prefixes": Case(UnsafeArchive, "never writes", "inspect"),
    "duplicate_name": Case(UnsafeArchive, "twice", "inspect"),
    "file_and_folder_same_name": Case(UnsafeArchive, "both a file and a folder", "inspect"),
    "member_larger_than_declared": Case(UnsafeArchive, "manifest says", "inspect"),
    "checksum_mismatch": Case(ArchiveInvalid, None, "inspect"),
    "listed_but_missing": Case(ArchiveInvalid, "missing", "inspect"),
    "compressed_member": Case(UnsafeArchive, "compressed in a way", "inspect"),
    "format_version_newer": Case(IncompatibleArchive, "Upgrade the application", "inspect"),
    "schema_revision_newer": Case(IncompatibleArchive, "schema revision", "inspect"),
    "not_our_format": Case(ArchiveInvalid, "not a store snapshot", "inspect"),
    "unknown_kind": Case(ArchiveInvalid, "kind is 'full-disk-image', not one of 'export', 'backup'", "inspect"),
    "unknown_table": Case(UnsafeArchive, "not a store table", "inspect"),
    "platform_table": Case(UnsafeArchive, "not a store table", "inspect"),
    "column_not_in_schema": Case(IncompatibleArchive, "columns of table 'users'", "inspect"),
    "table_missing": Case(ArchiveInvalid, "lacks table 'orders'", "inspect"),
    "decompression_bomb_declared": Case(UnsafeArchive, "decompression bomb", "inspect"),
    "decompression_bomb_hidden": Case(UnsafeArchive, "larger than declared", "inspect"),
    "row_count_lies": Case(ArchiveInvalid, "declares 2999 rows but holds 3000", "inspect"),
    "row_breaks_primary_key": Case(RestoreFailed, "rolled back", "load"),
    "row_breaks_foreign_key": Case(RestoreFailed, "rolled back", "load"),
    "row_wrong_type": Case(RestoreFailed, "rolled back", "load"),
    "row_with_too_many_fields": Case(RestoreFailed, "rolled back", "load"),
    "corrupt_table_stream": Case(ArchiveInvalid, "table data of 'orders' is corrupt", "inspect"),
    # the central directory and the member ranges, read by our code before zipfile could
    "entry_count_over_limit": Case(UnsafeArchive, "holds 1,000,001 members, over the limit of 1,000,000", "inspect"),
    "directory_size_over_limit": Case(UnsafeArchive, "central directory of 4295 MB, over the limit", "inspect"),
    "many_entries_unsigned": Case(ArchiveInvalid, "no signed manifest", "inspect"),
    "overlapping_entries": Case(UnsafeArchive, "overlap", "inspect"),
    "member_past_directory": Case(UnsafeArchive, "runs past the end of the member data", "inspect"),
    "non_ascii_signature": Case(SignatureInvalid, "fails its signature check", "inspect"),
    "overlong_component": Case(UnsafeArchive, "path component longer than 255 bytes", "inspect"),
    # table data: one row, one value
    "overlong_row": Case(UnsafeArchive, "Table 'settings' has a row longer than 64 MiB", "inspect"),
    "overlong_value": Case(UnsafeArchive, "Table 'settings' has a value longer than 32 MiB", "inspect"),
    # the manifest schema, and what it cannot say
    "created_at_missing": Case(ArchiveInvalid, "invalid manifest: created_at is missing", "inspect"),
    "created_at_malformed": Case(ArchiveInvalid, "created_at is 'last tuesday', which is not in the expected format",
                                 "inspect"),
    "created_at_impossible": Case(ArchiveInvalid, "created_at '2026-13-45T25:61:61Z' is not a real date", "inspect"),
    "files_not_an_object": Case(ArchiveInvalid, "files should be an object, not an array", "inspect"),
    "unknown_manifest_field": Case(ArchiveInvalid, "run_after_restore is not a known field", "inspect"),
    "member_size_negative": Case(ArchiveInvalid, r"members/files/.* is -1, below 0", "inspect"),
    "member_sha_malformed": Case(ArchiveInvalid, r"members/files/.*/sha256 is 'not-a-sha'", "inspect"),
    "table_rows_not_a_number": Case(ArchiveInvalid, "tables/0/rows should be an integer, not a string", "inspect"),
    "table_data_shared": Case(ArchiveInvalid, "has no data member of its own", "inspect"),
}


def test_every_generator_case_has_an_expectation():
    assert set(CASES) == set(hostile.MUTATIONS) | set(hostile.RAW)


@pytest.fixture
def valid(sqlite_store):
    archive = sqlite_store.create("backup", "both", database_file=False)  # rows, as every engine but SQLite writes
    damage(sqlite_store.engine, sqlite_store.uploads)  # the store now differs from the archive
    return archive


def assert_refused(store, path, case, parts="both"):
    before = store.state()
    uploads_inode = store.uploads.stat().st_ino
    if case.stage == "inspect":
        with pytest.raises(case.error, match=case.match) as inspected:
            store.inspect(path)
        assert "\n" not in str(inspected.value)
    with pytest.raises(case.error, match=case.match) as restored:
        store.restore(path, parts)
    message = str(restored.value)
    assert message and "\n" not in message and len(message) < 600
    if case.stage == "load":
        assert "rolled back" in message
    assert store.state() == before
    assert store.uploads.stat().st_ino == uploads_inode  # the folder was never swapped
    assert not [p.name for p in store.uploads.parent.iterdir() if p.name.startswith(".uploads")]
    return message


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_archive_is_refused_and_changes_nothing(sqlite_store, valid, tmp_path, name):
    path = hostile.build(name, valid, tmp_path / f"{name}.zip", sqlite_store.key)
    assert_refused(sqlite_store, path, CASES[name])


@pytest.mark.parametrize("name", [n for n, c in sorted(CASES.items()) if c.stage == "load"])
def test_bad_rows_are_rolled_back_on_postgresql(pg_store, tmp_path, name):
    archive = pg_store.create("backup", "database")
    damage(pg_store.engine, pg_store.uploads)
    path = hostile.build(name, archive, tmp_path / f"{name}.zip", pg_store.key)
    assert_refused(pg_store, path, CASES[name], parts="database")


def test_sql_in_a_value_is_restored_as_data(sqlite_store, valid, tmp_path):
    path = hostile.mutated(valid, tmp_path / "sql.zip", sqlite_store.key, hostile.row_with_sql_text)
    sqlite_store.restore(path, "database")
    settings, users = metadata().tables["settings"], metadata().tables["users"]
    with sqlite_store.engine.connect() as c:
        assert c.scalar(sa.select(settings.c.value).where(settings.c.key == "evil")) == "x'); DROP TABLE users; --"
        assert c.scalar(sa.select(sa.func.count()).select_from(users)) > 0


def test_too_many_members_is_refused(sqlite_store, valid):
    case = Case(UnsafeArchive, "over the limit of 10", "inspect")
    before = sqlite_store.state()
    with pytest.raises(case.error, match=case.match):
        sqlite_store.restore(valid, "both", max_members=10)
    assert sqlite_store.state() == before


def test_files_over_the_configured_limit_are_refused(sqlite_store, valid):
    before = sqlite_store.state()
    with pytest.raises(InsufficientSpace, match="over the configured limit"):
        sqlite_store.restore(valid, "both", max_total_bytes=1000)
    assert sqlite_store.state() == before


def test_files_over_the_free_disk_space_are_refused(sqlite_store, valid, monkeypatch):
    real = files_module.shutil.disk_usage

    def full_disk(path):  # the outer edge: what the operating system says is free
        usage = real(path)
        return type(usage)(usage.total, usage.total, 1024)

    monkeypatch.setattr(files_module.shutil, "disk_usage", full_disk)
    before = sqlite_store.state()
    with pytest.raises(InsufficientSpace, match="only 0 MB"):
        sqlite_store.restore(valid, "both")
    assert sqlite_store.state() == before


def test_a_missing_archive_is_a_clear_error(sqlite_store, tmp_path):
    from app.snapshot import ArchiveNotFound

    with pytest.raises(ArchiveNotFound, match="does not exist"):
        sqlite_store.restore(tmp_path / "nowhere.zip", "both")


@pytest.mark.parametrize("name", ["../etc/passwd", "x.zip", "/abs/store-backup-both-20260101T000000000000Z-abcdef.zip",
                                  "store-backup-both-20260101T000000000000Z-abcdef.zip/../../x", None, ""])
def test_archive_path_only_accepts_our_names(sqlite_store, name):
    from app.snapshot import ArchiveNotFound, archive_path

    with pytest.raises(ArchiveNotFound):
        archive_path(sqlite_store.backups, name)


def test_archive_path_refuses_a_symlink_with_a_valid_name(sqlite_store, tmp_path):
    from app.snapshot import ArchiveNotFound, archive_path

    sqlite_store.backups.mkdir(parents=True, exist_ok=True)
    link = sqlite_store.backups / "test-store-backup-both-20260101T000000000000Z-abcdef.zip"
    link.symlink_to(Path("/etc/hostname"))
    with pytest.raises(ArchiveNotFound):
        archive_path(sqlite_store.backups, link.name)


def test_a_listing_shows_every_hostile_archive_with_its_problem_and_never_fails(sqlite_store, valid, tmp_path):
    """Whatever a file in the backups folder holds, list_archives lists it (with its problem) instead of raising."""
    names = {}
    for i, case in enumerate(sorted(CASES)):
        name = f"test-store-backup-both-20260101T0000000000{i:02d}Z-abcdef.zip"
        hostile.build(case, valid, sqlite_store.backups / name, sqlite_store.key)
        names[name] = case
    listed = {info.name: info for info in snapshot.list_archives(sqlite_store.backups, signing_key=sqlite_store.key)}
    assert set(names) <= set(listed)
    refused_by_reader = {"truncated", "not_a_zip", "tampered_manifest", "other_key", "non_ascii_signature",
                         "entry_count_over_limit", "many_entries_unsigned", "directory_size_over_limit",
                         "created_at_missing", "created_at_malformed", "files_not_an_object", "format_version_newer",
                         "not_our_format", "unknown_kind", "unknown_manifest_field", "member_sha_malformed"}
    for name, case in names.items():
        problem = listed[name].problem
        if case in refused_by_reader:
            assert problem and "\n" not in problem and str(tmp_path) not in problem, (case, problem)


def test_a_listing_survives_any_exception_a_file_provokes(sqlite_store, valid, monkeypatch):
    from app.snapshot import operations

    def explode(*args, **kwargs):
        raise TypeError(f"unexpected in {sqlite_store.backups}")

    monkeypatch.setattr(operations, "Reader", explode)
    [info] = snapshot.list_archives(sqlite_store.backups, signing_key=sqlite_store.key)
    assert info.name == valid.name and "could not be read (TypeError)" in info.problem
    assert str(sqlite_store.backups) not in info.problem


@pytest.mark.parametrize("name, match", [("overlong_row", "row longer than 64 MiB"),
                                         ("overlong_value", "value longer than 32 MiB")])
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_load_refuses_a_long_row_even_if_inspection_missed_it(engine, name, match, request, tmp_path,
                                                                   monkeypatch):
    """The limits hold in the load itself (the archive could change after it was inspected): rolled back."""
    from app.snapshot import operations

    store = request.getfixturevalue(f"{'pg' if engine == 'postgresql' else 'sqlite'}_store")
    archive = store.create("backup", "database", database_file=False)
    damage(store.engine, store.uploads)
    path = hostile.build(name, archive, tmp_path / f"{name}.zip", store.key)

    class Blind:  # inspection that checks nothing in the table data
        def __init__(self, *args):
            pass

        def write(self, data):
            pass

        def finish(self):
            pass

    monkeypatch.setattr(operations, "_TableCheck", Blind)
    assert_refused(store, path, Case(RestoreFailed, match, "load"), parts="database")
