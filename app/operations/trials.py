"""Archives tried in scratch stores: the dry run before a restore ("Try it first"), Verify, the scheduled
drill, and older archives brought forward to today's schema.

A trial restores the archive into a scratch store (app.snapshot.scratch: a fresh database and folder,
never the live store; no lock, no maintenance), checks keys, unique values, row counts and every file's
SHA-256 there, and, for Verify and the drill, opens the storefront's home page and a product page against
it. Each trial leaves one ArchiveTrial row: what the archives list shows as "verified by restore".
"""
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from flask import current_app
from markupsafe import escape

from app.extensions import db
from app.models import ArchiveTrial, store_metadata
from app.models.store import utcnow
from app.operations import archives
from app.operations.archives import ACCOUNT_TABLES
from app.schema import APP_VERSION, code_revision, migrations_after, upgrade_store
from app.snapshot import IncompatibleArchive, SnapshotError
from app.snapshot.container import Reader
from app.snapshot.scratch import ScratchStore, TrialFailed, bring_forward, load_archive, load_forward

__all__ = ["TrialFailed", "upgrade_plan", "upgrade_sentence", "scratch_root", "scratch_store", "try_archive",
           "restorable", "record", "latest_trials", "verified_at", "check_storefront"]
FORWARD_PREFIX = "forward-"
# A scratch store (or brought-forward archive) untouched this long belongs to a process that died.
STALE_SECONDS = 6 * 3600


def scratch_root():
    """Where scratch stores live: SCRATCH_DIR, else a folder beside the kept archives (it needs about as
    much room as the store itself while a trial runs)."""
    folder = Path(current_app.config.get("SCRATCH_DIR") or Path(current_app.config["BACKUPS_DIR"]) / "scratch")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def upgrade_plan(manifest):
    """None for an archive at today's store schema; for an older one, what bringing it forward means.
    An archive of a newer schema (or of a revision this code never had) is refused."""
    revision = manifest.get("schema_revision")
    if revision == code_revision():
        return None
    steps = migrations_after(revision)
    if steps is None:
        raise IncompatibleArchive(
            f"This archive was made at store schema revision {revision!r}, which this application does not know: "
            f"it is newer than this application (at {code_revision()!r}) or from another one. Restore it with the "
            f"application version that made it (app {manifest.get('app_version')!r}) or a newer one; nothing was "
            "changed.")
    return {"from": revision, "to": code_revision(), "migrations": len(steps),
            "app_version": str(manifest.get("app_version"))}


def upgrade_sentence(plan):
    n = plan["migrations"]
    return (f"Made by app version {plan['app_version']} at schema {plan['from']}; it will be upgraded to "
            f"{plan['to']} ({n} migration{'s' if n != 1 else ''}).")


def remove_stale():
    """What killed processes left in the scratch folder: scratch stores (and their PostgreSQL schemas) and
    brought-forward archives untouched for STALE_SECONDS."""
    root = scratch_root()
    removed = ScratchStore.remove_stale(root, db.engine, STALE_SECONDS)
    for folder in root.glob(f"{FORWARD_PREFIX}*"):
        if time.time() - folder.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def scratch_store():
    """A fresh scratch store on the live store's engine type, dropped after the block."""
    remove_stale()
    store = ScratchStore.create(db.engine, scratch_root())
    try:
        yield store
    finally:
        store.drop()


def _manifest(local):
    with Reader(local, current_app.config["BACKUP_SIGNING_KEY"], check_members=False) as reader:
        return reader.manifest


def load(local, scratch, *, parts=None, keep_accounts=False, progress=None):
    """Restore a local archive into ``scratch`` and check it: at today's schema, or built at the archive's
    own revision, loaded, checked, then upgraded by the migrations and checked again. Returns
    (TrialResult, upgrade plan or None)."""
    plan = upgrade_plan(_manifest(local))
    key = current_app.config["BACKUP_SIGNING_KEY"]
    if plan is not None:  # today's accounts have today's columns: the restore itself keeps them, not this
        result = load_forward(local, scratch, signing_key=key, archive_revision=plan["from"],
                              build=lambda connection: upgrade_store(connection, plan["from"]),
                              upgrade=lambda connection: upgrade_store(connection, plan["to"]),
                              metadata=store_metadata(), parts=parts, progress=progress, **archives.limits())
        result.checks.append(f"brought forward from schema {plan['from']} to {plan['to']} ({plan['migrations']} "
                             "migrations); every key still holds")
        return result, plan
    with scratch.engine.begin() as connection:
        upgrade_store(connection, code_revision())
    result = load_archive(local, scratch, signing_key=key, schema_revision=code_revision(), metadata=store_metadata(),
                          parts=parts, keep_from=db.engine if keep_accounts else None,
                          keep_tables=ACCOUNT_TABLES if keep_accounts else (), progress=progress, **archives.limits())
    return result, None


def try_archive(local, *, parts=None, keep_accounts=False, storefront=False, progress=None):
    """Restore the archive file ``local`` into a scratch store and check it; with ``storefront``, open the
    home page and a product page against it too. Raises TrialFailed or the engine's errors; returns a dict
    for the run's result."""
    with scratch_store() as scratch:
        result, plan = load(local, scratch, parts=parts, keep_accounts=keep_accounts, progress=progress)
        if storefront and result.parts in ("database", "both"):
            result.checks += check_storefront(scratch, Path(local).name)
    return {"archive": result.name, "parts": result.parts, "row_counts": result.row_counts,
            "file_count": result.file_count, "file_bytes": result.file_bytes, "checks": result.checks,
            "seconds": round(result.seconds, 2), "upgrade": plan}


def check_storefront(scratch, label):
    """The storefront's home page and the first active product's page, rendered by this application
    against the scratch store: both must answer 200 and show the product."""
    app = storefront_app(scratch, label)
    try:
        with scratch.engine.connect() as connection:
            product = connection.execute(sa.text(
                "SELECT name, slug FROM products WHERE active ORDER BY id LIMIT 1")).first()
        client = app.test_client()
        home = client.get("/")
        if home.status_code != 200:
            raise TrialFailed(f"The storefront's home page answered {home.status_code} against the restored store.")
        if product is None:
            return ["the storefront's home page renders (the archive has no active product to open)"]
        page = client.get(f"/products/{product.slug}")
        if page.status_code != 200 or str(escape(product.name)) not in page.get_data(as_text=True):
            raise TrialFailed(f"The page of the product {product.name!r} answered {page.status_code} against the "
                              "restored store, or did not show the product.", table="products")
        return [f"the storefront's home page and the page of {product.name!r} render"]
    finally:
        dispose(app)


def storefront_app(scratch, label):
    """This application built a second time with the scratch store as its store database and folder, to
    render its storefront. The factory registered itself in the app (``app.extensions["factory"]``), so
    the operations layer builds it without importing a blueprint."""
    config = {key: value for key, value in current_app.config.items() if key.isupper()}
    config.update(SQLALCHEMY_DATABASE_URI=scratch.url.render_as_string(hide_password=False),
                  UPLOADS_DIR=str(scratch.uploads_dir), STAGING_FROM=label, APPLICATION_ROOT="/staging",
                  SERVER_NAME=None)
    return current_app.extensions["factory"]("testing" if current_app.testing else None, config)


def dispose(app):
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@contextmanager
def restorable(source, plan, progress=None):
    """The archive a restore takes: ``source`` itself at today's schema; for an older one, a new archive
    at today's schema brought forward in a scratch store (removed after the block)."""
    if plan is None:
        yield source
        return
    out = scratch_root() / f"{FORWARD_PREFIX}{time.time_ns()}"
    out.mkdir(mode=0o700)
    try:
        with archives.readable(source) as local, scratch_store() as scratch:
            config = current_app.config
            path, _ = bring_forward(
                local, scratch, signing_key=config["BACKUP_SIGNING_KEY"], archive_revision=plan["from"],
                build=lambda connection: upgrade_store(connection, plan["from"]),
                upgrade=lambda connection: upgrade_store(connection, plan["to"]),
                metadata=store_metadata(), schema_revision=plan["to"], app_version=APP_VERSION, out_dir=out,
                progress=progress, **archives.limits())
        yield path
    finally:
        shutil.rmtree(out, ignore_errors=True)


def record(kind, name, caller, *, sha256=None, result=None, error=None, seconds=0.0):
    """One ArchiveTrial row for a trial that ended: passed (``result``) or failed (``error``)."""
    trial = ArchiveTrial(archive_name=name, archive_sha256=sha256, kind=kind, ok=error is None,
                         seconds=round(seconds, 2), started_by=caller.actor, checked_at=utcnow(),
                         detail=result if error is None else None)
    if error is not None:
        trial.reason = str(error)[:2000]
        trial.table_name = getattr(error, "table", None)
        trial.row_label = (getattr(error, "row", None) or "")[:500] or None
    db.session.add(trial)
    db.session.commit()
    return trial


def latest_trials(names=None):
    """The newest trial of each kept archive (all, or those named): {name: ArchiveTrial}."""
    query = db.select(ArchiveTrial).order_by(ArchiveTrial.checked_at.desc(), ArchiveTrial.id.desc())
    if names is not None:
        query = query.where(ArchiveTrial.archive_name.in_(list(names)))
    newest = {}
    for trial in db.session.scalars(query):
        newest.setdefault(trial.archive_name, trial)
    return newest


def verified_at(name):
    """When ``name`` last passed a trial (None: never, or its newest trial failed)."""
    trial = latest_trials([name]).get(name)
    return trial.checked_at if trial is not None and trial.ok else None


def failure_text(error):
    """A trial's failure for a person: what broke, and that the live store was not touched."""
    text = str(error).rstrip()
    if isinstance(error, SnapshotError) and not isinstance(error, TrialFailed):
        return text
    return f"{text} The live store was not touched."
