"""The files part: pack the uploads folder, and restore it through a staging folder and renames."""
import hashlib
import os
import secrets
import shutil
import stat
from pathlib import Path

from app.snapshot import journal
from app.snapshot.container import check_member_name
from app.snapshot.errors import ArchiveInvalid, InsufficientSpace, RestoreFailed, UnsafeArchive

PREFIX = "files/"
CHUNK = 1024 * 1024
FREE_SPACE_MARGIN = 64 * 1024 * 1024


def _candidates(root, skipped):
    """(member name, path, relative name, size) of each regular file under ``root``, one at a time, in a stable
    order (folders sorted, names sorted); what cannot be archived goes to ``skipped``. Nothing is collected: a
    million files cost no more memory than a thousand."""
    base = os.fspath(root)
    cut = len(base) + 1
    for folder, dirs, names in os.walk(base, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            relative = path[cut:].replace(os.sep, "/")
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


def file_members(manifest):
    return {name: meta for name, meta in manifest["members"].items() if name.startswith(PREFIX)}


def check_layout(members):
    """A file and a folder of the same name cannot both be restored."""
    files = {name[len(PREFIX):] for name in members}
    for name in files:
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafeArchive(f"The archive has both a file and a folder named {'/'.join(parts[:i])!r}; "
                                    "it was refused and nothing was changed.")


def check_space(target_dir, needed):
    probe = Path(target_dir)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed + FREE_SPACE_MARGIN > free:
        raise InsufficientSpace(f"Restoring the files needs {needed / 1e6:.0f} MB but only {free / 1e6:.0f} MB "
                                "are free next to the uploads folder; nothing was changed. Free some space and try "
                                "again.")


def copy_member(reader, name, meta, out, report=None, progress=(0, 0), phase=None):
    """Stream a member into ``out`` (or nowhere), checking its size and SHA-256 against the manifest."""
    sha = hashlib.sha256()
    size = 0
    done, total = progress
    phase = phase or ("verify" if out is None else "staging")
    with reader.open(name, meta["size"]) as stream:
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
        total = sum(meta["size"] for meta in members.values())
        check_space(self.uploads.parent, total)
        self.uploads.parent.mkdir(parents=True, exist_ok=True)
        self._journal("staging")
        self.staging.mkdir(mode=0o700)
        done = 0
        for name, meta in sorted(members.items()):
            target = self.staging / name[len(PREFIX):]
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                # O_EXCL and O_NOFOLLOW: nothing in the fresh staging folder may be reused or followed.
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except OSError as error:  # the reason only: the message never carries a server path
                raise RestoreFailed(f"Creating the restored file {name[len(PREFIX):][:200]!r} failed "
                                    f"({error.strerror or 'unknown error'}); the uploads folder was left as it "
                                    "was.") from None
            with os.fdopen(fd, "wb") as out:
                done += copy_member(reader, name, meta, out, report, (done, total))

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
