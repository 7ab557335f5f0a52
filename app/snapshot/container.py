"""The archive container: a ZIP64 file of STORED members, a signed manifest, safe member names."""
import hashlib
import hmac
import json
import re
import secrets
import stat
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path

from app.snapshot.errors import ArchiveInvalid, ArchiveNotFound, SignatureInvalid, UnsafeArchive

FORMAT = "store-snapshot"
FORMAT_VERSION = 1
EXTENSION = ".zip"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST_BYTES = 256 * 1024 * 1024
KINDS = ("export", "backup")
PARTS = ("database", "files", "both")
# <store>-<kind>-<parts>-<UTC timestamp>-<random>.zip: sorts by time, never collides.
NAME_PATTERN = re.compile(
    r"^(?P<store>[a-z0-9][a-z0-9_-]{0,62})-(?P<kind>export|backup)-(?P<parts>database|files|both)-"
    r"(?P<stamp>\d{8}T\d{6}\d{6}Z)-(?P<nonce>[0-9a-f]{6})\.zip$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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
    return hmac.new(key.encode() if isinstance(key, str) else key, manifest_bytes, hashlib.sha256).hexdigest()


def check_member_name(name):
    """Refuse any name that could leave the staging folder or mean something else on another system."""
    problem = None
    if not name or len(name) > 1024:
        problem = "an empty or overlong name"
    elif _CONTROL.search(name):
        problem = "a control character"
    elif "\\" in name:
        problem = "a backslash"
    elif name.startswith("/"):
        problem = "an absolute path"
    elif re.match(r"^[A-Za-z]:", name):
        problem = "a drive letter"
    else:
        parts = name.split("/")
        if any(p in ("", ".", "..") for p in parts):
            problem = "an empty, '.' or '..' path segment"
    if problem:
        raise UnsafeArchive(f"The archive contains a member name with {problem} ({name!r}); it was refused "
                            "and nothing was changed.")
    return name


def _check_entry(info):
    mode = info.external_attr >> 16
    if info.is_dir() or (mode and not stat.S_ISREG(mode)):
        raise UnsafeArchive(f"The archive member {info.filename!r} is not a regular file (a link, folder or "
                            "device); it was refused and nothing was changed.")
    if info.compress_type != zipfile.ZIP_STORED:
        raise UnsafeArchive(f"The archive member {info.filename!r} is compressed in a way this tool never "
                            "writes; it was refused and nothing was changed.")
    if info.flag_bits & 0x1:
        raise UnsafeArchive(f"The archive member {info.filename!r} is encrypted; it was refused.")


class Reader:
    """An archive opened for reading: the signature is checked before any other member is trusted."""

    def __init__(self, path, signing_key):
        self.path = Path(path)
        try:
            self.zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise ArchiveNotFound(f"The file {self.path.name} does not exist.") from None
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise ArchiveInvalid(f"{self.path.name} is not a readable backup archive ({error}); it may be "
                                 "truncated or corrupted. Nothing was changed.") from None
        try:
            self.entries = self._entries()
            manifest_bytes = self._read_small(MANIFEST)
            signature = self._read_small(SIGNATURE).decode("ascii", "replace").strip()
            if not hmac.compare_digest(signature, sign(manifest_bytes, signing_key)):
                raise SignatureInvalid(f"{self.path.name} fails its signature check: it was modified after it was "
                                       "made, or made with another signing key. Nothing was changed.")
            try:
                self.manifest = json.loads(manifest_bytes)
            except ValueError:
                raise ArchiveInvalid(f"{self.path.name} has an unreadable manifest; nothing was changed.") from None
        except BaseException:
            self.zip.close()
            raise

    def _entries(self):
        entries = {}
        for info in self.zip.infolist():
            check_member_name(info.filename)
            if info.filename in entries:
                raise UnsafeArchive(f"The archive contains {info.filename!r} twice; it was refused and nothing "
                                    "was changed.")
            _check_entry(info)
            entries[info.filename] = info
        return entries

    def _read_small(self, name):
        info = self.entries.get(name)
        if info is None:
            raise ArchiveInvalid(f"{self.path.name} has no {name}: it is not a backup made by this application, "
                                 "or it is incomplete. Nothing was changed.")
        if info.file_size > MAX_MANIFEST_BYTES:
            raise UnsafeArchive(f"{self.path.name} has an oversized {name}; it was refused.")
        with self.open(name, info.file_size) as stream:
            return stream.read()

    def open(self, name, expected_size):
        """A member's data, refused if its declared size disagrees with the manifest's."""
        info = self.entries[name]
        if info.file_size != expected_size:
            raise UnsafeArchive(f"The archive member {name!r} is {info.file_size} bytes but the manifest says "
                                f"{expected_size}; it was refused and nothing was changed.")
        try:
            return _MemberReader(self.zip.open(info), self.path.name, name)
        except READ_ERRORS as error:
            raise ArchiveInvalid(f"{self.path.name} is damaged at {name!r} ({error}); nothing was changed.") from None

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# What reading a damaged ZIP member can raise (a bad CRC is a BadZipFile, raised by the last read).
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


class _MemberReader:
    """A member's data stream whose read errors say, in one line, that the archive is damaged."""

    def __init__(self, stream, archive_name, member):
        self.stream, self.archive_name, self.member = stream, archive_name, member

    def read(self, size=-1):
        try:
            return self.stream.read(size)
        except READ_ERRORS as error:
            raise ArchiveInvalid(f"{self.archive_name} is damaged at {self.member!r} ({error}); it may be truncated "
                                 "or corrupted. Nothing was changed.") from None

    def readable(self):
        return True

    def close(self):
        self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Writer:
    """Streams members into a new archive and records each one's size and SHA-256 for the manifest."""

    def __init__(self, path):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.members = {}

    def member(self, name):
        return _MemberStream(self, check_member_name(name))

    def finish(self, manifest, signing_key):
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        for name, payload in ((MANIFEST, data), (SIGNATURE, sign(data, signing_key).encode())):
            info = zipfile.ZipInfo(name, date_time=datetime.now(timezone.utc).timetuple()[:6])
            info.external_attr = (stat.S_IFREG | 0o600) << 16
            self.zip.writestr(info, payload)
        self.zip.close()

    def abort(self):
        try:
            self.zip.close()
        except Exception:  # the file is about to be deleted; its state does not matter
            pass


class _MemberStream:
    def __init__(self, writer, name):
        self.writer, self.name = writer, name
        info = zipfile.ZipInfo(name, date_time=datetime.now(timezone.utc).timetuple()[:6])
        info.external_attr = (stat.S_IFREG | 0o600) << 16
        self.stream = writer.zip.open(info, "w", force_zip64=True)
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.stream.write(data)
        self.sha.update(data)
        self.size += len(data)

    def close(self):
        self.stream.close()
        self.writer.members[self.name] = {"size": self.size, "sha256": self.sha.hexdigest()}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close() if exc_type is None else self.stream.close()
