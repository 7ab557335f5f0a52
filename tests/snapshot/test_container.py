"""The reader's order of work (caps, then signature, then members), the manifest schema, and the table-data codec."""
import random
import tracemalloc
import zipfile

import pytest
from jsonschema import Draft202012Validator

from app.snapshot import ArchiveInvalid, UnsafeArchive, database, manifest, tablecodec
from app.snapshot.container import Reader
from bench.hostile_zip import write_many_entries


@pytest.fixture
def no_zipfile_parsing(monkeypatch):
    """zipfile must never parse an archive's central directory while it is read."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("zipfile parsed a central directory")

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", refuse)


def test_an_unsigned_archive_is_refused_before_its_directory_is_parsed(tmp_path, no_zipfile_parsing):
    path = write_many_entries(tmp_path / "many.zip", 100_000)  # under the cap: only the signature can refuse it
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveInvalid, match="no signed manifest") as refused:
            Reader(path, "key")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"{peak / 1e6:.1f} MB allocated to refuse it"  # parsing it costs ~60 MB
    assert str(tmp_path) not in str(refused.value)


def test_the_entry_count_is_refused_from_the_end_record(tmp_path, no_zipfile_parsing):
    path = write_many_entries(tmp_path / "many.zip", 5_000)
    with pytest.raises(UnsafeArchive, match="holds 5,000 members, over the limit of 1,000; it was refused before"):
        Reader(path, "key", max_members=1000)


def test_a_signed_archive_at_the_member_limit_opens_and_one_over_is_refused(sqlite_store):
    archive = sqlite_store.create("backup", "both")
    with Reader(archive, sqlite_store.key, max_members=None) as reader:
        count = len(reader.entries)
    with Reader(archive, sqlite_store.key, max_members=count) as reader:
        assert len(reader.entries) == count
    with pytest.raises(UnsafeArchive, match=f"holds {count:,} members, over the limit of {count - 1:,}"):
        Reader(archive, sqlite_store.key, max_members=count - 1)


def test_a_listing_reader_reads_the_manifest_only(sqlite_store):
    archive = sqlite_store.create("backup", "both")
    with Reader(archive, sqlite_store.key, check_members=False) as reader:
        assert set(reader.entries) == {"manifest.json", "manifest.sig"}
        assert reader.manifest["kind"] == "backup"


def test_the_manifest_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(manifest.SCHEMA)
    assert manifest.SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("kind, parts", [("backup", "both"), ("backup", "database"), ("backup", "files"),
                                         ("export", "database")])
def test_every_manifest_the_engine_writes_fits_the_schema(sqlite_store, kind, parts):
    archive = sqlite_store.create(kind, parts, label="Before the sale" if kind == "backup" else None)
    with Reader(archive, sqlite_store.key) as reader:
        assert reader.signed_manifest["format_version"] == manifest.FORMAT_VERSION == 2
        assert list(Draft202012Validator(manifest.SCHEMA).iter_errors(reader.signed_manifest)) == []


# --- table data ---------------------------------------------------------------------------------------------------

def reference_unescape(field):
    """The character-by-character decoder this module used to have: the meaning to keep."""
    text = field.decode("utf-8")
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(tablecodec._UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_unescaping_keeps_its_meaning():
    rng = random.Random(3)
    alphabet = ["\\", "\\", "t", "n", "r", "b", "f", "v", "x", "\x00", "é", "\t", "N"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        field = text.encode()
        assert tablecodec.unescape_text(field) == reference_unescape(field), repr(text)
    for value in ["plain", "tab\there", "line1\nline2\r\n\\N \\ end", "\\", "a\\", "\x00\\"]:
        assert tablecodec.unescape_text(tablecodec.escape_text(value)) == value


def brute_force(data, max_row, max_value):
    lines = data.split(b"\n")
    for line in lines:
        if len(line) > max_row:
            return "row"
        if max(map(len, line.split(b"\t"))) > max_value:
            return "value"
    return None


def test_the_row_scanner_finds_every_long_row_and_value_whatever_the_chunking():
    rng = random.Random(5)
    for _ in range(3000):
        data = bytes(rng.choice(b"ab\t\n") if rng.random() < 0.2 else 97 for _ in range(rng.randrange(0, 80)))
        max_row, max_value = rng.randrange(1, 30), rng.randrange(1, 30)
        expected = brute_force(data, max_row, max_value)
        scanner = tablecodec.RowScanner(max_row, max_value)
        found = None
        try:
            at = 0
            while at < len(data):
                step = rng.randrange(1, 40)
                scanner.feed(data[at:at + step])
                at += step
        except tablecodec.RowTooLarge as error:
            found = error.what
        assert (found is None) == (expected is None), (data, max_row, max_value)
        if found is None:
            assert scanner.rows == data.count(b"\n")
            assert scanner.unfinished == (data.rsplit(b"\n", 1)[-1] != b"")


class CountingBytes(bytes):
    """Counts what ``+`` copies: gluing each chunk onto a growing remainder copies a long row once per chunk."""
    copied = 0

    def __add__(self, other):
        CountingBytes.copied += len(self) + len(other)
        return CountingBytes(bytes(self) + bytes(other))

    def __radd__(self, other):
        CountingBytes.copied += len(self) + len(other)
        return CountingBytes(bytes(other) + bytes(self))


def test_splitting_table_data_into_lines_is_linear_in_a_long_row():
    row = b"x" * (4 * 1024 * 1024)
    chunks = [CountingBytes(row[i:i + 4096]) for i in range(0, len(row), 4096)] + [CountingBytes(b"\nnext\n")]
    CountingBytes.copied = 0
    lines = [line for batch in database.split_lines(iter(chunks), "t") for line in batch]
    assert lines == [row, b"next"]
    assert CountingBytes.copied <= 2 * len(row), f"{CountingBytes.copied / 1e6:.0f} MB copied for a 4 MB row"


def test_splitting_table_data_keeps_every_line_whatever_the_chunking():
    rng = random.Random(9)
    data = b"".join(b"r%d\t%s\n" % (i, b"v" * rng.randrange(0, 50)) for i in range(2000))
    at, chunks = 0, []
    while at < len(data):
        step = rng.randrange(1, 300)
        chunks.append(data[at:at + step])
        at += step
    assert [line for batch in database.split_lines(iter(chunks), "t") for line in batch] == data.split(b"\n")[:-1]
    with pytest.raises(Exception, match="ends in the middle of a row"):
        list(database.split_lines(iter([b"a\nb"]), "t"))
