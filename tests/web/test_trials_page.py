"""Archives tried in scratch stores, on the page: Verify on a kept backup, "Try it first" in the review (a
broken archive is named by table and row while the live store stays as it was), the confirmation's
try-first default, and the staging copy served read-only at /staging/ to super-admins at maintainer
networks only. Real Redis, real worker."""
import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ArchiveTrial, AuditEvent, JobRun, Order, OrderLine, Product, Setting
from tests.helpers import csrf_token_from, is_checked
from tests.snapshot import hostile

WIZARD = "/admin/tools/backup"
SIGNING_KEY = "testing-signing-key"  # TestingConfig.BACKUP_SIGNING_KEY
HTMX = {"HX-Request": "true"}


def post(client, url, data=None, **kwargs):
    return client.post(url, data={**(data or {}), "csrf_token": client.csrf}, headers=HTMX, **kwargs)


def latest(app, kind):
    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == kind).order_by(JobRun.created_at.desc())).first()
        if run is not None:
            db.session.expunge(run)
        return run


def count(app, kind):
    with app.app_context():
        return db.session.scalar(db.select(sa.func.count()).select_from(JobRun).where(JobRun.kind == kind))


def fill_store(app):
    """A product with a page, an order with a line, a payment secret: what the trials check and blank."""
    with app.app_context():
        lamp = Product(sku="LAMP-1", name="Brass desk lamp", slug="brass-desk-lamp", price=Decimal("49.00"), active=True)
        order = Order(number="A-1001", customer_email="ann@example.com", total=Decimal("49.00"))
        db.session.add_all([lamp, order])
        db.session.flush()
        db.session.add(OrderLine(order_id=order.id, product_id=lamp.id, quantity=1, unit_price=Decimal("49.00")))
        db.session.add(Setting(key="payments.api_key", value="sk_live_SECRET", is_secret=True))
        db.session.add(Setting(key="store_title", value="Lamps", is_secret=False))
        db.session.commit()


def live_store(app):
    """Every row of the tables a broken archive would change, and whether the store is in maintenance."""
    from app.maintenance import in_maintenance

    with app.app_context(), app.test_request_context():
        return ([(p.id, p.sku, p.name) for p in db.session.scalars(db.select(Product).order_by(Product.id))],
                [(line.id, line.product_id) for line in db.session.scalars(db.select(OrderLine).order_by(OrderLine.id))],
                in_maintenance())


def make_backup(runner, parts="both"):
    result = runner.invoke(args=["backup", "create", "--parts", parts])
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1])


def broken_copy(path, tmp_path):
    """The backup with one more order line, whose product does not exist: signed, checksums right, unusable."""
    members, manifest = hostile.read(path)
    hostile.add_row(members, manifest, "order_lines", lambda row: {**row, "id": b"888888", "product_id": b"999999"})
    return hostile.write(tmp_path / "broken-backup.zip", members, manifest, SIGNING_KEY)


def rows_backup(app, parts="database"):
    """A backup of the rows (as from PostgreSQL): an orphan row in it only shows when it loads. A SQLite store's
    own backups hold its database file, whose checks find such a row at once (test below)."""
    from app.operations import archives

    with app.app_context():
        return Path(archives._create("backup", parts, "test", None, database_file=False))


def test_an_orphan_row_in_a_database_file_is_named_by_the_check(filled, admin, runner, run_worker, tmp_path):
    app = filled
    broken = broken_copy(make_backup(runner, "database"), tmp_path)
    before = live_store(app)
    with open(broken, "rb") as upload:
        assert post(admin, f"{WIZARD}/restore/upload", {"archive": (upload, "friday.zip")}).status_code == 200
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "failed"
    assert "Table order_lines, the row with id 888888: product_id 999999 refers to no row of products" in \
        inspection.error
    assert live_store(app) == before


def review_of(admin, inspection):
    return admin.get(f"{WIZARD}/runs/{inspection.id}", headers=HTMX).data


def check_kept(app, admin, run_worker, name):
    assert post(admin, f"{WIZARD}/restore/kept", {"name": name}).status_code == 200
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "finished", inspection.error
    return inspection


def archive_row(html, name):
    match = re.search(rb'<tr data-archive="%s">.*?</tr>' % re.escape(name.encode()), html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


@pytest.fixture
def filled(app):
    fill_store(app)
    return app


def test_verify_on_a_kept_backup_shows_the_checks_and_marks_the_row(filled, admin, runner, run_worker):
    app = filled
    name = make_backup(runner).name
    page = admin.get(f"{WIZARD}/").data
    row = archive_row(page, name)
    assert b'data-action="verify"' in row and b"verified by restore" not in row

    started = post(admin, f"{WIZARD}/archives/{name}/verify")
    assert started.status_code == 200 and b'data-kind="trial"' in started.data and b"Verify" in started.data
    trial = latest(app, "trial")
    assert trial.options == {"trial": "verify", "source": "kept", "name": name, "original_name": name}
    run_worker()

    card = admin.get(f"{WIZARD}/runs/{trial.id}", headers=HTMX)
    assert card.status_code == 286, card.data  # final: the card stops polling
    text = card.data.decode()
    assert "Verify passed" in text and "Tried in a scratch store:" in text
    assert "Brass desk lamp" in text  # the storefront was opened against the restored copy
    # Out of band, the kept archives: the row says so without a reload.
    assert 'id="archives" hx-swap-oob="true"' in text
    assert b"verified by restore at" in archive_row(card.data, name)
    row = archive_row(admin.get(f"{WIZARD}/").data, name)
    assert re.search(rb"verified by restore at \d{4}-\d\d-\d\d \d\d:\d\d UTC", row), row
    with app.app_context():
        assert db.session.scalars(db.select(ArchiveTrial.kind).where(ArchiveTrial.archive_name == name)).all() == ["verify"]


def test_an_export_cannot_be_verified_or_staged(filled, admin, runner):
    export = runner.invoke(args=["backup", "export"]).output.strip().splitlines()[-1].rsplit("/", 1)[-1]
    assert export.endswith(".zip")
    assert post(admin, f"{WIZARD}/archives/{export}/verify").status_code == 400
    assert post(admin, f"{WIZARD}/archives/{export}/staging").status_code == 400
    assert count(filled, "trial") == 0 and count(filled, "staging") == 0


def test_try_it_first_names_the_broken_table_and_row_and_leaves_the_live_store_alone(filled, admin, runner,
                                                                                       run_worker, tmp_path):
    app = filled
    broken = broken_copy(rows_backup(app), tmp_path)
    with open(broken, "rb") as upload:
        assert post(admin, f"{WIZARD}/restore/upload", {"archive": (upload, "friday.zip")}).status_code == 200
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "finished", inspection.error  # signed and complete: the check cannot see it
    review = review_of(admin, inspection)
    assert b'data-action="try-first"' in review and b"data-verified" not in review
    assert is_checked(review, "try_first", "y")  # never tried: try it first by default
    before = live_store(app)

    tried = post(admin, f"{WIZARD}/restore/{inspection.id}/try", {"parts": "database", "accounts": "keep"})
    assert tried.status_code == 200 and b'data-kind="trial"' in tried.data and b"Dry run" in tried.data
    trial = latest(app, "trial")
    assert trial.parts == "database"
    assert trial.options == {"trial": "dry run", "source": "upload", "name": inspection.options["name"],
                             "original_name": "friday.zip", "keep_accounts": True, "inspection": inspection.id}
    run_worker()

    trial = latest(app, "trial")
    assert trial.state == "failed"
    review = review_of(admin, inspection).decode()  # the review shows its dry run, before anything is confirmed
    card = re.search(r'<div class="run run-failed" id="run-%s".*?</div>\s*</div>' % trial.id, review, re.S)
    assert card, review
    failure = card.group(0)
    assert "Dry run failed" in failure and "order_lines" in failure and "888888" in failure and "999999" in failure
    assert "The live store was not touched; it was never in maintenance." in failure
    assert "friday.zip" in failure and inspection.options["name"] not in failure  # the user's file name
    assert is_checked(review.encode(), "try_first", "y")  # it failed: still not verified
    assert live_store(app) == before
    with app.app_context():
        trial_row = db.session.scalars(db.select(ArchiveTrial)).one()
        assert (trial_row.kind, trial_row.ok, trial_row.table_name) == ("dry run", False, "order_lines")
        assert "888888" in (trial_row.row_label or "")

    # Confirmed with "try it first": the restore stops at its dry run, before lock, safety backup, maintenance.
    backups_before = sorted(p.name for p in Path(app.config["BACKUPS_DIR"]).glob("*.zip"))
    confirmed = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm",
                     {"parts": "database", "store_name": "demo-store", "safety": "y", "try_first": "y",
                      "accounts": "archive", "archive_sha256": inspection.result["sha256"]})
    assert confirmed.status_code == 200, confirmed.data
    restore = latest(app, "restore")
    assert restore.options["try_first"] is True
    run_worker()
    restore = latest(app, "restore")
    assert restore.state == "failed" and "order_lines" in restore.error
    card = admin.get(f"{WIZARD}/runs/{restore.id}", headers=HTMX).data
    assert b"data-untouched" in card and b"never in maintenance" in card
    assert live_store(app) == before
    assert sorted(p.name for p in Path(app.config["BACKUPS_DIR"]).glob("*.zip")) == backups_before  # no safety backup


def test_try_first_is_suggested_until_the_archive_passed_a_trial(filled, admin, runner, run_worker):
    app = filled
    name = make_backup(runner, "database").name
    inspection = check_kept(app, admin, run_worker, name)
    assert inspection.result["verified_at"] is None
    review = review_of(admin, inspection)
    assert is_checked(review, "try_first", "y") and b"data-verified" not in review

    assert post(admin, f"{WIZARD}/restore/{inspection.id}/try", {"parts": "database"}).status_code == 200
    run_worker()
    trial = latest(app, "trial")
    assert trial.state == "finished", trial.error
    review = review_of(admin, inspection).decode()
    assert "Dry run passed" in review and "Tried in a scratch store:" in review
    assert re.search(r"<ul class=\"checks\" data-checks><li>.+</li>", review)
    assert "Verified by restore at" in review
    assert not is_checked(review.encode(), "try_first", "y")  # passed: the box is no longer ticked

    with app.app_context():  # made after the backup: the restore will take it away
        db.session.add(Product(sku="LATER", name="Added later", slug="added-later", price=Decimal("1.00")))
        db.session.commit()
    again = check_kept(app, admin, run_worker, name)  # a new check of the same archive knows it passed
    assert again.result["verified_at"] is not None
    review = review_of(admin, again)
    assert f"Verified by restore at {again.result['verified_at']} UTC".encode() in review
    assert not is_checked(review, "try_first", "y")

    # Ticked anyway, the restore tries it first, passes, and restores.
    confirmed = post(admin, f"{WIZARD}/restore/{again.id}/confirm",
                     {"parts": "database", "store_name": "demo-store", "try_first": "y", "accounts": "archive",
                      "archive_sha256": again.result["sha256"]})
    assert confirmed.status_code == 200, confirmed.data
    run_worker()
    restore = latest(app, "restore")
    assert restore.state == "finished", restore.error
    assert restore.options["try_first"] is True
    with app.app_context():
        assert db.session.scalars(db.select(Product.sku)).all() == ["LAMP-1"]
        assert db.session.scalars(db.select(AuditEvent.detail).where(AuditEvent.action == "restore.finish")).one() \
            .endswith("tried first")


def test_a_confirmation_without_the_box_does_not_try_first(filled, admin, runner, run_worker):
    app = filled
    inspection = check_kept(app, admin, run_worker, make_backup(runner, "database").name)
    confirmed = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm",
                     {"parts": "database", "store_name": "demo-store", "accounts": "archive",
                      "archive_sha256": inspection.result["sha256"]})
    assert confirmed.status_code == 200
    assert latest(app, "restore").options["try_first"] is False


def test_try_it_first_needs_a_finished_check_and_a_part_the_archive_holds(filled, admin, runner, run_worker):
    app = filled
    inspection = check_kept(app, admin, run_worker, make_backup(runner, "database").name)
    assert post(admin, f"{WIZARD}/restore/{inspection.id}/try", {"parts": "files"}).status_code == 400
    assert post(admin, f"{WIZARD}/restore/nope/try", {"parts": "database"}).status_code == 404
    assert count(app, "trial") == 0
    # Without its CSRF token the request is refused before anything starts.
    bare = admin.post(f"{WIZARD}/restore/{inspection.id}/try", data={"parts": "database"}, headers=HTMX)
    assert bare.status_code == 400 and count(app, "trial") == 0


def staging_routes(app):
    with app.test_request_context():
        return [app.url_for("staging.page"), app.url_for("staging.page", rest="products/brass-desk-lamp")]


def test_staging_copy_is_served_read_only_and_can_be_discarded(filled, admin, runner, run_worker, outside_client,
                                                               as_role):
    app = filled
    assert "staging" in app.blueprints, "register app.staging_site's blueprint and its gate in the factory"
    missing = admin.get("/staging/")
    assert missing.status_code == 404 and b"There is no staging copy" in missing.data
    name = make_backup(runner).name
    assert b'data-action="staging"' in archive_row(admin.get(f"{WIZARD}/").data, name)

    started = post(admin, f"{WIZARD}/archives/{name}/staging")
    assert started.status_code == 200 and b"Staging copy" in started.data
    run_worker()
    run = latest(app, "staging")
    assert run.state == "finished", run.error
    card = admin.get(f"{WIZARD}/runs/{run.id}", headers=HTMX).data.decode()
    assert "Staging copy ready" in card and "payments.api_key" in card
    assert 'id="staging" hx-swap-oob="true"' in card  # the page's staging section appears without a reload

    page = admin.get(f"{WIZARD}/").data.decode()
    section = re.search(r'<section class="staging".*?</section>', page, re.S).group(0)
    assert f"Staging copy of <code>{name}</code>, restored" in section
    assert 'href="/staging/"' in section and "<code>payments.api_key</code>" in section
    assert 'data-action="discard-staging"' in section

    home = admin.get("/staging/")
    assert home.status_code == 200 and b"Brass desk lamp" in home.data
    assert home.headers["X-Robots-Tag"] == "noindex" and "Set-Cookie" not in home.headers
    assert home.headers["Content-Type"].startswith("text/html")
    assert b'href="/staging/products/brass-desk-lamp"' in home.data  # links stay inside the copy
    product = admin.get("/staging/products/brass-desk-lamp")
    assert product.status_code == 200 and b"Brass desk lamp" in product.data
    assert admin.get("/staging/static/css/app.css").status_code == 200
    for path in ("/staging/login", "/staging/admin/", "/staging/admin/tools/backup/", "/staging/platform/login",
                 "/staging/no-such-page"):
        assert admin.get(path).status_code == 404, path
    assert admin.post("/staging/", data={"csrf_token": admin.csrf}).status_code == 405

    # The copy is separate: a change in the live store does not show there.
    with app.app_context():
        db.session.execute(sa.update(Product).values(name="Renamed live lamp"))
        db.session.commit()
    assert b"Brass desk lamp" in admin.get("/staging/").data

    # Only super-admins at maintainer networks.
    as_role("super_admin", outside_client)
    for url in staging_routes(app):
        denied = outside_client.get(url)
        assert denied.status_code == 403 and b"203.0.113.7" in denied.data and b"lamp" not in denied.data.lower()
    vendor = app.test_client()
    vendor.environ_base["REMOTE_ADDR"] = "198.51.100.20"
    as_role("vendor", vendor)
    for url in staging_routes(app):
        assert vendor.get(url).status_code == 403
    anonymous = app.test_client()
    anonymous.environ_base["REMOTE_ADDR"] = "198.51.100.21"
    assert anonymous.get("/staging/").headers["Location"].startswith("/login")

    discarded = post(admin, f"{WIZARD}/staging/discard")
    assert discarded.status_code == 200 and b"data-staging-discarded" in discarded.data
    gone = admin.get("/staging/")
    assert gone.status_code == 404 and b"There is no staging copy" in gone.data
    assert b'<section class="staging"' not in admin.get(f"{WIZARD}/").data
    with app.app_context():
        actions = db.session.scalars(db.select(AuditEvent.action).where(AuditEvent.action.like("staging.%"))).all()
        assert "staging.create" in actions and "staging.discard" in actions


def test_the_new_actions_are_maintainer_only_and_need_csrf(filled, admin, runner, outside_client, as_role):
    app = filled
    name = make_backup(runner).name
    urls = [f"{WIZARD}/archives/{name}/verify", f"{WIZARD}/archives/{name}/staging", f"{WIZARD}/staging/discard"]
    for url in urls:
        refused = admin.post(url, headers=HTMX)  # no token
        assert refused.status_code == 400, url
    as_role("super_admin", outside_client)
    outside_client.csrf = csrf_token_from(outside_client.get(f"{WIZARD}/"))
    assert b'data-action="verify"' not in outside_client.get(f"{WIZARD}/").data
    for url in urls:
        assert post(outside_client, url).status_code == 403, url
    assert count(app, "trial") == 0 and count(app, "staging") == 0


def test_the_page_after_a_reload_shows_the_last_verify(filled, admin, runner, run_worker):
    app = filled
    name = make_backup(runner, "database").name
    post(admin, f"{WIZARD}/archives/{name}/verify")
    run_worker()
    trial = latest(app, "trial")
    page = admin.get(f"{WIZARD}/").data.decode()
    area = re.search(r'<div class="archive-status" id="archive-status".*?</div>', page, re.S).group(0)
    assert f"/runs/{trial.id}" in area
    assert isinstance(datetime.strptime(
        re.search(rb"verified by restore at (\S+ \S+) UTC", archive_row(page.encode(), name)).group(1).decode(),
        "%Y-%m-%d %H:%M"), datetime)


OLDER_ARCHIVE = Path(__file__).resolve().parent.parent / "data" / "demo-store-backup-both-20261126T003212626536Z-af0e2f.zip"


def test_an_older_archive_says_it_will_be_upgraded_and_its_dry_run_brings_it_forward(filled, admin, run_worker):
    app = filled
    with open(OLDER_ARCHIVE, "rb") as upload:
        assert post(admin, f"{WIZARD}/restore/upload", {"archive": (upload, "before-slugs.zip")}).status_code == 200
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "finished", inspection.error
    plan = inspection.result["upgrade"]
    assert plan["from"] == "2c3096c25b7f" and plan["app_version"] == "0.2.0"
    sentence = (f"Made by app version 0.2.0 at schema 2c3096c25b7f; it will be upgraded to {plan['to']} "
                f"({plan['migrations']} migration{'s' if plan['migrations'] != 1 else ''}).")
    review = review_of(admin, inspection).decode()
    upgrade = re.search(r'<p class="callout upgrade" data-upgrade>.*?</p>', review, re.S)
    assert upgrade and sentence in upgrade.group(0)
    assert review.index("data-upgrade") < review.index("<dl class=\"summary\">")  # above the facts, not below

    assert post(admin, f"{WIZARD}/restore/{inspection.id}/try", {"parts": "both"}).status_code == 200
    run_worker()
    trial = latest(app, "trial")
    assert trial.state == "finished", trial.error
    card = admin.get(f"{WIZARD}/runs/{trial.id}", headers=HTMX).data.decode()
    assert "Dry run passed" in card and sentence in card and "brought forward from schema 2c3096c25b7f" in card
