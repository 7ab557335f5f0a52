"""The archive container: a ZIP64 file of STORED members, a signed manifest, safe member names.

Archives are written with ``zipfile``, but read by our own code, in an order that lets nothing
unsigned cost more than a few reads:

1. the end records (EOCD, and the ZIP64 locator and record) are read, and the entry count and the
   central directory's size refused when over the caps, before any directory record is looked at;
2. the manifest and its signature are found as the last two directory records (where the writer
   puts them), read through their local headers, and the HMAC checked;
3. the manifest is parsed and validated against the manifest schema;
4. only then is the whole central directory walked, one record at a time, with every name, type,
   method and size checked, nothing accepted that the signed manifest does not list, and every
   member's local header and data range checked: inside the file, before the central directory,
   no two ranges overlapping (overlapping entries turn a small archive into a huge restore).

Format 2 (written now) keeps step 4 flat in memory: the manifest refers to a member list
(``members.tsv``, one ``<sha256>\t<size>\t<name>`` line per member, in archive order), whose SHA-256
the signed manifest holds. The list is hashed, then walked in lockstep with the central directory:
the same names and sizes in the same order, names in ``name_key`` order within ``files/`` (so a
duplicate, or a file and a folder of the same name, are neighbours), local headers at increasing,
non-overlapping offsets (no sort). What was checked goes to a private temporary file that the
consumers stream (``Reader.iter_members``); only the few ``database/`` members stay in memory.
Format 1 (a ``members`` dict in the manifest) is read as before, in memory, bounded by max_members.
"""
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import ItemsView, Mapping
from datetime import datetime, timezone
from pathlib import Path

from app.snapshot import manifest as manifest_schema
from app.snapshot.errors import ArchiveInvalid, ArchiveNotFound, SignatureInvalid, UnsafeArchive

FORMAT = manifest_schema.FORMAT
FORMAT_VERSION = manifest_schema.FORMAT_VERSION
EXTENSION = ".zip"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MEMBER_LIST = manifest_schema.MEMBER_LIST
DATABASE_PREFIX = "database/"
FILES_PREFIX = "files/"
# Format 2: the database/ members are held in memory (a table's data is looked up by name); there are as many as
# tables, so a list naming more than this many is refused rather than held.
MAX_DATABASE_MEMBERS = 10_000
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
MAX_SIGNATURE_BYTES = 1024
KINDS = manifest_schema.KINDS
PARTS = manifest_schema.PARTS
DEFAULT_MAX_MEMBERS = 1_000_000
# Member names: whole name in characters (as before) and in UTF-8 bytes (so that a name that passes can
# always be created under the staging folder), and each path component (NAME_MAX of common filesystems).
MAX_NAME_CHARS = 1024
MAX_NAME_BYTES = 2048
MAX_COMPONENT_BYTES = 255
# What one central-directory record of ours can take: 46 fixed bytes, the name, and at most a 28-byte
# ZIP64 extra field (64 allowed); no comment. The cap on the directory's size derives from it.
CD_FIXED_BYTES = 46
MAX_EXTRA_BYTES = 64
MAX_CD_RECORD_BYTES = CD_FIXED_BYTES + MAX_NAME_BYTES + MAX_EXTRA_BYTES
READ_BLOCK = 1024 * 1024
LIST_BLOCK = 64 * 1024  # format 2's list and directory walk: small blocks, the same memory for any member count
# <store>-<kind>-<parts>-<UTC timestamp>-<random>.zip: sorts by time, never collides.
NAME_PATTERN = re.compile(
    r"^(?P<store>[a-z0-9][a-z0-9_-]{0,62})-(?P<kind>export|backup)-(?P<parts>database|files|both)-"
    r"(?P<stamp>\d{8}T\d{6}\d{6}Z)-(?P<nonce>[0-9a-f]{6})\.zip$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA_HEX = re.compile(rb"[0-9a-f]{64}")
_SIZE_DIGITS = re.compile(rb"0|[1-9][0-9]{0,19}")
# One line of a member list: SHA-256, tab, size, tab, name, newline.
MAX_LIST_LINE = 64 + 1 + 20 + 1 + MAX_NAME_BYTES + 1

_EOCD = struct.Struct("<4s4H2LH")            # end of central directory, 22 bytes
_EOCD64_LOCATOR = struct.Struct("<4sLQL")    # 20 bytes
_EOCD64 = struct.Struct("<4sQ2H2L4Q")        # 56 bytes
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")   # 46 bytes
_LOCAL = struct.Struct("<4s2B4HL2L2H")       # 30 bytes
_U32 = 0xFFFFFFFF


def archive_name(store, kind, parts, now=None):
    now = now or datetime.now(timezone.utc)
    slug = re.sub(r"[^a-z0-9_-]+", "-", store.lower()).strip("-")[:63] or "store"
    return f"{slug}-{kind}-{parts}-{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}{EXTENSION}"


def archive_path(backups_dir, name):
    """The path of a kept archive, for a name that is exactly one of ours and nothing else."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ArchiveNotFound(f"{name!r} is not the name of an archive; pick one from the list of kept archives.")
    path = Path(backups_dir) / name
    if not path.is_file() or path.is_symlink():
        raise ArchiveNotFound(f"There is no archive named {name} in the backups folder.")
    return path


def sign(manifest_bytes, key):
    return hmac.new(_key_bytes(key), manifest_bytes, hashlib.sha256).hexdigest()


def _key_bytes(key):
    return key.encode() if isinstance(key, str) else key


def name_key(name):
    """The order of member names (format 2): bytewise UTF-8, with "/" below every other byte, i.e. path component
    by component. Then the names under a folder come right after the folder's own name, so a file and a folder
    of the same name are neighbours; names never hold NUL (control characters are refused)."""
    return name.encode("utf-8").replace(b"/", b"\x00")


def check_member_name(name):
    """Refuse any name that could leave the staging folder, mean something else on another system, or
    fail only when the file is written (a path component over 255 bytes, a name past PATH_MAX)."""
    problem = _name_problem(name)
    if problem:
        shown = name if len(name) <= 120 else name[:100] + "…"
        raise UnsafeArchive(f"The archive contains a member name with {problem} ({shown!r}); it was refused "
                            "and nothing was changed.")
    return name


def _name_problem(name):
    if not name or len(name) > MAX_NAME_CHARS:
        return "an empty or overlong name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "bytes that are not UTF-8"
    if len(encoded) > MAX_NAME_BYTES:
        return "an empty or overlong name"
    if _CONTROL.search(name):
        return "a control character"
    if "\\" in name:
        return "a backslash"
    if name.startswith("/"):
        return "an absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "a drive letter"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "an empty, '.' or '..' path segment"
    if any(len(p.encode("utf-8")) > MAX_COMPONENT_BYTES for p in parts):
        return f"a path component longer than {MAX_COMPONENT_BYTES} bytes"
    return None


class Entry:
    """One central-directory record (attribute names as zipfile.ZipInfo's, for the code that reads them)."""

    __slots__ = ("filename", "raw_name", "flag_bits", "compress_type", "CRC", "compress_size", "file_size",
                 "external_attr", "header_offset", "data_offset")

    def is_dir(self):
        return self.filename.endswith("/")


def _check_entry(info):
    mode = info.external_attr >> 16
    if info.is_dir() or (mode and not stat.S_ISREG(mode)):
        raise UnsafeArchive(f"The archive member {info.filename!r} is not a regular file (a link, folder or "
                            "device); it was refused and nothing was changed.")
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnsafeArchive(f"The archive member {info.filename!r} is compressed in a way this tool never "
                            "writes; it was refused and nothing was changed.")
    if info.flag_bits & 0x41:  # traditional or strong encryption
        raise UnsafeArchive(f"The archive member {info.filename!r} is encrypted; it was refused and nothing was "
                            "changed.")
    if info.compress_size != info.file_size:
        raise UnsafeArchive(f"The archive member {info.filename!r} declares two different sizes; it was refused "
                            "and nothing was changed.")


class Reader:
    """An archive opened for reading: the signature is checked before any other member is trusted.

    ``max_members`` caps the entry count (and with it the central directory's size) before anything
    else is read; None for no cap (reading back an archive just written). ``check_members=False``
    stops after the signed, validated manifest (for listings): ``entries`` then holds only the
    manifest and the signature.
    """

    def __init__(self, path, signing_key, *, max_members=DEFAULT_MAX_MEMBERS, check_members=True):
        self.path = Path(path)
        self.name = self.path.name
        self.max_members = max_members
        self._checked, self._database, self._bookkeeping, self._tallies = None, {}, {}, {}
        self._on_close = []
        self.fd = None
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise ArchiveNotFound(f"The file {self.name} does not exist.") from None
        except OSError as error:
            raise ArchiveInvalid(f"{self.name} cannot be opened ({error.strerror or 'unreadable'}); nothing was "
                                 "changed.") from None
        try:
            self.size = os.fstat(self.fd).st_size
            count, cd_offset, cd_size = self._end_records()
            manifest_entry, signature_entry = self._last_two_records(cd_offset, cd_size)
            manifest_bytes, signature = self._verify_signature(manifest_entry, signature_entry, signing_key)
            try:
                self.manifest = json.loads(manifest_bytes)
            except (ValueError, RecursionError):
                raise ArchiveInvalid(f"{self.name} has an unreadable manifest; nothing was changed.") from None
            manifest_schema.check(self.name, self.manifest, signature)
            self.signed_manifest = self.manifest  # as signed; ``manifest`` may carry a streamed ``members`` view
            self.version = self.manifest["format_version"]
            if not check_members:
                self.entries = {MANIFEST: manifest_entry, SIGNATURE: signature_entry}
            elif self.version == 1:
                self.entries = self._walk(count, cd_offset, cd_size)
                self._check_ranges(cd_offset)
            else:
                self._walk_listed(count, cd_offset, cd_size)
                self.entries = _Entries(self)
                self.manifest = {**self.signed_manifest, "members": Members(self)}
        except BaseException:
            self.close()
            raise

    # --- raw reads ---------------------------------------------------------------------------------------------

    def _read(self, offset, size):
        if offset < 0 or size < 0 or offset + size > self.size:
            raise self._unreadable("a record points outside the file")
        data = os.pread(self.fd, size, offset)
        if len(data) != size:
            raise self._unreadable("the file ended early")
        return data

    def _unreadable(self, reason):
        return ArchiveInvalid(f"{self.name} is not a readable backup archive ({reason}); it may be truncated or "
                              "corrupted. Nothing was changed.")

    # --- 1. the end records: count and directory size, before any record is read ----------------------------------

    def _end_records(self):
        if self.size < _EOCD.size:
            raise self._unreadable("it is too short to be a backup: an empty or cut-off file")
        tail_size = min(self.size, _EOCD.size + 0xFFFF)
        tail = self._read(self.size - tail_size, tail_size)
        at = tail.rfind(b"PK\x05\x06", 0, len(tail) - _EOCD.size + 4)
        # The record ends the file, after its comment (ours have none); a signature inside a comment is skipped.
        while at >= 0 and at + _EOCD.size + struct.unpack_from("<H", tail, at + 20)[0] != len(tail):
            at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            raise self._unreadable("it is not a ZIP file, or it was cut off before its end")
        eocd_offset = self.size - tail_size + at
        _, disk, cd_disk, disk_entries, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        directory_end = eocd_offset
        if eocd_offset >= _EOCD64_LOCATOR.size:
            locator = self._read(eocd_offset - _EOCD64_LOCATOR.size, _EOCD64_LOCATOR.size)
            if locator[:4] == b"PK\x06\x07":
                _, locator_disk, record_offset, disks = _EOCD64_LOCATOR.unpack(locator)
                record_end = eocd_offset - _EOCD64_LOCATOR.size
                if locator_disk != 0 or disks > 1 or record_offset + _EOCD64.size > record_end:
                    raise self._unreadable("a damaged ZIP64 end record")
                record = self._read(record_offset, _EOCD64.size)
                (signature, record_size, _, _, disk, cd_disk, disk_entries, count, cd_size,
                 cd_offset) = _EOCD64.unpack(record)
                if signature != b"PK\x06\x06" or record_offset + 12 + record_size != record_end:
                    raise self._unreadable("a damaged ZIP64 end record")
                directory_end = record_offset
        if disk != 0 or cd_disk != 0 or disk_entries != count:
            raise self._unreadable("an archive split over several disks")
        if self.max_members is not None and count > self.max_members:
            raise UnsafeArchive(f"{self.name} holds {count:,} members, over the limit of {self.max_members:,}; it was "
                                "refused before reading them, and nothing was changed.")
        limit = self.max_members * MAX_CD_RECORD_BYTES if self.max_members is not None else None
        if limit is not None and cd_size > limit:
            raise UnsafeArchive(f"{self.name} has a central directory of {cd_size / 1e6:.0f} MB, over the limit of "
                                f"{limit / 1e6:.0f} MB for {self.max_members:,} members; it was refused and nothing "
                                "was changed.")
        if not count * CD_FIXED_BYTES <= cd_size <= count * MAX_CD_RECORD_BYTES:
            raise self._unreadable(f"its central directory's size does not fit its {count} entries")
        if cd_offset + cd_size != directory_end:
            raise self._unreadable("the central directory is not where the end record says")
        return count, cd_offset, cd_size

    # --- 2. the manifest and its signature: the last two records ---------------------------------------------------

    def _last_two_records(self, cd_offset, cd_size):
        window = min(cd_size, 3 * MAX_CD_RECORD_BYTES)  # three: a format-2 member list is the record before
        tail = self._read(cd_offset + cd_size - window, window)
        last = self._record_ending_at(tail, len(tail), SIGNATURE)
        before = self._record_ending_at(tail, last, MANIFEST) if last is not None else None
        if before is None:
            raise ArchiveInvalid(f"{self.name} has no signed manifest where this application writes one: it is not a "
                                 "backup made by this application, or it is incomplete. Nothing was changed.")
        entries = []
        for at in (before, last):
            entry, _ = self._parse_record(tail, at)
            _check_entry(entry)
            entry.data_offset = self._local_data_offset(entry, cd_offset)
            entries.append(entry)
        self._tail = (tail, before)
        return entries

    def _record_ending_at(self, tail, end, name):
        """Where the directory record for ``name`` that ends exactly at ``end`` starts, if there is one."""
        wanted = name.encode()
        at = tail.rfind(b"PK\x01\x02", 0, end)
        while at >= 0:
            if at + CD_FIXED_BYTES <= end:
                name_length, extra_length, comment_length = struct.unpack_from("<3H", tail, at + 28)
                if at + CD_FIXED_BYTES + name_length + extra_length + comment_length == end \
                        and tail[at + CD_FIXED_BYTES:at + CD_FIXED_BYTES + name_length] == wanted:
                    return at
            at = tail.rfind(b"PK\x01\x02", 0, at)
        return None

    def _verify_signature(self, manifest_entry, signature_entry, signing_key):
        if manifest_entry.file_size > MAX_MANIFEST_BYTES or signature_entry.file_size > MAX_SIGNATURE_BYTES:
            raise UnsafeArchive(f"{self.name} has an oversized manifest or signature; it was refused and nothing "
                                "was changed.")
        signature = self._read(signature_entry.data_offset, signature_entry.file_size).strip()
        key = _key_bytes(signing_key)
        if manifest_entry.file_size > READ_BLOCK * 16:
            # Unsigned bytes are not held in memory: hash them in blocks first, read them only if they match.
            mac = hmac.new(key, digestmod=hashlib.sha256)
            for offset in range(0, manifest_entry.file_size, READ_BLOCK):
                mac.update(self._read(manifest_entry.data_offset + offset,
                                      min(READ_BLOCK, manifest_entry.file_size - offset)))
            self._compare(signature, mac.hexdigest())
        data = self._read(manifest_entry.data_offset, manifest_entry.file_size)
        self._compare(signature, sign(data, key))
        return data, signature

    def _compare(self, signature, expected):
        # Bytes on both sides: any byte the file holds compares (and fails) without an exception.
        if not hmac.compare_digest(signature, expected.encode()):
            raise SignatureInvalid(f"{self.name} fails its signature check: it was modified after it was made, or "
                                   "made with another signing key. Nothing was changed.")

    # --- 4. after the signature: every record, every range ---------------------------------------------------------

    def _records(self, count, cd_offset, cd_size, block=READ_BLOCK):
        """The central directory's records, one at a time (read in blocks): exactly ``count`` of them."""
        seen = 0
        buffer, buffer_offset = b"", cd_offset   # buffer holds the directory from buffer_offset on
        position, end = cd_offset, cd_offset + cd_size
        while position < end:
            if seen == count:
                raise self._unreadable("its central directory holds more records than its end record counts")
            need = position - buffer_offset + MAX_CD_RECORD_BYTES
            if need > len(buffer) and buffer_offset + len(buffer) < end:
                buffer = buffer[position - buffer_offset:]
                buffer_offset = position
                more = min(block, end - buffer_offset - len(buffer))
                buffer += self._read(buffer_offset + len(buffer), more)
            entry, length = self._parse_record(buffer, position - buffer_offset)
            if position + length > end:
                raise self._unreadable("a central directory record runs past its end")
            position += length
            seen += 1
            yield entry
        if seen != count:
            raise self._unreadable("its central directory holds fewer records than its end record counts")

    def _walk(self, count, cd_offset, cd_size):
        """Format 1: every record into a dict, checked against the manifest's ``members`` dict."""
        listed = self.manifest["members"]
        entries = {}
        for entry in self._records(count, cd_offset, cd_size):
            name = check_member_name(entry.filename)
            if name in entries:
                raise UnsafeArchive(f"The archive contains {name!r} twice; it was refused and nothing was changed.")
            if name not in listed and name not in (MANIFEST, SIGNATURE):
                raise UnsafeArchive(f"{self.name} contains {name!r}, which its manifest does not list; refused, "
                                    "nothing was changed.")
            _check_entry(entry)
            entries[name] = entry
        if list(entries)[-2:] != [MANIFEST, SIGNATURE]:
            raise ArchiveInvalid(f"{self.name} has its manifest in an unexpected place; nothing was changed.")
        return entries

    # --- 4, format 2: the member list and the directory in lockstep, nothing held per member -------------------------

    def _refused(self, what):
        return UnsafeArchive(f"{self.name} {what}; it was refused and nothing was changed.")

    def _walk_listed(self, count, cd_offset, cd_size):
        reference = self.manifest["members"]
        listed = count - 3  # the member list, the manifest and the signature end the directory
        if reference["count"] != listed:
            raise self._refused(f"has a member list of {reference['count']:,} members, but its directory holds "
                                f"{max(listed, 0):,}")
        list_entry = self._list_entry(cd_offset)
        if list_entry.file_size != reference["bytes"]:
            raise self._refused(f"has a member list of {list_entry.file_size:,} bytes where its manifest says "
                                f"{reference['bytes']:,}")
        sha = hashlib.sha256()
        for offset in range(0, list_entry.file_size, LIST_BLOCK):  # hashed first: nothing unsigned is parsed
            sha.update(self._read(list_entry.data_offset + offset, min(LIST_BLOCK, list_entry.file_size - offset)))
        if sha.hexdigest() != reference["sha256"]:
            raise self._refused("has a member list that does not match the SHA-256 its signed manifest gives "
                                "(it was altered or damaged)")
        sha = hashlib.sha256()  # hashed again as it is parsed: a file changed in between is caught at the end
        lines = self._list_lines(list_entry, sha)
        self._checked = checked = _Checked(self.path.parent)
        tallies = {DATABASE_PREFIX: [0, 0], FILES_PREFIX: [0, 0]}
        previous, previous_end, previous_file, previous_key = None, 0, None, None
        for index, entry in enumerate(self._records(count, cd_offset, cd_size, LIST_BLOCK)):
            name = check_member_name(entry.filename)
            _check_entry(entry)
            if index < listed:
                line = next(lines, None)
                if line is None:
                    raise self._refused(f"lists fewer members than its directory holds (nothing listed for "
                                        f"{_shown(name)})")
                digest, size, listed_name = line
                if listed_name != name:
                    raise self._refused(f"has {_shown(name)} as member {index + 1:,} of its directory but "
                                        f"{_shown(listed_name)} in its member list (the two disagree)")
                if entry.file_size != size:
                    raise UnsafeArchive(f"The archive member {name!r} is {entry.file_size} bytes but the manifest "
                                        f"says {size}; refused, nothing was changed.")
                if name.startswith(DATABASE_PREFIX):
                    if name in self._database:
                        raise UnsafeArchive(f"The archive contains {name!r} twice; it was refused and nothing was "
                                            "changed.")
                    if len(self._database) >= MAX_DATABASE_MEMBERS:
                        raise self._refused(f"holds more than {MAX_DATABASE_MEMBERS:,} database members")
                    self._database[name] = ({"size": size, "sha256": digest.decode()}, entry)
                elif name.startswith(FILES_PREFIX):
                    key = name_key(name)
                    if previous_key is not None and key <= previous_key:
                        if key == previous_key:
                            raise UnsafeArchive(f"The archive contains {name!r} twice; it was refused and nothing "
                                                "was changed.")
                        raise self._refused(f"lists its files out of order ({_shown(previous_file)} before "
                                            f"{_shown(name)})")
                    if previous_file is not None and name.startswith(previous_file + "/"):
                        raise UnsafeArchive(f"The archive has both a file and a folder named "
                                            f"{previous_file[len(FILES_PREFIX):]!r}; it was refused and nothing was "
                                            "changed.")
                    previous_file, previous_key = name, key
                else:
                    raise UnsafeArchive(f"{self.name} lists a member {name!r} this tool never writes; refused, "
                                        "nothing was changed.")
            elif name != (MEMBER_LIST, MANIFEST, SIGNATURE)[index - listed]:
                raise ArchiveInvalid(f"{self.name} has its member list or manifest in an unexpected place; nothing "
                                     "was changed.")
            else:
                self._bookkeeping[name] = entry
            entry.data_offset = self._local_data_offset(entry, cd_offset)
            if entry.header_offset < previous_end:  # increasing and apart: no two members share bytes
                raise UnsafeArchive(f"The archive members {previous.filename[:100]!r} and {entry.filename[:100]!r} "
                                    "overlap or are out of order (entries sharing data can turn a small archive "
                                    "into a huge restore); it was refused and nothing was changed.")
            previous, previous_end = entry, entry.data_offset + entry.compress_size
            if index < listed:
                checked.add(entry, bytes.fromhex(digest.decode()), name)
                tally = tallies[DATABASE_PREFIX if name.startswith(DATABASE_PREFIX) else FILES_PREFIX]
                tally[0] += 1
                tally[1] += size
        if next(lines, None) is not None:
            raise self._refused("lists more members than its directory holds")
        if sha.hexdigest() != reference["sha256"]:
            raise self._refused("changed while it was read (its member list no longer matches its manifest)")
        self._tallies = {prefix: tuple(values) for prefix, values in tallies.items()}
        self.listed = listed

    def _list_entry(self, cd_offset):
        tail, before = self._tail
        at = self._record_ending_at(tail, before, MEMBER_LIST) if before > 0 else None
        if at is None:
            raise ArchiveInvalid(f"{self.name} has no member list where its manifest says; it is incomplete. Nothing "
                                 "was changed.")
        entry, _ = self._parse_record(tail, at)
        _check_entry(entry)
        entry.data_offset = self._local_data_offset(entry, cd_offset)
        return entry

    def _list_lines(self, entry, sha):
        """(SHA-256 as hex bytes, size, name) for each line of the member list, read in blocks."""
        pending, offset, size, number = b"", 0, entry.file_size, 0
        while offset < size:
            block = self._read(entry.data_offset + offset, min(LIST_BLOCK, size - offset))
            offset += len(block)
            sha.update(block)
            data, at = pending + block, 0
            while (end := data.find(b"\n", at)) >= 0:
                number += 1
                yield self._list_line(data[at:end], number)
                at = end + 1
            pending = data[at:]
            if len(pending) > MAX_LIST_LINE:
                raise self._refused(f"has a damaged member list (line {number + 1:,} is overlong)")
        if pending:
            raise self._refused(f"has a damaged member list (line {number + 1:,} is cut short)")

    def _list_line(self, line, number):
        fields = line.split(b"\t")
        if len(fields) != 3 or not _SHA_HEX.fullmatch(fields[0]) or not _SIZE_DIGITS.fullmatch(fields[1]):
            raise self._refused(f"has a damaged member list (line {number:,} is not '<sha256>, tab, <size>, tab, "
                                "<name>'; a name cannot hold a tab or a newline)")
        try:
            name = fields[2].decode("utf-8")
        except UnicodeDecodeError:
            raise self._refused(f"has a member list naming a member with bytes that are not UTF-8 (line "
                                f"{number:,})") from None
        return fields[0], int(fields[1]), name

    # --- format 2: the checked members, streamed ---------------------------------------------------------------------

    def iter_members(self, prefix=""):
        """(name, {"size", "sha256"}, directory entry) of each listed member whose name starts with ``prefix``,
        in archive order; after a full check (not for a listing reader)."""
        if self._checked is None:
            for name, meta in self.manifest["members"].items():
                if name.startswith(prefix):
                    yield name, meta, self.entries[name]
            return
        for entry, digest in self._checked:
            if entry.filename.startswith(prefix):
                yield entry.filename, {"size": entry.file_size, "sha256": digest.hex()}, entry

    def tally(self, prefix):
        """(count, bytes) of the listed members under ``prefix`` (``database/`` or ``files/``)."""
        if self._checked is None:
            sizes = [meta["size"] for name, meta in self.manifest["members"].items() if name.startswith(prefix)]
            return len(sizes), sum(sizes)
        return self._tallies[prefix]

    def _parse_record(self, buffer, at):
        if len(buffer) - at < CD_FIXED_BYTES:
            raise self._unreadable("a central directory record is cut short")
        (signature, _, _, _, _, flags, method, _, _, crc, compressed, size, name_length, extra_length,
         comment_length, disk, _, external, header_offset) = _CENTRAL.unpack_from(buffer, at)
        if signature != b"PK\x01\x02":
            raise self._unreadable("a damaged central directory record")
        start = at + CD_FIXED_BYTES
        if name_length > MAX_NAME_BYTES or extra_length > MAX_EXTRA_BYTES or comment_length or disk:
            raise UnsafeArchive(f"{self.name} has a member with an overlong name or fields this tool never writes; "
                                "it was refused and nothing was changed.")
        if len(buffer) < start + name_length + extra_length:
            raise self._unreadable("a central directory record is cut short")
        raw_name = bytes(buffer[start:start + name_length])
        extra = buffer[start + name_length:start + name_length + extra_length]
        try:
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise UnsafeArchive(f"The archive contains a member name with bytes that are not UTF-8 "
                                f"({raw_name[:100]!r}); it was refused and nothing was changed.") from None
        if _U32 in (size, compressed, header_offset):
            size, compressed, header_offset = self._zip64_fields(extra, size, compressed, header_offset, name)
        entry = Entry()
        entry.filename, entry.raw_name, entry.flag_bits, entry.compress_type = name, raw_name, flags, method
        entry.CRC, entry.compress_size, entry.file_size = crc, compressed, size
        entry.external_attr, entry.header_offset, entry.data_offset = external, header_offset, None
        return entry, CD_FIXED_BYTES + name_length + extra_length

    def _zip64_fields(self, extra, size, compressed, header_offset, name):
        at = 0
        while at + 4 <= len(extra):
            tag, length = struct.unpack_from("<2H", extra, at)
            if tag == 1:
                values = extra[at + 4:at + 4 + length]
                wanted = [f for f, v in (("size", size), ("compressed", compressed), ("offset", header_offset))
                          if v == _U32]
                if len(values) < 8 * len(wanted):
                    break
                found = dict(zip(wanted, struct.unpack_from(f"<{len(wanted)}Q", values)))
                return found.get("size", size), found.get("compressed", compressed), found.get("offset", header_offset)
            at += 4 + length
        raise self._unreadable(f"the ZIP64 sizes of {name[:100]!r} are missing")

    def _local_data_offset(self, entry, cd_offset):
        """Where the member's data starts, after checking its local header; it must end before the directory."""
        size = _LOCAL.size + len(entry.raw_name)
        header = self._read(entry.header_offset, size) if entry.header_offset + size <= cd_offset else b""
        if header[:4] != b"PK\x03\x04":
            raise self._unreadable(f"the local header of {entry.filename[:100]!r} is missing")
        name_length, extra_length = struct.unpack_from("<2H", header, 26)
        if name_length != len(entry.raw_name) or header[_LOCAL.size:] != entry.raw_name:
            raise self._unreadable(f"the local header of {entry.filename[:100]!r} names another member")
        start = entry.header_offset + size + extra_length
        if start + entry.compress_size > cd_offset:
            raise UnsafeArchive(f"The archive member {entry.filename[:100]!r} runs past the end of the member data "
                                "(its sizes do not add up within the file); it was refused and nothing was changed.")
        return start

    def _check_ranges(self, cd_offset):
        """Each member's local header and data lie inside the member area, and no two of them overlap."""
        previous, previous_end = None, 0
        for entry in sorted(self.entries.values(), key=lambda e: e.header_offset):
            if entry.data_offset is None:
                entry.data_offset = self._local_data_offset(entry, cd_offset)
            if entry.header_offset < previous_end:
                raise UnsafeArchive(f"The archive members {previous.filename[:100]!r} and {entry.filename[:100]!r} "
                                    "overlap (entries sharing data can turn a small archive into a huge restore); "
                                    "it was refused and nothing was changed.")
            previous, previous_end = entry, entry.data_offset + entry.compress_size

    # --- members ---------------------------------------------------------------------------------------------------

    def open(self, name, expected_size, entry=None, check_crc=True):
        """A member's data, refused if its declared size disagrees with the manifest's. ``entry``: its directory
        entry, when the caller has it from ``iter_members`` (a format-2 name lookup walks the checked list).
        ``check_crc=False``: the caller checks the member's SHA-256 (the signed manifest's), which says more."""
        info = entry if entry is not None else self.entries[name]
        if info.file_size != expected_size:
            raise UnsafeArchive(f"The archive member {name!r} is {info.file_size} bytes but the manifest says "
                                f"{expected_size}; it was refused and nothing was changed.")
        return _MemberReader(self, info, check_crc)

    def call_on_close(self, function):
        """Run ``function()`` when this reader closes (what a reader's user made beside the archive, removed)."""
        self._on_close.append(function)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if getattr(self, "_checked", None) is not None:
            self._checked.close()
        while getattr(self, "_on_close", None):
            self._on_close.pop()()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _shown(name):
    return repr(name if len(name) <= 120 else name[:100] + "…")


class _RecordBlock:
    """The complete records in ``data`` (fixed fields by ``layout``, the last one a name's length, then the name),
    as the fixed fields with the name's bytes in place of its length; ``rest`` is what is left of an incomplete
    record at the end (to be completed by the next block)."""

    def __init__(self, data, layout):
        self.data, self.layout, self.rest = data, layout, data

    def __iter__(self):
        data, at, unpack, fixed = self.data, 0, self.layout.unpack_from, self.layout.size
        while at + fixed <= len(data):
            *fields, length = unpack(data, at)
            if at + fixed + length > len(data):
                break
            yield (*fields, data[at + fixed:at + fixed + length])
            at += fixed + length
        self.rest = data[at:]


_CHECKED = struct.Struct("<QQQL32sH")  # header offset, data offset, size, CRC, SHA-256, name length; then the name


class _Checked:
    """The members a format-2 reader checked, in archive order, in an anonymous temporary file beside the archive
    (the system's temporary folder, often memory, only when that folder is not writable): ~100 bytes a member on
    disk, a block in memory. Read back by offset, so two walks of it (a restore's check and its staging thread)
    never disturb each other."""

    def __init__(self, folder=None):
        self.folder = folder
        self.file, self.buffer, self.size = None, bytearray(), 0

    def add(self, entry, digest, name):
        raw = name.encode("utf-8")
        self.buffer += _CHECKED.pack(entry.header_offset, entry.data_offset, entry.file_size, entry.CRC, digest,
                                     len(raw))
        self.buffer += raw
        if len(self.buffer) >= LIST_BLOCK:
            self._spill()

    def _spill(self):
        if self.file is None:
            try:
                self.file = tempfile.TemporaryFile(dir=self.folder)
            except OSError:
                self.file = tempfile.TemporaryFile()
        os.pwrite(self.file.fileno(), self.buffer, self.size)
        self.size += len(self.buffer)
        self.buffer = bytearray()

    def __iter__(self):
        """(Entry, SHA-256 digest) in the order added."""
        pending, offset = b"", 0
        while offset < self.size:
            block = os.pread(self.file.fileno(), min(LIST_BLOCK, self.size - offset), offset)
            if not block:
                raise ArchiveInvalid("The checked member list of the archive could not be read back; nothing was "
                                     "changed.")
            offset += len(block)
            pending = yield from self._parse(pending + block)
        rest = yield from self._parse(pending + bytes(self.buffer))
        if rest:
            raise ArchiveInvalid("The checked member list of the archive is damaged; nothing was changed.")

    @staticmethod
    def _parse(data):
        parsed = _RecordBlock(data, _CHECKED)
        for header_offset, data_offset, size, crc, digest, name in parsed:
            entry = Entry()
            entry.filename = name.decode("utf-8")
            entry.raw_name, entry.flag_bits, entry.compress_type, entry.external_attr = None, 0, zipfile.ZIP_STORED, 0
            entry.CRC, entry.compress_size, entry.file_size = crc, size, size
            entry.header_offset, entry.data_offset = header_offset, data_offset
            yield entry, digest
        return parsed.rest

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


class Members(Mapping):
    """A format-2 archive's ``manifest["members"]`` as format 1 had it (name -> {"size", "sha256"}), without
    holding it: iterating streams the checked list; a ``database/`` name is looked up in memory, any other name
    by walking the list (use ``iter_entries`` to go through them). Read-only."""

    def __init__(self, reader):
        self.reader = reader

    def __iter__(self):
        return (name for name, _, _ in self.reader.iter_members())

    def __len__(self):
        return self.reader.listed

    def __getitem__(self, name):
        found = self.reader._database.get(name)
        if found is not None:
            return dict(found[0])
        if isinstance(name, str) and not name.startswith(DATABASE_PREFIX):
            for listed, meta, _ in self.reader.iter_members(name):
                if listed == name:
                    return meta
        raise KeyError(name)

    def __contains__(self, name):
        try:
            self[name]
        except KeyError:
            return False
        return True

    def items(self):
        return _Items(self)

    def values(self):
        return (meta for _, meta, _ in self.reader.iter_members())

    def iter_entries(self, prefix=""):
        return self.reader.iter_members(prefix)

    def tally(self, prefix):
        return self.reader.tally(prefix)

    def database(self):
        """{name: meta} of the database members (few: one per table)."""
        return {name: dict(meta) for name, (meta, _) in self.reader._database.items()}


class _Items(ItemsView):
    def __iter__(self):
        return ((name, meta) for name, meta, _ in self._mapping.reader.iter_members())


class _Entries(Mapping):
    """A format-2 reader's ``entries``: name -> Entry, the same way (database members and the last three records in
    memory, files by walking the checked list)."""

    def __init__(self, reader):
        self.reader = reader

    def __iter__(self):
        yield from (name for name, _, _ in self.reader.iter_members())
        yield from self.reader._bookkeeping

    def __len__(self):
        return self.reader.listed + len(self.reader._bookkeeping)

    def __getitem__(self, name):
        if name in self.reader._database:
            return self.reader._database[name][1]
        if name in self.reader._bookkeeping:
            return self.reader._bookkeeping[name]
        if isinstance(name, str):
            for listed, _, entry in self.reader.iter_members(name):
                if listed == name:
                    return entry
        raise KeyError(name)


# What reading a damaged member can raise.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


class _MemberReader:
    """A STORED member's bytes, read by offset; at its end the CRC must match, or the archive is damaged."""

    def __init__(self, reader, info, check_crc=True):
        self.reader, self.info, self.check_crc = reader, info, check_crc
        self.position, self.end = info.data_offset, info.data_offset + info.file_size
        self.crc = 0

    def read(self, size=-1):
        remaining = self.end - self.position
        size = remaining if size is None or size < 0 else min(size, remaining)
        if size <= 0:
            return b""
        try:
            data = os.pread(self.reader.fd, size, self.position)
        except OSError as error:
            raise self._damaged(error.strerror or "unreadable") from None
        if len(data) != size:
            raise self._damaged("the file ended early")
        self.position += size
        if self.check_crc:
            self.crc = zlib.crc32(data, self.crc)
            if self.position == self.end and self.crc != self.info.CRC:
                raise self._damaged("a CRC mismatch")
        return data

    def _damaged(self, reason):
        return ArchiveInvalid(f"{self.reader.name} is damaged at {self.info.filename!r} ({reason}); it may be "
                              "truncated or corrupted. Nothing was changed.")

    def readable(self):
        return True

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- writing --------------------------------------------------------------------------------------------------------
#
# Archives are written by the code below, not by zipfile: each member's size, CRC-32 and SHA-256 are computed while
# its bytes go out, the per-member records are spooled to an anonymous temporary file (memory does not grow with the
# member count), a part can be produced into a segment file beside the archive while another part streams into the
# archive, and the finished archive is checked by reading back its end records, central directory and local
# headers (never the member data again). The records are the ones zipfile writes with ``force_zip64=True``.

ZIP64_LIMIT = (1 << 31) - 1       # as zipfile: past this, sizes and offsets go into the ZIP64 extra field
ZIP_VERSION = 45                  # ZIP64
MADE_ON_UNIX = 3
FILE_ATTRIBUTES = (stat.S_IFREG | 0o600) << 16
WRITE_BLOCK = 1024 * 1024         # file data is read and written in blocks of this size
RECORD_BLOCK = 256 * 1024         # records, manifest and directory: small blocks, so they cost no memory to speak of
_ZIP64_LOCAL = struct.Struct("<2H2Q")        # tag 1, 16 bytes: size, compressed size
_RECORD = struct.Struct("<QQL32sHH")          # a spooled member: offset, size, CRC, SHA-256, flags, name length


class Stopped(Exception):
    """The part being written was asked to stop (the other part failed, or the run was cancelled)."""


def _dos_stamp(now=None):
    t = now or datetime.now(timezone.utc)
    return (t.hour << 11) | (t.minute << 5) | (t.second // 2), ((t.year - 1980) << 9) | (t.month << 5) | t.day


def _encode_name(name):
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), 0x800   # the UTF-8 flag, as zipfile sets it


def _local_header(raw_name, flags, crc, size, stamp):
    return (_LOCAL.pack(b"PK\x03\x04", ZIP_VERSION, 0, flags, 0, stamp[0], stamp[1], crc, _U32, _U32,
                        len(raw_name), _ZIP64_LOCAL.size) + raw_name + _ZIP64_LOCAL.pack(1, 16, size, size))


def _central_record(offset, size, crc, flags, raw_name, stamp):
    extra = []
    if size > ZIP64_LIMIT:
        extra += [size, size]
        size_field = _U32
    else:
        size_field = size
    if offset > ZIP64_LIMIT:
        extra.append(offset)
        offset_field = _U32
    else:
        offset_field = offset
    extra_bytes = struct.pack(f"<2H{len(extra)}Q", 1, 8 * len(extra), *extra) if extra else b""
    return (_CENTRAL.pack(b"PK\x01\x02", ZIP_VERSION, MADE_ON_UNIX, ZIP_VERSION, 0, flags, 0, stamp[0], stamp[1],
                          crc, size_field, size_field, len(raw_name), len(extra_bytes), 0, 0, 0, FILE_ATTRIBUTES,
                          offset_field) + raw_name + extra_bytes)


class _Records:
    """Member records in write order: in memory up to RECORD_BLOCK bytes, then spilled to an anonymous temporary
    file in the archive's folder, so a million members cost no more memory than a thousand."""

    def __init__(self, folder):
        self.folder, self.buffer, self.spill, self.count = folder, bytearray(), None, 0

    def add(self, offset, size, crc, sha, flags, raw_name):
        self.buffer += _RECORD.pack(offset, size, crc, sha, flags, len(raw_name))
        self.buffer += raw_name
        self.count += 1
        if len(self.buffer) >= RECORD_BLOCK:
            if self.spill is None:
                self.spill = tempfile.TemporaryFile(dir=self.folder)
            self.spill.seek(0, os.SEEK_END)
            self.spill.write(self.buffer)
            self.buffer.clear()

    def __iter__(self):
        """(offset, size, crc, sha256 digest, flags, raw name) in the order added."""
        pending = b""
        if self.spill is not None:
            self.spill.flush()
            self.spill.seek(0)
            while block := self.spill.read(RECORD_BLOCK):
                pending = yield from self._parse(pending + block)
        rest = yield from self._parse(pending + bytes(self.buffer))
        if rest:
            raise ArchiveInvalid("The member records of the new archive are damaged; no archive was kept.")

    @staticmethod
    def _parse(data):
        parsed = _RecordBlock(data, _RECORD)
        yield from parsed
        return parsed.rest

    def close(self):
        if self.spill is not None:
            self.spill.close()
            self.spill = None


class _Sink:
    """ZIP members written one after another into a file descriptor, with their records."""

    def __init__(self, fd, folder, stamp, stop=None):
        self.fd, self.folder, self.stamp, self.stop = fd, folder, stamp, stop
        self.offset = 0
        self.records = _Records(folder)
        self._buffer = None

    def _write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.offset += len(data)

    def _check_stop(self):
        if self.stop is not None and self.stop.is_set():
            raise Stopped()

    def member(self, name):
        """A member streamed through ``write``; its local header is completed when it closes."""
        self._check_stop()
        return _MemberStream(self, check_member_name(name))

    def add_file(self, name, path, progress=None):
        """Copy a regular file into a member, reading it once; returns its size, or None when it is not (or no
        longer) a regular file. ``progress(n)`` is called with the bytes of each block."""
        self._check_stop()
        raw, flags = _encode_name(name)
        try:
            # O_NOFOLLOW: a symlink put in its place is refused; O_NONBLOCK: a FIFO cannot hang the backup.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENXIO, errno.ENOENT):
                return None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if self._buffer is None:
                self._buffer = memoryview(bytearray(WRITE_BLOCK))
            buffer, start = self._buffer, self.offset
            want = min(st.st_size + 1, WRITE_BLOCK)
            n = os.readv(fd, [buffer[:want]])
            if n < want:  # the whole file in one read: one header, one write, no header to complete later
                data = buffer[:n]
                crc, digest = zlib.crc32(data), hashlib.sha256(data).digest()
                header = _local_header(raw, flags, crc, n, self.stamp)
                written = os.writev(self.fd, [header, data])
                self.offset += written
                if written < len(header) + n:  # a short write: the rest the slow way
                    self._write((header + bytes(data))[written:])
                self.records.add(start, n, crc, digest, flags, raw)
                if progress:
                    progress(n)
                return n
            self._write(_local_header(raw, flags, 0, 0, self.stamp))
            crc, sha, size = 0, hashlib.sha256(), 0
            while n:
                data = buffer[:n]
                crc = zlib.crc32(data, crc)
                sha.update(data)
                self._write(data)
                size += n
                if progress:
                    progress(n)
                self._check_stop()
                n = os.readv(fd, [buffer])
            os.pwrite(self.fd, _local_header(raw, flags, crc, size, self.stamp), start)
            self.records.add(start, size, crc, sha.digest(), flags, raw)
            return size
        finally:
            os.close(fd)


class _MemberStream:
    def __init__(self, sink, name):
        self.sink, self.name = sink, name
        self.raw, self.flags = _encode_name(name)
        self.start = sink.offset
        sink._write(_local_header(self.raw, self.flags, 0, 0, sink.stamp))
        self.crc, self.sha, self.size = 0, hashlib.sha256(), 0

    def write(self, data):
        self.sink._check_stop()
        self.sink._write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        pass

    def close(self):
        os.pwrite(self.sink.fd, _local_header(self.raw, self.flags, self.crc, self.size, self.sink.stamp), self.start)
        self.sink.records.add(self.start, self.size, self.crc, self.sha.digest(), self.flags, self.raw)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()


class Segment(_Sink):
    """Members written into an anonymous temporary file beside the archive, to be appended to it whole
    (``Writer.append``): so one part can be produced while another streams into the archive."""

    def __init__(self, folder, stamp, stop=None):
        self.file = tempfile.TemporaryFile(dir=folder)
        super().__init__(self.file.fileno(), folder, stamp, stop)

    def close(self):
        self.records.close()
        self.file.close()


class Writer(_Sink):
    """A new archive: members, then the manifest and its signature, then the central directory.

    ``path`` exists (the caller created it, mode 0600). Nothing here holds per-member state in memory.
    """

    def __init__(self, path, stop=None):
        self.path = Path(path)
        super().__init__(os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC), self.path.parent,
                         _dos_stamp(), stop)
        self.segments = []
        self.end = None

    def segment(self):
        segment = Segment(self.folder, self.stamp, self.stop)
        self.segments.append(segment)
        return segment

    def append(self, segment):
        """Copy a finished segment's bytes to the end of the archive (in the kernel) and take over its records."""
        base, size, copied = self.offset, segment.offset, 0
        while copied < size:
            try:
                n = os.copy_file_range(segment.fd, self.fd, size - copied, copied, base + copied)
            except OSError as error:
                if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                n = os.pwrite(self.fd, os.pread(segment.fd, min(WRITE_BLOCK, size - copied), copied), base + copied)
            if n <= 0:
                raise OSError(errno.EIO, "the part could not be copied into the archive")
            copied += n
        os.lseek(self.fd, base + size, os.SEEK_SET)
        self.offset = base + size
        for offset, member_size, crc, sha, flags, raw in segment.records:
            self.records.add(base + offset, member_size, crc, sha, flags, raw)
        segment.close()
        self.segments.remove(segment)

    def finish(self, manifest, signing_key):
        """Write the member list (streamed from the records), the manifest (``manifest`` plus a ``members`` object
        referring to the list, and the format version), its signature, and the central directory; the list, the
        manifest and the signature are the last three members. Format 2's order is checked on the way: the
        ``files/`` members must come in ``name_key`` order (``files.pack`` writes them so)."""
        key = _key_bytes(signing_key)
        count, previous = 0, None
        with self.member(MEMBER_LIST) as out:
            pending, size = [], 0
            for _, member_size, _, sha, flags, raw in self.records:
                name = raw.decode("utf-8" if flags & 0x800 else "ascii")
                if name.startswith(FILES_PREFIX):
                    order = name_key(name)
                    if previous is not None and order <= previous:
                        raise ArchiveInvalid(f"The files of the new archive are not in name order (at {_shown(name)}); "
                                             "no archive was kept.")
                    previous = order
                line = f"{sha.hex()}\t{member_size}\t{name}\n"
                pending.append(line)
                size += len(line)
                count += 1
                if size >= RECORD_BLOCK:
                    out.write("".join(pending).encode())
                    pending, size = [], 0
            out.write("".join(pending).encode())
            listing = {"list": MEMBER_LIST, "count": count, "bytes": out.size, "sha256": out.sha.hexdigest()}
        data = json.dumps({**manifest, "format_version": FORMAT_VERSION, "members": listing}, indent=1,
                          sort_keys=True).encode()
        with self.member(MANIFEST) as out:
            out.write(data)
        signature = hmac.new(key, data, hashlib.sha256).hexdigest().encode()
        with self.member(SIGNATURE) as out:
            out.write(signature)
        self.signature = signature
        cd_offset, block = self.offset, bytearray()
        for offset, size, crc, _, flags, raw in self.records:
            block += _central_record(offset, size, crc, flags, raw, self.stamp)
            if len(block) >= RECORD_BLOCK:
                self._write(block)
                block = bytearray()
        self._write(block)
        count, cd_size = self.records.count, self.offset - cd_offset
        end = b""
        if count > 0xFFFF or cd_offset > ZIP64_LIMIT or cd_size > ZIP64_LIMIT:
            end += _EOCD64.pack(b"PK\x06\x06", _EOCD64.size - 12, ZIP_VERSION, ZIP_VERSION, 0, 0, count, count,
                                cd_size, cd_offset)
            end += _EOCD64_LOCATOR.pack(b"PK\x06\x07", 0, self.offset, 1)
        end += _EOCD.pack(b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), min(cd_size, _U32),
                          min(cd_offset, _U32), 0)
        self._write(end)
        self.end = (count, cd_offset, cd_size, self.offset)
        os.close(self.fd)
        self.fd = None

    def verify(self, signing_key):
        """Read back what finish() wrote, except the member data: the end records, every central directory record
        and local header against the records, and the manifest's bytes against the signature."""
        count, cd_offset, cd_size, size = self.end
        reader = Reader.__new__(Reader)  # Reader's record parsers over the new file, without its member checks
        reader.path, reader.name, reader.max_members = self.path, self.path.name, None
        reader.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            reader.size = os.fstat(reader.fd).st_size
            if reader.size != size or reader._end_records() != (count, cd_offset, cd_size):
                raise self._not_as_written("its end records")
            manifest_entry, signature_entry = reader._last_two_records(cd_offset, cd_size)
            if reader._read(signature_entry.data_offset, signature_entry.file_size) != self.signature:
                raise self._not_as_written("its signature")
            mac = hmac.new(_key_bytes(signing_key), digestmod=hashlib.sha256)
            for at in range(0, manifest_entry.file_size, RECORD_BLOCK):
                mac.update(reader._read(manifest_entry.data_offset + at,
                                        min(RECORD_BLOCK, manifest_entry.file_size - at)))
            if not hmac.compare_digest(mac.hexdigest().encode(), self.signature):
                raise self._not_as_written("its manifest")
            buffer, buffer_offset, position = b"", cd_offset, cd_offset
            for offset, member_size, crc, _, flags, raw in self.records:
                if position - buffer_offset + MAX_CD_RECORD_BYTES > len(buffer):
                    buffer = buffer[position - buffer_offset:]
                    buffer_offset = position
                    buffer += reader._read(buffer_offset + len(buffer),
                                           min(RECORD_BLOCK, cd_offset + cd_size - buffer_offset - len(buffer)))
                entry, length = reader._parse_record(buffer, position - buffer_offset)
                position += length
                if (entry.raw_name, entry.CRC, entry.file_size, entry.compress_size, entry.header_offset,
                        entry.flag_bits) != (raw, crc, member_size, member_size, offset, flags):
                    raise self._not_as_written(f"the directory record of {raw[:100]!r}")
                header = _local_header(raw, flags, crc, member_size, self.stamp)
                if reader._read(offset, len(header)) != header:
                    raise self._not_as_written(f"the local header of {raw[:100]!r}")
            if position != cd_offset + cd_size:
                raise self._not_as_written("its central directory")
        finally:
            reader.close()
            self.records.close()

    def _not_as_written(self, what):
        return ArchiveInvalid(f"The new archive does not read back as written ({what}); it was removed and the "
                              "store was not changed.")

    def abort(self):
        for segment in self.segments:
            segment.close()
        self.segments = []
        self.records.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self):
        self.abort()
