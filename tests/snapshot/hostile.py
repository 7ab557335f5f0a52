"""A generator of hostile archives, made from a valid one.

Each case rewrites a real archive: it changes the members or the manifest, then signs the manifest
again with the right key (unless the case is about the signature), so the checks that sit behind
the signature are the ones exercised. Usable on its own:

    python -m tests.snapshot.hostile VALID.zip OUT_DIR KEY     # writes one archive per case
"""
import hashlib
import json
import stat
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import zstandard

from app.snapshot.container import MANIFEST, SIGNATURE, sign


@dataclass
class Member:
    name: str
    data: bytes
    mode: int = stat.S_IFREG | 0o600
    compress_type: int = zipfile.ZIP_STORED


def read(path):
    """The members (manifest and signature left out) and the manifest of an archive."""
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read(MANIFEST))
        members = [Member(i.filename, z.read(i), i.external_attr >> 16, i.compress_type)
                   for i in z.infolist() if i.filename not in (MANIFEST, SIGNATURE)]
    return members, manifest


def write(path, members, manifest, key, signature=None):
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


MUTATIONS = {f.__name__: f for f in [
    absolute_path, dot_dot, backslash, drive_letter, control_character, symlink, symlink_outside,
    hard_link_like_device, fifo, directory_entry, unlisted_member, member_outside_known_prefixes, duplicate_name,
    file_and_folder_same_name, member_larger_than_declared, checksum_mismatch, listed_but_missing, compressed_member,
    format_version_newer, schema_revision_newer, not_our_format, unknown_kind, unknown_table, platform_table,
    column_not_in_schema, table_missing, decompression_bomb_declared, decompression_bomb_hidden, row_count_lies,
    row_breaks_primary_key, row_breaks_foreign_key, row_wrong_type, row_with_too_many_fields, corrupt_table_stream,
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


RAW = {f.__name__: f for f in [truncated, truncated_tail, flipped_byte, not_a_zip, tampered_manifest, other_key,
                                nul_in_name]}


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
