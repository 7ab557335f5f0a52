"""Crash safety of a restore: a journal beside the uploads folder and a marker in the store database.

A restore that swaps files in and then commits the database has a window where a killed process
would leave new files with the old rows. The journal says which folders are in play; the marker
row, written in the same transaction as the rows, says whether that transaction committed.
``recover`` reads both and finishes or undoes the swap, so the store is always entirely the
old one or entirely the archive's.

The marker table lives only as long as a journal may need it: it is created inside the restore's
transaction (so it exists afterwards only if the rows committed; no table means "not committed"),
and dropped by ``tidy`` once no journal is left: after a finished restore, or by ``recover``. The
store database then holds only the store's own tables.
"""
import json
import os
import shutil
from pathlib import Path

import sqlalchemy as sa

from app.snapshot.database import drop_restore_schemas

MARKER_TABLE = "snapshot_restore_marker"
_marker_metadata = sa.MetaData()
marker = sa.Table(
    MARKER_TABLE, _marker_metadata,
    sa.Column("token", sa.String(64), primary_key=True),
    sa.Column("finished_at", sa.DateTime, nullable=False, server_default=sa.func.current_timestamp()),
)


def journal_path(uploads_dir, token):
    uploads = Path(uploads_dir)
    return uploads.with_name(f".{uploads.name}.restore-journal-{token}.json")


def write(uploads_dir, token, **state):
    """Durably record the restore's state before the step it describes."""
    path = journal_path(uploads_dir, token)
    temp = path.with_suffix(".tmp")
    with open(temp, "w") as out:
        json.dump({"token": token, **state}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
    _fsync_dir(path.parent)


def remove(uploads_dir, token):
    journal_path(uploads_dir, token).unlink(missing_ok=True)


def ensure_marker_table(engine):
    """Kept for callers of older versions; the engine itself creates the table inside the restore's transaction."""
    marker.create(engine, checkfirst=True)


def mark_committed(connection, token):
    """Inside the restore's transaction: the table and this row exist afterwards only if the rows do too."""
    marker.create(connection, checkfirst=True)
    connection.execute(marker.delete())
    connection.execute(marker.insert().values(token=token))


def committed(engine, token):
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(MARKER_TABLE):
            return False  # created in the same transaction as the rows: no table, no commit
        return connection.scalar(sa.select(marker.c.token).where(marker.c.token == token)) is not None


def _journals(uploads_dir):
    uploads = Path(uploads_dir)
    return sorted(uploads.parent.glob(f".{uploads.name}.restore-journal-*.json"))


def tidy(uploads_dir, engine):
    """Drop the marker table once no journal is left that could need it (best effort: a failure here leaves
    only the table, which the next ``recover`` drops)."""
    if _journals(uploads_dir):
        return False
    try:
        with engine.begin() as connection:
            if sa.inspect(connection).has_table(MARKER_TABLE):
                marker.drop(connection)
                return True
    except sa.exc.SQLAlchemyError:
        pass
    return False


def recover(uploads_dir, engine):
    """Finish or undo any restore a dead process left half-done; returns what was done, for logs."""
    uploads = Path(uploads_dir)
    actions = []
    for path in _journals(uploads):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        staging, old, token = Path(state["staging"]), Path(state["old"]), state["token"]
        swapped = state.get("phase") == "swapped"
        done = swapped and committed(engine, token)
        if swapped and not done:
            # The rows were rolled back when the process died: put the old files back too.
            if old.exists():  # the live folder had been moved aside
                if uploads.exists():  # ...and the restored one moved in
                    os.rename(uploads, staging if not staging.exists() else staging.with_name(staging.name + "-new"))
                os.rename(old, uploads)
            shutil.rmtree(staging.with_name(staging.name + "-new"), ignore_errors=True)
            actions.append(f"undid the file swap of restore {token}")
        else:
            actions.append(f"{'finished' if done else 'cleaned up'} restore {token}")
        shutil.rmtree(staging, ignore_errors=True)
        if done:
            shutil.rmtree(old, ignore_errors=True)
        path.unlink(missing_ok=True)
    if engine.dialect.name == "postgresql":  # the schemas of a restore that died (under the lock: none runs now)
        actions += [f"dropped {name}, left by a restore that did not finish" for name in drop_restore_schemas(engine)]
    tidy(uploads, engine)
    return actions


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
