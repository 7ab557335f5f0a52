"""Format 2's member list: every way it can disagree with the archive is refused, with a one-line reason, before
anything changes. The archives are rewritten from a valid backup and signed again with the right key, so the
checks behind the signature are the ones hit (tests/snapshot/hostile.py)."""
import hashlib
from pathlib import Path

import pytest

from app.snapshot import ArchiveInvalid, SnapshotError, UnsafeArchive
from app.snapshot.container import MEMBER_LIST, Reader
from tests.snapshot import hostile
from tests.snapshot.test_hostile import Case, assert_refused, valid  # noqa: F401 (valid is a fixture)

DATA = Path(__file__).resolve().parents[1] / "data" / "demo-store-backup-both-20261126T003212626536Z-af0e2f.zip"


def _files(members):
    return [m for m in members if m.name.startswith("files/")]


def _lines(members, manifest):
    return hostile.member_list(members, manifest).splitlines(keepends=True)


# Each case: (members, manifest) in format 1's shape -> dict of write_v2 arguments (list_data, reference), after
# changing members or manifest as it likes.

def list_hash_wrong(members, manifest):
    data = hostile.member_list(members, manifest)
    return {"list_data": data, "reference": {"sha256": hashlib.sha256(data + b"x").hexdigest()}}


def list_name_disagrees(members, manifest):
    lines = _lines(members, manifest)
    sha, size, name = lines[0].decode().rstrip("\n").split("\t")
    lines[0] = f"{sha}\t{size}\t{name}-renamed\n".encode()
    return {"list_data": b"".join(lines)}


def list_size_disagrees(members, manifest):
    lines = _lines(members, manifest)
    sha, size, name = lines[0].decode().rstrip("\n").split("\t")
    lines[0] = f"{sha}\t{int(size) + 1}\t{name}\n".encode()
    return {"list_data": b"".join(lines)}


def list_order_disagrees(members, manifest):
    lines = _lines(members, manifest)
    lines[0], lines[1] = lines[1], lines[0]
    return {"list_data": b"".join(lines)}


def names_unsorted(members, manifest):
    a, b = _files(members)[:2]
    i, j = members.index(a), members.index(b)
    members[i], members[j] = b, a  # the archive and its list agree, but not in name order
    return {}


def name_twice(members, manifest):
    first = _files(members)[0]
    members.insert(members.index(first) + 1, hostile.Member(first.name, first.data))
    return {}


def database_member_twice(members, manifest):
    first = next(m for m in members if m.name.startswith("database/"))
    members.insert(members.index(first) + 1, hostile.Member(first.name, first.data))
    return {}


def list_longer(members, manifest):
    data = hostile.member_list(members, manifest)
    extra = f"{'0' * 64}\t1\tfiles/zzz-not-in-the-archive\n".encode()
    return {"list_data": data + extra, "reference": {"count": data.count(b"\n")}}


def list_shorter(members, manifest):
    lines = _lines(members, manifest)
    return {"list_data": b"".join(lines[:-1]), "reference": {"count": len(lines)}}


def list_claims_a_huge_count(members, manifest):
    return {"reference": {"count": 10 ** 12}}


def list_missing(members, manifest):
    return {"list_data": b"", "omit_list": True}


def file_and_folder_same_name(members, manifest):
    first = _files(members)[0]
    inside = hostile.Member(first.name + "/inside.txt", b"payload")
    members.insert(members.index(first) + 1, inside)
    hostile.listed(manifest, inside)
    return {}


def file_and_folder_same_name_apart(members, manifest):
    """'x', 'x.txt' and 'x/inside': the clash is still caught (in name order 'x/inside' comes right after 'x')."""
    first = _files(members)[0]
    added = [hostile.Member(first.name + "/inside.txt", b"payload"), hostile.Member(first.name + ".txt", b"payload")]
    at = members.index(first) + 1
    members[at:at] = added
    for member in added:
        hostile.listed(manifest, member)
    return {}


def _counted(members, manifest):
    """The list's count as the directory has it (a name holding a newline adds a line, not a member)."""
    return {"count": sum(1 for m in members if m.name in manifest["members"])}


def _named(case_name, name):
    def case(members, manifest):
        member = hostile.Member(name, b"payload")
        members.insert(members.index(_files(members)[-1]) + 1, member)
        hostile.listed(manifest, member)
        return {"reference": _counted(members, manifest)}
    case.__name__ = case_name
    return case


name_with_tab = _named("name_with_tab", "files/zz\tname.txt")
name_with_newline = _named("name_with_newline", "files/zz\nname.txt")
name_with_control_character = _named("name_with_control_character", "files/zz\x07name.txt")
name_outside_known_prefixes = _named("name_outside_known_prefixes", "scripts/run.sh")
name_with_dot_dot = _named("name_with_dot_dot", "files/../../zz-outside.txt")


def list_line_malformed(members, manifest):
    lines = _lines(members, manifest)
    lines[0] = lines[0].replace(b"\t", b" ", 1)
    return {"list_data": b"".join(lines)}


def list_line_unterminated(members, manifest):
    return {"list_data": hostile.member_list(members, manifest).rstrip(b"\n"), "reference": _counted(members, manifest)}


def list_sha_malformed(members, manifest):
    lines = _lines(members, manifest)
    lines[0] = b"NOT-A-SHA" + lines[0][9:]
    return {"list_data": b"".join(lines)}


def checksum_in_list_wrong(members, manifest):
    lines = _lines(members, manifest)
    lines[0] = b"0" * 64 + lines[0][64:]
    return {"list_data": b"".join(lines)}


CASES = {
    list_hash_wrong: Case(UnsafeArchive, "does not match the SHA-256 its signed manifest gives", "inspect"),
    list_name_disagrees: Case(UnsafeArchive, "in its member list \\(the two disagree\\)", "inspect"),
    list_size_disagrees: Case(UnsafeArchive, "bytes but the manifest says", "inspect"),
    list_order_disagrees: Case(UnsafeArchive, "the two disagree", "inspect"),
    names_unsorted: Case(UnsafeArchive, "lists its files out of order", "inspect"),
    name_twice: Case(UnsafeArchive, "twice", "inspect"),
    database_member_twice: Case(UnsafeArchive, "twice", "inspect"),
    list_longer: Case(UnsafeArchive, "lists more members than its directory holds", "inspect"),
    list_shorter: Case(UnsafeArchive, "lists fewer members than its directory holds", "inspect"),
    list_claims_a_huge_count: Case(UnsafeArchive, "member list of 1,000,000,000,000 members, but its directory",
                                   "inspect"),
    list_missing: Case(ArchiveInvalid, "no member list where its manifest says", "inspect"),
    file_and_folder_same_name: Case(UnsafeArchive, "both a file and a folder", "inspect"),
    file_and_folder_same_name_apart: Case(UnsafeArchive, "both a file and a folder", "inspect"),
    name_with_tab: Case(UnsafeArchive, "control character", "inspect"),
    name_with_newline: Case(UnsafeArchive, "control character", "inspect"),
    name_with_control_character: Case(UnsafeArchive, "control character", "inspect"),
    name_outside_known_prefixes: Case(UnsafeArchive, "never writes", "inspect"),
    name_with_dot_dot: Case(UnsafeArchive, r"'\.\.'", "inspect"),
    list_line_malformed: Case(UnsafeArchive, "damaged member list \\(line 1 is not", "inspect"),
    list_line_unterminated: Case(UnsafeArchive, "damaged member list \\(line .* is cut short", "inspect"),
    list_sha_malformed: Case(UnsafeArchive, "damaged member list", "inspect"),
    checksum_in_list_wrong: Case(ArchiveInvalid, "does not match its checksum", "inspect"),
}


def build(case, archive, out, key):
    members, manifest = hostile.read(archive)
    arguments = case(members, manifest)
    if arguments.pop("omit_list", False):  # a format-2 manifest with no list member at all
        listing = {"list": MEMBER_LIST, "count": len(members) - 1, "bytes": 0,  # a count that fits the directory
                   "sha256": hashlib.sha256(b"").hexdigest()}
        return hostile.write(out, members, {**manifest, "format_version": 2, "members": listing}, key)
    return hostile.write_v2(out, members, manifest, key, **arguments)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_a_bad_member_list_is_refused_and_changes_nothing(sqlite_store, valid, tmp_path, case):  # noqa: F811
    path = build(case, valid, tmp_path / f"{case.__name__}.zip", sqlite_store.key)
    message = assert_refused(sqlite_store, path, CASES[case])
    assert "nothing was changed" in message.lower() or "unchanged" in message


def test_the_builder_writes_a_valid_format_2_archive(sqlite_store, valid, tmp_path):  # noqa: F811
    """The cases above fail for their one change, not for the builder: unchanged, the rewrite restores."""
    path = build(lambda members, manifest: {}, valid, tmp_path / "unchanged.zip", sqlite_store.key)
    with Reader(path, sqlite_store.key) as reader:
        assert reader.version == 2
    summary = sqlite_store.inspect(path)
    sqlite_store.restore(path, "both")
    assert sqlite_store.inspect(path) == summary


def test_overlapping_members_are_refused_in_format_2(sqlite_store, valid, tmp_path):  # noqa: F811
    """Two listed members sharing bytes (the directory points into another member's data): refused from the
    offsets, without a sort."""
    members, manifest = hostile.read(valid)
    a, b = _files(members)[:2]
    members.remove(b)
    a.data = hostile.local_header(b.name.encode(), b.data) + b.data
    hostile.listed(manifest, a)
    order = members[:members.index(a) + 1] + [b] + members[members.index(a) + 1:]
    data = hostile.member_list(order, manifest)
    listing = {"list": MEMBER_LIST, "count": data.count(b"\n"), "bytes": len(data),
               "sha256": hashlib.sha256(data).hexdigest()}

    def tweak(records):
        at = next(i for i, r in enumerate(records) if r.name == a.name.encode())
        inside = records[at].offset + 30 + len(records[at].name)
        records.insert(at + 1, hostile.Record(b.name.encode(), inside, len(b.data), hostile.zlib.crc32(b.data)))

    path = hostile.write_raw(tmp_path / "overlap.zip", members + [hostile.Member(MEMBER_LIST, data)],
                             {**manifest, "format_version": 2, "members": listing}, sqlite_store.key, tweak)
    assert_refused(sqlite_store, path, Case(UnsafeArchive, "overlap", "inspect"))


def test_the_format_1_archive_in_tests_data_still_reads(tmp_path):
    """A real archive of format 1 (never regenerated) opens, walks and streams its members as before."""
    with Reader(DATA, "testing-signing-key") as reader:
        assert reader.version == 1
        listed = list(reader.iter_members())
        assert len(listed) == len(reader.manifest["members"]) == len(reader.entries) - 2
        for name, meta, entry in listed:
            assert entry.file_size == meta["size"]
            with reader.open(name, meta["size"], entry=entry) as stream:
                assert hashlib.sha256(stream.read()).hexdigest() == meta["sha256"]


def test_a_listing_reader_does_not_read_the_member_list(sqlite_store, valid, tmp_path):  # noqa: F811
    """Listings read the signed manifest only: a damaged list shows only when the archive is checked."""
    path = build(list_hash_wrong, valid, tmp_path / "bad-list.zip", sqlite_store.key)
    with Reader(path, sqlite_store.key, check_members=False) as reader:
        assert reader.manifest["kind"] == "backup" and reader.manifest["members"]["list"] == MEMBER_LIST
    with pytest.raises(SnapshotError):
        Reader(path, sqlite_store.key)
