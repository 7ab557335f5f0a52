"""Trials through the operations layer: dry runs, drills, restores that try first, and an archive made
before the product slug migration brought forward into today's schema. Real archives, real migrations,
SQLite and PostgreSQL stores; the live store is compared table by table and file by file (and its
uploads folder by inode) before and after every trial that fails."""
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.maintenance import in_maintenance
from app.maintenance import set_maintenance
from app.models import ArchiveTrial, AuditEvent, JobRun, Product, Setting, store_metadata
from app.operations import COMMAND_LINE, archives, staging
from app.operations.procedures import run_inspect, run_restore, run_staging, run_trial
from app.operations.schedules import tick
from app.operations.trials import TrialFailed
from app.schema import code_revision
from app.seed import seed_demo
from app.snapshot import IncompatibleArchive, SnapshotError
from app.snapshot.scratch import ScratchStore
from tests.helpers import app_overrides, dispose
from tests.snapshot import hostile

DATA = Path(__file__).resolve().parent.parent / "data"
BEFORE_SLUGS = DATA / "demo-store-backup-both-20261126T003212626536Z-af0e2f.zip"
OLD_REVISION = "2c3096c25b7f"
KEY = "testing-signing-key"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_app(request, tmp_path, redis_url):
    """An app whose store is SQLite or PostgreSQL, at today's schema, with a few rows and files."""
    overrides = app_overrides(tmp_path, redis_url)
    if request.param == "postgresql":
        overrides["SQLALCHEMY_DATABASE_URI"] = request.getfixturevalue("postgres_database")
    app = create_app("testing", overrides)
    with app.app_context():
        db.create_all()
        seed_demo(app.config["UPLOADS_DIR"], products=5, orders=6)
    yield app
    dispose(app)


def live(app):
    """The live store as a whole: every row of every store table, every file's checksum, the folder's inode."""
    uploads = Path(app.config["UPLOADS_DIR"])
    with app.app_context(), db.engine.connect() as connection:
        rows = {t.name: sorted(map(tuple, connection.execute(sa.select(t))), key=repr)
                for t in store_metadata().sorted_tables}
    files = {p.relative_to(uploads).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(uploads.rglob("*")) if p.is_file()}
    return rows, files, os.stat(uploads).st_ino


def backup(app, rows=False):
    """A real backup of the store; ``rows``: of its rows, as from PostgreSQL (a SQLite store's own backups hold
    the database file, where a duplicate unique value cannot be written)."""
    with app.app_context():
        return Path(archives._create("backup", "both", "test", None, database_file=not rows))


def seed(app):
    with app.app_context():
        seed_demo(app.config["UPLOADS_DIR"], products=3, orders=2)


def broken(app, mutate, rows=False):
    """A real backup of the store, rewritten by ``mutate`` and signed again with the app's key, kept under
    a new archive name so that it lists like any other."""
    path = backup(app, rows)
    members, manifest = hostile.read(path)
    mutate(members, manifest)
    return hostile.write(path, members, manifest, KEY)


def with_row(table, make_line):
    """One more row (in the table's rows, or in a SQLite store's database file)."""
    def mutate(members, manifest):
        hostile.add_row(members, manifest, table, make_line)
    return mutate


ORPHAN_LINE = with_row("order_lines", lambda row: {**row, "id": b"888888", "product_id": b"999999"})
DUPLICATE_SKU = with_row("products", lambda row: {**row, "id": b"777777", "slug": b"another-slug"})


def watching_maintenance(app, seen):
    def progress(event):
        seen.append(in_maintenance())
    return progress


def test_a_dry_run_catches_a_foreign_key_break_and_the_live_store_never_changes(any_app):
    path = broken(any_app, ORPHAN_LINE)
    before = live(any_app)
    seen = []
    with any_app.app_context():
        with pytest.raises(TrialFailed) as failure:
            run_trial("dry run", path, COMMAND_LINE, progress=watching_maintenance(any_app, seen))
        trial = db.session.scalars(sa.select(ArchiveTrial)).one()
    message = str(failure.value)
    assert "order_lines" in message and "888888" in message and "999999" in message
    assert message.endswith("The live store was not touched.")
    assert (trial.ok, trial.kind, trial.table_name) == (False, "dry run", "order_lines")
    assert seen and not any(seen)  # the storefront was never in maintenance while it ran
    assert live(any_app) == before


def test_a_dry_run_catches_a_checksum_break_and_the_live_store_never_changes(any_app):
    path = broken(any_app, hostile.checksum_mismatch)
    before = live(any_app)
    with any_app.app_context(), pytest.raises(TrialFailed, match="does not match its checksum"):
        run_trial("dry run", path, COMMAND_LINE)
    assert live(any_app) == before


def test_a_restore_that_tries_first_stops_before_the_lock_the_safety_backup_and_maintenance(app, runner):
    seed(app)
    path = broken(app, ORPHAN_LINE)
    before = live(app)
    seen = []
    with app.app_context():
        kept_before = {a.name for a in archives.list_archives()}
        with pytest.raises(TrialFailed, match="order_lines"):
            run_restore(path, "both", COMMAND_LINE, try_first=True, progress=watching_maintenance(app, seen))
        assert {a.name for a in archives.list_archives()} == kept_before  # no safety backup was taken
    assert not any(seen)
    assert live(app) == before


def test_a_drill_passes_on_a_good_backup_and_renders_the_storefront(app, runner):
    seed(app)
    name = backup(app).name
    result = runner.invoke(args=["backup", "drill"])
    assert result.exit_code == 0, result.output
    assert f"Drill passed: {name}" in result.output
    assert "the storefront's home page and the page of" in result.output
    with app.app_context():
        trial = db.session.scalars(sa.select(ArchiveTrial)).one()
        assert (trial.archive_name, trial.kind, trial.ok) == (name, "drill", True)


@pytest.mark.parametrize("mutate, reason", [
    (ORPHAN_LINE, "Table order_lines, the row with id 888888: product_id 999999 refers to no row of products"),
    (DUPLICATE_SKU, "Table products: sku 'SKU-0001' appears more than once"),
    (hostile.checksum_mismatch, "does not match its checksum"),
], ids=["foreign-key", "unique", "checksum"])
def test_a_drill_fails_with_a_clear_reason_on_a_broken_backup(app, runner, mutate, reason):
    seed(app)
    name = broken(app, mutate, rows=mutate is DUPLICATE_SKU).name
    before = live(app)
    result = runner.invoke(args=["backup", "drill", name])
    assert result.exit_code == 1
    assert reason in result.output
    with app.app_context():
        trial = db.session.scalars(sa.select(ArchiveTrial)).one()
        assert not trial.ok and reason in trial.reason
    assert live(app) == before


def test_the_scheduler_drills_the_newest_backup_once_per_period(app):
    backup(app)
    with app.app_context():
        newest = archives.newest_backup().name
        tick()
        tick()
        drills = db.session.scalars(sa.select(JobRun).where(JobRun.kind == "trial")).all()
    assert len(drills) == 1
    assert drills[0].options == {"trial": "drill", "name": newest} and drills[0].started_by == "scheduler"


def test_no_drill_is_scheduled_when_drills_are_off(app):
    app.config["DRILL_EVERY_DAYS"] = 0
    backup(app)
    with app.app_context():
        tick()
        assert db.session.scalars(sa.select(JobRun).where(JobRun.kind == "trial")).all() == []


# --- an archive made before the product slug migration --------------------------------------------------------

def archived_rows(path, table):
    """A table's rows as the old archive holds them, by column name (raw text values)."""
    members, manifest = hostile.read(path)
    entry, _, raw = hostile.table_data(members, manifest, table)
    columns = [c["name"] for c in entry["columns"]]
    return [dict(zip(columns, line.decode().split("\t"))) for line in raw.split(b"\n") if line]


def test_the_review_of_an_older_archive_says_it_will_be_brought_forward(any_app, tmp_path):
    source = tmp_path / BEFORE_SLUGS.name
    shutil.copy(BEFORE_SLUGS, source)
    with any_app.app_context():
        result = run_inspect(source, COMMAND_LINE)
    assert result["upgrade"] == {"from": OLD_REVISION, "to": code_revision(), "migrations": 3, "app_version": "0.2.0"}
    summary = result["summary"]
    assert summary["schema_revision"] == OLD_REVISION and summary["created_at"] == "2026-11-26 00:32:12"
    assert summary["name"] == BEFORE_SLUGS.name and summary["row_counts"]["products"] == 9


def test_an_archive_made_before_the_slug_migration_restores_into_todays_schema_with_its_data(any_app, tmp_path):
    source = tmp_path / BEFORE_SLUGS.name
    shutil.copy(BEFORE_SLUGS, source)
    with any_app.app_context():
        result = run_restore(source, "both", COMMAND_LINE, safety=False)
        assert result["details"]["row_counts"]["products"] == 9
        products = db.session.scalars(sa.select(Product).order_by(Product.id)).all()
        restored = {p.id: p for p in products}
    old = archived_rows(source, "products")
    assert sorted(restored) == sorted(int(row["id"]) for row in old)
    for row in old:  # every column the archive had, intact
        product = restored[int(row["id"])]
        assert (product.sku, product.name, str(product.price), product.stock) == \
            (row["sku"], row["name"], row["price"], int(row["stock"]))
    slugs = {p.name: p.slug for p in products}  # the data migration ran on the archive's rows
    assert slugs["Crème brûlée set"] == "creme-brulee-set" and slugs["Creme Brulee Set"] == "creme-brulee-set-2"
    assert slugs["  ***  "] == "product" and slugs["Organic Mug 1"] == "organic-mug-1"
    with any_app.app_context(), db.engine.connect() as connection:
        for table in ("orders", "order_lines", "users", "settings", "carts", "cart_lines", "product_images"):
            assert connection.scalar(sa.select(sa.func.count()).select_from(store_metadata().tables[table])) == \
                len(archived_rows(source, table)), table
    uploads = Path(any_app.config["UPLOADS_DIR"])
    members, manifest = hostile.read(source)
    for member in members:
        if member.name.startswith("files/"):
            assert (uploads / member.name[len("files/"):]).read_bytes() == member.data
    with any_app.app_context():
        audit_detail = db.session.scalars(sa.select(AuditEvent.detail).where(AuditEvent.action == "restore.finish")).one()
    assert f"brought forward from schema {OLD_REVISION}" in audit_detail


def test_a_newer_archive_is_still_refused(app, tmp_path):
    members, manifest = hostile.read(BEFORE_SLUGS)
    hostile.schema_revision_newer(members, manifest)
    source = hostile.write(tmp_path / BEFORE_SLUGS.name, members, manifest, KEY)
    before = live(app)
    with app.app_context(), pytest.raises(IncompatibleArchive, match="newer than this application"):
        run_inspect(source, COMMAND_LINE)
    with app.app_context(), pytest.raises(IncompatibleArchive, match="newer than this application"):
        run_restore(source, "both", COMMAND_LINE, safety=False)
    assert live(app) == before


def test_scratch_stores_are_dropped_after_every_trial(app, tmp_path):
    seed(app)
    path = broken(app, ORPHAN_LINE)
    with app.app_context():
        with pytest.raises(TrialFailed):
            run_trial("verify", path, COMMAND_LINE)
        root = Path(app.config["BACKUPS_DIR"]) / "scratch"
        assert [p for p in root.iterdir()] == []
        assert ScratchStore.reopen(root / "anything", db.engine) is None


def test_a_staging_copy_is_served_with_a_banner_and_blanked_settings_and_is_discarded(any_app):
    name = backup(any_app).name
    with any_app.app_context():
        info = run_staging(name, COMMAND_LINE)
        assert {"payments.api_key", "mail.smtp_password"} <= set(info["neutralised"])
        store = staging.current()
        assert store.info["archive"] == name
        with store.engine.connect() as connection:
            blanked = dict(connection.execute(sa.text("SELECT key, value FROM settings")).all())
        assert blanked["payments.api_key"] == "" and blanked["mail.smtp_password"] == ""
        assert blanked["store.title"] == "Demo Store"  # only secrets, payments and mail are blanked
        live_key = db.session.get(Setting, "payments.api_key").value
        assert live_key.startswith("sk_live_")
        set_maintenance(True, "restore")  # the live store's maintenance is not the staging copy's
        try:
            client = staging.app_for(store).test_client()
            home = client.get("/")
            product = db.session.scalars(sa.select(Product).order_by(Product.id)).first()
            page = client.get(f"/products/{product.slug}")
        finally:
            set_maintenance(False)
        assert home.status_code == 200 and f"STAGING — restored from {name}".encode() in home.data
        assert page.status_code == 200 and product.name.encode() in page.data
        assert f'href="/staging/products/{product.slug}"'.encode() in home.data  # links stay inside /staging/
        assert staging.discard(COMMAND_LINE) and staging.current() is None
        assert not store.folder.exists()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as connection:
                assert connection.scalar(sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'scratch_%'")) == 0


@pytest.mark.parametrize("revision", ["head", "base", "heads", "-1", "2c30", "2c3096c25b7f@head", ""])
def test_a_revision_that_is_not_one_of_ours_is_refused_before_any_migration_runs(app, tmp_path, revision):
    members, manifest = hostile.read(BEFORE_SLUGS)
    manifest["schema_revision"] = revision
    source = hostile.write(tmp_path / BEFORE_SLUGS.name, members, manifest, KEY)
    with app.app_context():
        with pytest.raises(SnapshotError, match="which this application does not know"):
            run_trial("dry run", source, COMMAND_LINE)
        assert list((Path(app.config["BACKUPS_DIR"]) / "scratch").iterdir()) == []


def test_scratch_stores_left_by_a_killed_process_are_removed_by_the_next_trial(any_app):
    with any_app.app_context():
        root = Path(any_app.config["BACKUPS_DIR"]) / "scratch"
        root.mkdir(parents=True, exist_ok=True)
        left = ScratchStore.create(db.engine, root)  # as a worker killed mid-trial leaves it
        fresh = ScratchStore.create(db.engine, root)  # another trial, running now
        old = 7 * 3600
        os.utime(left.folder / "scratch.json", (os.path.getmtime(left.folder) - old,) * 2)
        run_trial("dry run", backup(any_app), COMMAND_LINE)
        assert not left.folder.exists() and fresh.folder.exists()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as connection:
                schemas = set(connection.scalars(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'scratch_%'")))
            assert schemas == {fresh.schema}
        fresh.drop()


def test_a_new_staging_copy_replaces_the_old_one_only_once_it_is_complete(app):
    seed(app)
    good = backup(app).name
    with app.app_context():
        run_staging(good, COMMAND_LINE)
        first = staging.current()
        half = ScratchStore.create(db.engine, first.folder.parent)  # a copy being made (or left by a dead worker)
        assert staging.current().token == first.token  # not served: it does not say what it holds yet
        path = broken(app, ORPHAN_LINE)
        with pytest.raises(SnapshotError, match="order_lines"):
            run_staging(path.name, COMMAND_LINE)
        assert staging.current().token == first.token  # a copy that failed replaces nothing
        run_staging(good, COMMAND_LINE)
        assert staging.current().token not in (first.token, half.token)
        assert not first.folder.exists() and not half.folder.exists()
        staging.discard(COMMAND_LINE)
