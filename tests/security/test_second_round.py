"""Hardening, second round: each hole an attack run found, closed (and failing on the code before)."""
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.extensions import db
from app.models import AuditEvent, JobRun
from app.operations import incoming, retention
from tests.helpers import csrf_token_from

WIZARD = "/admin/tools/backup"



def post(client, url, data=None):
    return client.post(url, data={**(data or {}), "csrf_token": client.csrf}, headers={"HX-Request": "true"})


def events(app, action):
    with app.app_context():
        return db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action)).all()


def latest(app, kind):
    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == kind).order_by(JobRun.created_at.desc())).first()
        db.session.expunge(run)
        return run


def backup_of_another_store(app, runner):
    app.config["STORE_NAME"] = "other-store"
    try:
        return runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1]
    finally:
        app.config["STORE_NAME"] = "demo-store"


def test_another_stores_archive_needs_an_explicit_tick(app, admin, runner, run_worker):
    name = Path(backup_of_another_store(app, runner)).name
    post(admin, f"{WIZARD}/restore/kept", {"name": name})
    run_worker()
    inspection = latest(app, "inspect")
    assert inspection.state == "finished" and inspection.result["other_store"] == "other-store"
    review = admin.get(f"{WIZARD}/runs/{inspection.id}", headers={"HX-Request": "true"})
    assert b"data-other-store" in review.data and b"other-store" in review.data
    confirm = {"parts": "database", "store_name": "demo-store", "safety": "y", "archive_sha256": inspection.result["sha256"]}
    refused = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", confirm)
    assert refused.status_code == 422 and b"another store" in refused.data
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(JobRun).where(JobRun.kind == "restore")) == 0
    accepted = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", {**confirm, "other_store": "y"})
    assert accepted.status_code == 200
    run_worker()
    assert latest(app, "restore").state == "finished"


def test_the_cli_refuses_another_stores_archive_unless_told(app, runner):
    archive = backup_of_another_store(app, runner)
    refused = runner.invoke(args=["backup", "restore", archive, "--parts", "database", "--yes"])
    assert refused.exit_code == 1 and "is a backup of the store 'other-store'" in refused.output
    done = runner.invoke(args=["backup", "restore", archive, "--parts", "database", "--yes", "--from-other-store"])
    assert done.exit_code == 0, done.output


def test_one_confirmation_per_inspection(app, admin, as_role, runner, run_worker):
    name = Path(runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1]).name
    post(admin, f"{WIZARD}/restore/kept", {"name": name})
    run_worker()
    inspection = latest(app, "inspect")
    confirm = {"parts": "database", "store_name": "demo-store", "archive_sha256": inspection.result["sha256"]}
    assert post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", confirm).status_code == 200
    run_worker()
    as_role("super_admin", admin)  # the restore ended every session
    admin.csrf = csrf_token_from(admin.get(f"{WIZARD}/"))
    again = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", confirm)
    assert again.status_code == 409 and b"already confirmed" in again.data
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(JobRun).where(JobRun.kind == "restore")) == 1


def test_exports_are_rate_limited_per_user(app, admin, client, as_role, run_worker):
    app.config["EXPORTS_PER_HOUR"] = 2
    statuses = []
    for _ in range(3):
        statuses.append(post(admin, f"{WIZARD}/export").status_code)
        run_worker()
    assert statuses == [200, 200, 429]
    assert b"limit is 2" in post(admin, f"{WIZARD}/export").data
    assert latest(app, "export").state == "finished"


def test_one_export_at_a_time(app, admin):
    assert post(admin, f"{WIZARD}/export").status_code == 200
    second = post(admin, f"{WIZARD}/export")
    assert second.status_code == 409 and b"still running" in second.data


def test_exports_count_against_a_quota(app, admin, runner):
    runner.invoke(args=["backup", "export"])
    app.config["EXPORT_QUOTA_BYTES"] = 1
    refused = post(admin, f"{WIZARD}/export")
    assert refused.status_code == 429 and b"export quota" in refused.data


def test_exports_expire(app, runner):
    export = Path(runner.invoke(args=["backup", "export"]).output.strip().splitlines()[-1])
    backup = Path(runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1])
    with app.app_context():
        assert retention.expire_exports() == []
        later = datetime.now(timezone.utc) + timedelta(days=app.config["EXPORT_TTL_DAYS"], minutes=1)
        assert retention.expire_exports(now=later) == [export.name]
    assert not export.exists() and backup.exists()  # backups are never expired this way
    assert events(app, "archive.expire")[0].target == export.name


def test_uploads_are_removed_when_their_run_ends_and_on_a_timer(app, admin, runner, run_worker):
    backup = Path(runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1])
    with backup.open("rb") as archive:
        post(admin, f"{WIZARD}/restore/upload", {"archive": (archive, "mine.zip")})
    run_worker()
    incoming_dir = Path(app.config["BACKUPS_DIR"]) / incoming.INCOMING
    assert len(list(incoming_dir.glob("*.zip"))) == 1  # checked, waiting for the confirmation
    post(admin, f"{WIZARD}/restore/{latest(app, 'inspect').id}/confirm",
         {"parts": "database", "store_name": "demo-store", "archive_sha256": latest(app, "inspect").result["sha256"]})
    run_worker()
    assert latest(app, "restore").state == "finished"
    assert list(incoming_dir.glob("*.zip")) == []
    stale = incoming_dir / "0123456789abcdef01234567.zip"
    stale.write_bytes(b"left behind")
    os.utime(stale, (0, 0))
    with app.app_context():
        assert incoming.remove_stale() == 1
    assert not stale.exists()


def test_the_databases_are_created_private(app, tmp_path):
    for name in ("store.db", "platform.db"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


@pytest.mark.parametrize("who, path, data, action", [
    ("outside", "/backup", {"parts": "both"}, "access.network"),
    ("manager", "/export", {}, "access.role"),
    ("no-csrf", "/backup", {"parts": "both"}, "access.csrf"),
])
def test_denials_are_audited_but_a_flood_leaves_one_record(app, client, outside_client, as_role, who, path, data,
                                                           action):
    browser = outside_client if who == "outside" else client
    as_role({"outside": "super_admin", "manager": "manager", "no-csrf": "super_admin"}[who], browser)
    token = {} if who == "no-csrf" else {"csrf_token": csrf_token_from(browser.get("/admin/"))}
    for _ in range(20):
        response = browser.post(f"{WIZARD}{path}", data={**data, **token})
        assert response.status_code in (400, 403)
    recorded = events(app, action)
    assert len(recorded) == 1 and recorded[0].outcome == "denied"


def test_the_review_names_who_would_regain_access_and_keeping_accounts_restores_the_rest(app, admin, as_role, runner,
                                                                                         run_worker):
    from app.models import Product, User

    with app.app_context():
        db.session.add(Product(sku="BACK", name="Comes back", price=1))
        db.session.commit()
    archive = Path(runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1])
    with app.app_context():  # after the backup: one admin demoted, one manager removed, a password changed
        db.session.execute(db.delete(Product))
        users = {u.email: u for u in db.session.scalars(db.select(User))}
        users["admin@test.example"].role = "vendor"
        db.session.delete(users["manager@test.example"])
        users["vendor@test.example"].password_hash = "changed-since"
        db.session.commit()
    post(admin, f"{WIZARD}/restore/kept", {"name": archive.name})
    run_worker()
    inspection = latest(app, "inspect")
    privileges = inspection.result["privileges"]
    assert privileges["rises"] == ["admin@test.example would become admin (today: vendor)"]
    assert privileges["returns"] == ["manager@test.example (manager)"]
    assert privileges["password_changes"] == ["vendor@test.example"]
    assert privileges["restorer_stays_super_admin"] is True
    review = admin.get(f"{WIZARD}/runs/{inspection.id}", headers={"HX-Request": "true"})
    assert b"admin@test.example would become admin (today: vendor)" in review.data and b"data-returns" in review.data

    confirm = {"parts": "database", "store_name": "demo-store", "archive_sha256": inspection.result["sha256"]}
    unchosen = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", confirm)
    assert unchosen.status_code == 422 and b"give access back" in unchosen.data
    assert post(admin, f"{WIZARD}/restore/{inspection.id}/confirm", {**confirm, "accounts": "keep"}).status_code == 200
    run_worker()
    assert latest(app, "restore").state == "finished"
    with app.app_context():
        roles = {u.email: u.role for u in db.session.scalars(db.select(User))}
        assert roles["admin@test.example"] == "vendor" and "manager@test.example" not in roles
        assert db.session.scalar(db.select(Product.sku)) == "BACK"


@pytest.mark.parametrize("flags, admin_role", [(["--keep-accounts"], "vendor"), ([], "admin")])
def test_the_cli_can_keep_todays_accounts(app, runner, flags, admin_role):
    from app.models import User

    archive = runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1]
    with app.app_context():
        db.session.scalars(db.select(User).where(User.email == "admin@test.example")).one().role = "vendor"
        db.session.commit()
    done = runner.invoke(args=["backup", "restore", archive, "--parts", "database", "--yes", *flags])
    assert done.exit_code == 0, done.output
    with app.app_context():
        assert db.session.scalars(db.select(User.role).where(User.email == "admin@test.example")).one() == admin_role
