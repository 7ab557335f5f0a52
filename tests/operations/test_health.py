"""Health, rule by rule, from real schedules, real run rows, real archives and a real failed job."""
import uuid
from pathlib import Path
from datetime import datetime, timedelta, timezone

import pytest

from app.extensions import db
from app.models import ArchiveTrial, BackupSchedule, JobRun
from app.models.store import utcnow
from app.operations.health import ago, duration, store_health
from tests.helpers import start

NOW = datetime.now(timezone.utc)


@pytest.fixture(autouse=True)
def roomy_disk(app):
    """The disk rule stays out of the way unless a test asks for it."""
    app.config["BACKUPS_DISK_WARN_PERCENT"] = 100


def make_backup(runner, parts="database", drill=True):
    """A backup, drilled (restored into a scratch store and checked) unless ``drill`` is False."""
    result = runner.invoke(args=["backup", "create", "--parts", parts])
    assert result.exit_code == 0, result.output
    path = result.output.strip().splitlines()[-1]
    if drill:
        drilled = runner.invoke(args=["backup", "drill"])
        assert drilled.exit_code == 0, drilled.output
    return path


def add_schedule(app, *, created=timedelta(days=30), enabled=True, **fields):
    """A daily schedule (every 24 h) set up ``created`` ago."""
    values = dict(parts="database", frequency="daily", at_time="03:00", created_by="test", enabled=enabled,
                  created_at=utcnow() - created)
    values.update(fields)
    with app.app_context():
        schedule = BackupSchedule(**values)
        db.session.add(schedule)
        db.session.commit()
        return schedule.id


def add_run(app, schedule_id, state, ended_ago, error=None):
    """A scheduled run's row, as the scheduler and the worker leave it."""
    ended = utcnow() - ended_ago
    with app.app_context():
        db.session.add(JobRun(id=uuid.uuid4().hex, kind="backup", parts="database", state=state, started_by="scheduler",
                              schedule_id=schedule_id, slot=ended - timedelta(minutes=1), created_at=ended,
                              started_at=ended, ended_at=ended, error=error))
        db.session.commit()


def health(app, later=timedelta(0)):
    with app.app_context():
        return store_health(now=datetime.now(timezone.utc) + later)


def test_green_names_the_last_backup_its_age_and_parts(app, runner):
    schedule = add_schedule(app)
    make_backup(runner, "database")
    add_run(app, schedule, "finished", timedelta(0))
    result = health(app, later=timedelta(hours=3, minutes=5))
    assert result.level == "green"
    assert result.headline == "Last backup 3 h ago (database, verified when written)"
    assert result.reasons == []
    assert result.last_backup["parts"] == "database" and result.last_backup["ago"] == "3 h ago"
    assert result.schedules == 1 and result.disk["archives"] == 1
    data = result.as_dict()
    assert data["level"] == "green" and data["store"] == app.config["STORE_NAME"]
    assert data["last_backup"]["at"].endswith("Z") and data["checked_at"].endswith("Z")


def test_amber_when_the_last_scheduled_success_is_older_than_one_and_a_half_intervals(app, runner):
    schedule = add_schedule(app)
    make_backup(runner)
    add_run(app, schedule, "finished", timedelta(hours=37))
    result = health(app)
    assert result.level == "amber" and result.headline == "Scheduled backup is late"
    assert "last succeeded 37 h ago" in result.reasons[0] and "every 24 h" in result.reasons[0]
    add_run(app, schedule, "finished", timedelta(hours=1))
    assert health(app).level == "green"


def test_amber_when_the_backups_disk_is_fuller_than_the_warning(app, runner):
    schedule = add_schedule(app)
    make_backup(runner)
    add_run(app, schedule, "finished", timedelta(hours=1))
    app.config["BACKUPS_DISK_WARN_PERCENT"] = 0
    result = health(app)
    assert result.level == "amber" and result.headline.startswith("Backups disk ") and "% full" in result.headline
    assert "warning above 0 %" in result.reasons[0] and result.disk["percent_used"] > 0


@pytest.mark.parametrize("state, headline", [("failed", "Last scheduled backup failed"),
                                             ("lost", "Last scheduled backup did not finish"),
                                             ("skipped", "Last scheduled backup was skipped")])
def test_red_when_the_last_scheduled_run_did_not_succeed(app, runner, state, headline):
    schedule = add_schedule(app)
    make_backup(runner)
    add_run(app, schedule, "finished", timedelta(hours=5))
    add_run(app, schedule, state, timedelta(hours=1), error="Skipped: a restore was in progress.")
    result = health(app)
    assert result.level == "red" and result.headline == headline
    assert "a restore was in progress" in result.reasons[0] and "1 h ago" in result.reasons[0]
    add_run(app, schedule, "finished", timedelta(minutes=1))  # a later success clears it
    assert health(app).level == "green"


def test_red_when_a_real_scheduled_backup_job_failed(app, run_worker):
    schedule = add_schedule(app, created=timedelta(hours=1))
    app.config.update(BACKUP_FREE_MARGIN_BYTES=10**18, RETENTION_ENABLED=False)  # no disk has that much room
    with app.app_context():
        run = start("backup", parts="database")
        run.schedule_id = schedule
        db.session.commit()
    run_worker()
    result = health(app)
    assert result.level == "red" and result.headline == "Last scheduled backup failed"
    assert "Not enough disk space" in result.reasons[0]
    assert result.last_backup is None


def test_red_when_nothing_succeeded_for_two_intervals(app, runner):
    schedule = add_schedule(app)
    make_backup(runner)
    add_run(app, schedule, "finished", timedelta(hours=49))
    result = health(app)
    assert result.level == "red" and result.headline == "No successful scheduled backup for 2 days"
    assert "two runs or more were missed" in result.reasons[0]


def test_a_new_schedule_is_not_late_until_its_intervals_have_passed(app):
    add_schedule(app, created=timedelta(hours=2))
    fresh = health(app)  # not late, but the store has no backup at all: amber, saying when the first comes
    assert fresh.level == "amber" and fresh.headline == "No backup yet"
    assert "the first scheduled one starts at" in fresh.reasons[0]
    assert health(app, later=timedelta(hours=35)).level == "amber"
    late = health(app, later=timedelta(hours=47))
    assert late.level == "red" and "has not succeeded since it was set up" in late.reasons[0]


def test_without_a_schedule_a_recent_backup_is_green_with_a_note(app, runner):
    add_schedule(app, enabled=False)  # a schedule that is off is no schedule
    make_backup(runner, "both")
    result = health(app, later=timedelta(days=2, hours=1))
    assert result.level == "green" and result.schedules == 0
    assert result.headline == "Last backup 2 days ago (both, verified when written)"
    assert result.reasons == ["No backup schedule is set: backups are made only when someone starts one."]

    stale = health(app, later=timedelta(days=8))
    assert stale.level == "amber" and stale.headline == "No backup schedule"
    assert "The last backup was 8 days ago" in stale.reasons[0]


def test_without_a_schedule_or_any_backup_it_is_amber(app):
    result = health(app)
    assert result.level == "amber" and result.headline == "No backup schedule"
    assert "No backup was ever made" in result.reasons[0] and result.last_backup is None


def test_red_comes_first_and_every_reason_is_kept(app, runner):
    schedule = add_schedule(app)
    make_backup(runner)
    add_run(app, schedule, "finished", timedelta(hours=5))
    add_run(app, schedule, "failed", timedelta(hours=1), error="The disk is full.")
    app.config["BACKUPS_DISK_WARN_PERCENT"] = 0
    result = health(app)
    assert result.level == "red" and len(result.reasons) == 2
    assert "The disk is full." in result.reasons[0] and "% full" in result.reasons[1]


@pytest.mark.parametrize("span, words", [(timedelta(seconds=20), "just now"), (timedelta(minutes=12), "12 min ago"),
                                         (timedelta(hours=3, minutes=59), "3 h ago"), (timedelta(hours=47), "47 h ago"),
                                         (timedelta(days=2, hours=5), "2 days ago")])
def test_times_in_words(span, words):
    assert ago(NOW - span, NOW) == words
    assert ago((NOW - span).replace(tzinfo=None), NOW) == words  # database times are naive UTC
    assert duration(timedelta(hours=36)) == "36 h"


def test_a_newest_backup_never_restored_is_amber_until_a_drill_passes(app, runner):
    schedule = add_schedule(app)
    name = Path(make_backup(runner, "both", drill=False)).name
    add_run(app, schedule, "finished", timedelta(0))
    result = health(app)
    assert result.level == "amber" and result.headline == "Newest backup not verified by a restore"
    assert name in result.reasons[0]
    assert runner.invoke(args=["backup", "drill"]).exit_code == 0
    result = health(app)
    assert result.level == "green" and not any("restore" in reason for reason in result.reasons)


def test_a_failed_drill_of_the_newest_backup_is_red_with_its_reason(app, runner):
    schedule = add_schedule(app)
    name = Path(make_backup(runner, "database", drill=False)).name
    add_run(app, schedule, "finished", timedelta(0))
    with app.app_context():
        db.session.add(ArchiveTrial(archive_name=name, kind="drill", ok=False, started_by="scheduler",
                                    reason="Table order_lines, the row with id 7: product_id 99 refers to no row of "
                                           "products.", seconds=1.0))
        db.session.commit()
    result = health(app)
    assert result.level == "red" and result.headline == "Restore drill failed"
    assert "order_lines" in result.reasons[0] and name in result.reasons[0]


def test_a_newer_backup_not_drilled_yet_is_fine_while_an_older_one_passed_this_week(app, runner):
    schedule = add_schedule(app)
    make_backup(runner, "database")  # drilled
    newest = Path(make_backup(runner, "database", drill=False)).name
    add_run(app, schedule, "finished", timedelta(0))
    result = health(app)
    assert result.level == "green"
    assert any("has not been restored yet" in reason for reason in result.reasons)
    assert newest not in " ".join(result.reasons)
