"""The page's "Automatic backups": schedules, the retention policy (preview before saving), "Keep
forever" pins, the health badge, and the disk-space check before a backup."""
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from app.extensions import db
from app.models import ArchivePin, AuditEvent, BackupSchedule, JobRun, RetentionSetting
from app.operations import retention
from tests.helpers import MAINTAINER_IP, client_at, csrf_token_from
from tests.operations.test_retention import last_line, renamed

WIZARD = "/admin/tools/backup"
UTC = timezone.utc



def post(client, url, data=None):
    return client.post(url, data={**(data or {}), "csrf_token": client.csrf}, headers={"HX-Request": "true"})


def audit(app, action):
    with app.app_context():
        return db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action)).all()


POLICY = {"keep_all_days": "7", "daily_days": "16", "weekly_weeks": "8", "monthly_months": "4", "yearly_years": "2",
          "max_gb": "0", "export_days": "7"}


def test_a_schedule_added_on_the_page_shows_its_next_run(app, admin):
    response = post(admin, f"{WIZARD}/schedules", {"parts": "database", "frequency": "daily", "at_time": "03:30",
                                                    "every_hours": "6"})
    assert response.status_code == 200, response.data
    assert b"Schedule added." in response.data
    next_run = re.search(rb"<td data-next-run>Next run at (.*?)</td>", response.data)
    assert next_run and b"03:30 UTC" in next_run.group(1)
    with app.app_context():
        schedule = db.session.scalars(db.select(BackupSchedule)).one()
        assert (schedule.parts, schedule.frequency, schedule.at_time, schedule.enabled) == ("database", "daily", "03:30", True)
    page = admin.get(f"{WIZARD}/").data
    assert b"Next run at" in page
    title = re.search(rb"<title>(.*?)</title>", page, re.S).group(1)
    assert title.startswith(b"Backup & Restore") and b"<" not in title  # the title is only the title
    assert len(audit(app, "backup.schedule.add")) == 1
    # The health badge follows, out of band: a schedule is set, but there is no backup yet.
    assert b'id="health" hx-swap-oob="true"' in response.data and b"No backup yet" in response.data


def test_a_schedule_that_makes_no_sense_is_refused_and_nothing_is_added(app, admin):
    response = post(admin, f"{WIZARD}/schedules", {"parts": "both", "frequency": "weekly", "at_time": "03:30",
                                                    "every_hours": "6"})  # weekly, but no day chosen
    assert response.status_code == 422 and b"alert-error" in response.data
    bad_time = post(admin, f"{WIZARD}/schedules", {"parts": "both", "frequency": "daily", "at_time": "25:99",
                                                    "every_hours": "6"})
    assert bad_time.status_code == 422
    with app.app_context():
        assert db.session.scalars(db.select(BackupSchedule)).all() == []


def test_schedules_turn_off_and_on_and_are_removed(app, admin):
    post(admin, f"{WIZARD}/schedules", {"parts": "both", "frequency": "hourly", "every_hours": "6", "at_time": ""})
    with app.app_context():
        schedule_id = db.session.scalars(db.select(BackupSchedule.id)).one()
    off = post(admin, f"{WIZARD}/schedules/{schedule_id}/enabled/0")
    assert off.status_code == 200 and b"Next run at" not in off.data
    on = post(admin, f"{WIZARD}/schedules/{schedule_id}/enabled/1")
    assert b"Next run at" in on.data
    gone = post(admin, f"{WIZARD}/schedules/{schedule_id}/delete")
    assert gone.status_code == 200 and b"No schedule yet" in gone.data
    assert post(admin, f"{WIZARD}/schedules/{schedule_id}/delete").status_code == 404


def test_run_now_starts_a_backup_of_the_schedules_parts(app, admin, run_worker):
    post(admin, f"{WIZARD}/schedules", {"parts": "database", "frequency": "daily", "at_time": "03:30",
                                        "every_hours": "6"})
    with app.app_context():
        schedule_id = db.session.scalars(db.select(BackupSchedule.id)).one()
    started = post(admin, f"{WIZARD}/schedules/{schedule_id}/run")
    assert started.status_code == 200 and b'data-job-state="queued"' in started.data
    run_worker()
    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == "backup")).one()
        assert (run.state, run.parts) == ("finished", "database") and "-database-" in run.archive_name


def test_outside_the_maintainer_networks_there_is_no_automation(app, outside_client, as_role):
    as_role("super_admin", outside_client)
    page = outside_client.get(f"{WIZARD}/")
    assert page.status_code == 200 and b"Automatic backups" not in page.data
    token = csrf_token_from(page)
    for url in ("/schedules", "/retention", "/schedules/1/run", "/schedules/1/enabled/0", "/schedules/1/delete"):
        response = outside_client.post(f"{WIZARD}{url}", data={"csrf_token": token, **POLICY})
        assert response.status_code == 403, url
    with app.app_context():
        assert db.session.scalars(db.select(BackupSchedule)).all() == []
        assert db.session.get(RetentionSetting, 1) is None


def two_backups_of_one_old_day(runner):
    made = [Path(last_line(runner.invoke(args=["backup", "create", "--parts", "database"]))) for _ in range(3)]
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).replace(hour=3, minute=0, second=0, microsecond=0)
    older = renamed(made[0], ten_days_ago)
    newer = renamed(made[1], ten_days_ago + timedelta(hours=1))
    return older, newer, made[2]


def test_the_retention_preview_says_what_would_go_and_saves_nothing(app, admin, runner):
    older, newer, newest = two_backups_of_one_old_day(runner)
    # Keep every backup for 30 days: nothing would go.
    keep_longer = post(admin, f"{WIZARD}/retention", {**POLICY, "keep_all_days": "30", "action": "preview"})
    assert keep_longer.status_code == 200 and b"no kept backup would be deleted" in keep_longer.data
    assert b'data-action="save-retention"' in keep_longer.data  # saving is offered after the preview
    # Keep every backup 7 days, no daily period: both old ones would go.
    stricter = post(admin, f"{WIZARD}/retention", {**POLICY, "daily_days": "0", "weekly_weeks": "0",
                                                   "monthly_months": "0", "yearly_years": "0", "action": "preview"})
    preview = re.search(rb"<div class=\"preview\" data-retention-preview>(.*?)</div>", stricter.data, re.S).group(1)
    assert older.name.encode() in preview and newer.name.encode() in preview and newest.name.encode() not in preview
    with app.app_context():
        assert db.session.get(RetentionSetting, 1) is None
    assert older.exists() and newer.exists()


def test_a_saved_policy_is_the_one_retention_applies_and_is_audited(app, admin, runner):
    older, newer, newest = two_backups_of_one_old_day(runner)
    saved = post(admin, f"{WIZARD}/retention", {**POLICY, "keep_all_days": "30", "export_days": "3",
                                                "action": "save"})
    assert saved.status_code == 200 and b"Retention policy saved" in saved.data
    with app.app_context():
        assert retention.current_policy() == retention.Policy(30, 16, 8, 4, 2, 0, 3)
        assert retention.store_plan() == []
    assert "every backup for 30 days" in audit(app, "retention.policy")[0].detail
    done = runner.invoke(args=["backup", "prune"])
    assert done.exit_code == 0 and older.exists()


@pytest.mark.parametrize("field, value", [("keep_all_days", "0"), ("daily_days", "-1"), ("max_gb", "lots"),
                                          ("export_days", "")])
def test_a_policy_out_of_range_is_refused_and_nothing_is_saved(app, admin, field, value):
    response = post(admin, f"{WIZARD}/retention", {**POLICY, field: value, "action": "save"})
    assert response.status_code == 422 and b"alert-error" in response.data
    with app.app_context():
        assert db.session.get(RetentionSetting, 1) is None


def test_a_pinned_backup_is_kept_forever_by_retention(app, admin, runner):
    older, newer, newest = two_backups_of_one_old_day(runner)
    pinned = post(admin, f"{WIZARD}/archives/{older.name}/pin/1")
    assert pinned.status_code == 200 and b"kept forever" in pinned.data
    with app.app_context():
        assert db.session.get(ArchivePin, older.name).pinned_by == "user:super_admin@test.example"
    assert runner.invoke(args=["backup", "prune"]).exit_code == 0
    assert older.exists()  # the rule "a newer backup of the same day" would have taken it
    post(admin, f"{WIZARD}/archives/{older.name}/pin/0")
    assert runner.invoke(args=["backup", "prune"]).exit_code == 0
    assert not older.exists() and newer.exists()
    assert [e.target for e in audit(app, "archive.pin")] == [older.name]
    assert [e.target for e in audit(app, "archive.unpin")] == [older.name]


def test_an_export_cannot_be_pinned(app, admin, runner):
    export = Path(last_line(runner.invoke(args=["backup", "export"])))
    assert post(admin, f"{WIZARD}/archives/{export.name}/pin/1").status_code == 400
    assert post(admin, f"{WIZARD}/archives/no-such.zip/pin/1").status_code == 404


def test_the_health_badge_is_on_the_page_and_the_dashboard_for_super_admins_only(app, client, as_role, runner):
    runner.invoke(args=["backup", "create", "--parts", "both"])
    assert runner.invoke(args=["backup", "drill"]).exit_code == 0  # a backup never restored would be amber
    as_role("super_admin")
    page = client.get(f"{WIZARD}/").data
    assert b'data-health="green"' in page and b"Last backup" in page
    assert b'data-health="green"' in client.get("/admin/").data
    manager = as_role("manager", client_at(app, MAINTAINER_IP))
    assert b"data-health" not in manager.get("/admin/").data


def test_a_backup_the_disk_cannot_hold_is_refused_before_writing(app, runner):
    first = Path(last_line(runner.invoke(args=["backup", "create", "--parts", "database"])))
    app.config["BACKUP_FREE_MARGIN_BYTES"] = 10**18  # no disk keeps that much free
    refused = runner.invoke(args=["backup", "create", "--parts", "database"])
    assert refused.exit_code == 1
    assert "Not enough disk space for this backup" in refused.output and "is missing" in refused.output
    assert sorted(p.name for p in first.parent.glob("*")) == [first.name]  # nothing written, nothing deleted
    event = audit(app, "backup.finish")[-1]
    assert event.outcome == "failure" and "Not enough disk space" in event.detail
