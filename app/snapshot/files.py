"""The files part: pack the uploads folder, and restore it through a staging folder and renames."""
import ctypes
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from app.snapshot import journal
from app.snapshot.container import check_member_name, name_key
from app.snapshot.errors import ArchiveInvalid, InsufficientSpace, RestoreFailed, UnsafeArchive

PREFIX = "files/"
CHUNK = 1024 * 1024
FREE_SPACE_MARGIN = 64 * 1024 * 1024


def _sorted_entries(folder):
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda e: e.name)


def _candidates(root, skipped):
    """(member name, path, relative name, size) of each regular file under ``root``, one at a time, in member name
    order (``name_key``: each folder's entries sorted by name, a subfolder's files at the subfolder's place); what
    cannot be archived goes to ``skipped``. Nothing is collected but the open folders' listings: a million files
    cost no more memory than a thousand."""
    base = os.fspath(root)
    cut = len(base) + 1
    try:
        stack = [iter(_sorted_entries(base))]
    except OSError:
        return
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        path = entry.path
        relative = path[cut:].replace(os.sep, "/")
        try:
            if entry.is_dir(follow_symlinks=False):
                stack.append(iter(_sorted_entries(path)))  # unreadable folders are passed over, as os.walk did
                continue
        except OSError:
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:  # deleted since the folder was listed: not part of the store any more
            continue
        if not stat.S_ISREG(st.st_mode):
            skipped.append(f"{relative} (not a regular file)")
            continue
        try:
            member = check_member_name(PREFIX + relative)
        except UnsafeArchive:
            skipped.append(f"{relative!r} (a name that could not be restored safely)")
            continue
        yield member, path, relative, st.st_size


def scan(uploads_dir):
    """Regular files under the uploads folder as (member name, path, size), sorted; and what was skipped."""
    root = Path(uploads_dir)
    found, skipped = [], []
    if root.is_dir():
        found = [(member, Path(path), size) for member, path, _, size in _candidates(root, skipped)]
    return found, skipped


def pack(writer, uploads_dir, report):
    """Copy every regular file into the archive, reading each once (its size, CRC-32 and SHA-256 are computed on
    the way); returns (file count, bytes, skipped). The folder is walked twice, streamed: once for the progress
    total, once to copy; nothing per file is kept in memory."""
    root = Path(uploads_dir)
    if not root.is_dir():
        return 0, 0, []
    total = sum(size for *_, size in _candidates(root, []))
    skipped, count, done = [], 0, 0

    def progress(n):
        nonlocal done
        done += n
        report("files", done, max(total, done), "bytes")

    for member, path, relative, _ in _candidates(root, skipped):
        if writer.add_file(member, path, progress) is None:  # replaced by a link, a FIFO, ... since the walk
            skipped.append(f"{relative} (not a regular file)")
            continue
        count += 1
    report("files", done, done, "bytes", "Files written", force=True)
    return count, done, skipped


class FileMembers(Mapping):
    """The ``files/`` members of a manifest's ``members`` (name -> {"size", "sha256"}), without copying them: over
    a format-1 dict, or over a format-2 reader's member list (streamed from its checked copy, in name order)."""

    def __init__(self, members):
        self.members = members
        self.streamed = hasattr(members, "iter_entries")

    def __iter__(self):
        return (name for name in self.members if name.startswith(PREFIX))

    def __len__(self):
        return self.members.tally(PREFIX)[0] if self.streamed else sum(1 for _ in self)

    def __contains__(self, name):
        return isinstance(name, str) and name.startswith(PREFIX) and name in self.members

    def __getitem__(self, name):
        if not (isinstance(name, str) and name.startswith(PREFIX)):
            raise KeyError(name)
        return self.members[name]

    def covers(self, name):
        """``name in self`` for a name known to be a member of the archive: O(1) whatever the version."""
        return name.startswith(PREFIX)

    def total_bytes(self):
        if self.streamed:
            return self.members.tally(PREFIX)[1]
        return sum(meta["size"] for meta in self.values())

    def with_entries(self, reader):
        """(name, meta, directory entry) in name order."""
        if self.streamed:
            yield from self.members.iter_entries(PREFIX)
            return
        for name in sorted(self, key=name_key):
            yield name, self.members[name], reader.entries[name]


def file_members(manifest):
    return FileMembers(manifest["members"])


def check_layout(members):
    """A file and a folder of the same name cannot both be restored. In name order (``name_key``) a file's
    name is followed at once by the names under it, if any: one comparison per name. A format-2 list was
    checked so as the reader walked it."""
    if isinstance(members, FileMembers) and members.streamed:
        return
    previous = None
    for name in sorted(members, key=name_key):
        if previous is not None and name.startswith(previous + "/"):
            raise UnsafeArchive(f"The archive has both a file and a folder named {previous[len(PREFIX):]!r}; "
                                "it was refused and nothing was changed.")
        previous = name


def check_space(target_dir, needed):
    probe = Path(target_dir)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + FREE_SPACE_MARGIN > free:
        raise InsufficientSpace(f"Restoring the files needs {needed / 1e6:.0f} MB but only {free / 1e6:.0f} MB "
                                "are free next to the uploads folder; nothing was changed. Free some space and try "
                                "again.")


def copy_member(reader, name, meta, out, report=None, progress=(0, 0), phase=None, entry=None):
    """Stream a member into ``out`` (or nowhere), checking its size and SHA-256 against the manifest.
    ``entry``: its directory entry when the caller has it (a format-2 reader looks names up by walking)."""
    sha = hashlib.sha256()
    size = 0
    done, total = progress
    phase = phase or ("verify" if out is None else "staging")
    # The SHA-256 (signed) is checked here, so the ZIP's CRC-32 of the same bytes would add nothing but time.
    with reader.open(name, meta["size"], entry=entry, check_crc=False) as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > meta["size"]:
                break
            sha.update(chunk)
            if out is not None:
                try:
                    out.write(chunk)
                except OSError as error:
                    raise RestoreFailed(f"Writing the restored files failed ({error.strerror or error}); the "
                                        "uploads folder was left as it was.") from None
            if report:
                report(phase, done + size, total, "bytes")
    if size != meta["size"] or sha.hexdigest() != meta["sha256"]:
        raise ArchiveInvalid(f"The archive member {name!r} does not match its checksum: the file is corrupted. "
                             "Nothing was changed.")
    return size


class _FileWriter:
    """Writes straight to a file descriptor (the blocks are already large: no buffer in between)."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


class _RecentFolders:
    """Folders a staging has made, the most recent ones only (bounded memory, whatever the tree's shape): in
    name order most files share their folder with the file before them."""

    LIMIT = 4096

    def __init__(self):
        self.folders = {}

    def __contains__(self, folder):
        return folder in self.folders

    def add(self, folder):
        if len(self.folders) >= self.LIMIT:
            self.folders.pop(next(iter(self.folders)))
        self.folders[folder] = True


def sync_filesystem(path):
    """Flush everything written to the file system holding ``path`` (Linux ``syncfs``; ``sync`` elsewhere)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _find_syncfs():
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _find_syncfs()


class StagedFiles:
    """The uploads folder rebuilt beside the live one, swapped in by renames, and undone on failure."""

    def __init__(self, uploads_dir):
        self.uploads = Path(uploads_dir)
        self.token = secrets.token_hex(8)
        self.staging = self.uploads.with_name(f".{self.uploads.name}.restore-{self.token}")
        self.old = self.uploads.with_name(f".{self.uploads.name}.old-{self.token}")
        self.swapped = False

    def _journal(self, phase):
        journal.write(self.uploads, self.token, phase=phase, staging=str(self.staging), old=str(self.old))

    def extract(self, reader, members, report):
        """Write ``members`` (a ``FileMembers``, or a dict of name -> meta) into the staging folder."""
        members = members if isinstance(members, FileMembers) else FileMembers(members)
        total = members.total_bytes()
        check_space(self.uploads.parent, total)
        self.uploads.parent.mkdir(parents=True, exist_ok=True)
        self._journal("staging")
        self.staging.mkdir(mode=0o700)
        done = 0
        staging, made = str(self.staging), _RecentFolders()
        for name, meta, entry in members.with_entries(reader):
            target = os.path.join(staging, name[len(PREFIX):])
            try:
                folder = os.path.dirname(target)
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                # O_EXCL and O_NOFOLLOW: nothing in the fresh staging folder may be reused or followed.
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as error:  # the reason only: the message never carries a server path
                raise RestoreFailed(f"Creating the restored file {name[len(PREFIX):][:200]!r} failed "
                                    f"({error.strerror or 'unknown error'}); the uploads folder was left as it "
                                    "was.") from None
            try:
                done += copy_member(reader, name, meta, _FileWriter(fd), report, (done, total), entry=entry)
            finally:
                os.close(fd)
        # Durable before anything is swapped in: one sync of the file system instead of one fsync per file.
        sync_filesystem(self.staging)

    def swap_in(self):
        self._journal("swapped")  # from here on, recovery decides by the database's commit marker
        if self.uploads.exists():
            os.rename(self.uploads, self.old)
        try:
            os.rename(self.staging, self.uploads)
        except OSError as error:
            if self.old.exists():
                os.rename(self.old, self.uploads)
            journal.remove(self.uploads, self.token)
            raise RestoreFailed(f"Could not move the restored files into place ({error}); the uploads folder "
                                "was put back as it was.") from None
        self.swapped = True

    def undo(self):
        """Put the old uploads folder back; drop whatever was staged."""
        if self.swapped:
            os.rename(self.uploads, self.staging)
            if self.old.exists():
                os.rename(self.old, self.uploads)
            self.swapped = False
        shutil.rmtree(self.staging, ignore_errors=True)
        journal.remove(self.uploads, self.token)

    def commit(self):
        """The whole restore succeeded: the old tree can go (after the swap, so the store never waits on it)."""
        shutil.rmtree(self.old, ignore_errors=True)
        journal.remove(self.uploads, self.token)
