"""Schedules: slot math over simulated months (with daylight saving in Paris), what a schedule refuses, and
the scheduler's tick with an injected clock against the real platform database, Redis and RQ worker."""
import email
from datetime import datetime, timedelta, timezone
from email import policy

import pytest
from aiosmtpd.controller import Controller
from redis import Redis

from app.extensions import db
from app.models import ArchiveCopy, AuditEvent, BackupSchedule, JobRun
from app.operations import archives, offsite, runs, schedules
from app.operations.procedures import COMMAND_LINE, Caller
from app.operations.schedules import ScheduleError, interval_of, latest_slot, next_slot
from app.queue import get_queue
from tests.helpers import SUPER_ADMIN, free_port

UTC = timezone.utc
PARIS = "Europe/Paris"


@pytest.fixture(autouse=True)
def no_drills(app):
    """The weekly drill the tick also starts is tested in tests/operations/test_trials.py; here it would add
    a run to every tick after a backup."""
    app.config["DRILL_EVERY_DAYS"] = 0


def utc(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def schedule(frequency, **fields):
    return BackupSchedule(parts="both", frequency=frequency, **fields)


def slots_between(s, start, end, tz):
    found, moment = [], utc(start)
    while (moment := next_slot(s, moment, tz)) is not None and moment < utc(end):
        found.append(f"{moment:%Y-%m-%dT%H:%MZ}")
    return found


# --- Slot math -----------------------------------------------------------------------------------

def test_daily_slots_over_a_month_with_the_clocks_going_forward_in_paris():
    # 31 March 2024: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist and runs at 03:00 (01:00 UTC).
    daily = schedule("daily", at_time="02:30")
    expected = ([f"2024-03-{day:02d}T01:30Z" for day in range(1, 31)]   # 02:30 CET
                + ["2024-03-31T01:00Z"]                                   # 03:00 CEST, the first valid time
                + ["2024-04-01T00:30Z", "2024-04-02T00:30Z"])            # 02:30 CEST
    assert slots_between(daily, "2024-02-29T23:59Z", "2024-04-02T12:00Z", PARIS) == expected


def test_daily_slots_when_the_clocks_go_back_run_once_the_first_time():
    # 27 October 2024: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice: the first (00:30 UTC) runs.
    daily = schedule("daily", at_time="02:30")
    expected = ([f"2024-10-{day:02d}T00:30Z" for day in range(1, 28)]
                + [f"2024-10-{day:02d}T01:30Z" for day in range(28, 32)])
    assert slots_between(daily, "2024-09-30T12:00Z", "2024-11-01T00:00Z", PARIS) == expected


def test_weekly_slots_over_a_month():
    weekly = schedule("weekly", at_time="03:30", weekdays="0,3")  # Monday and Thursday
    assert slots_between(weekly, "2024-03-01T00:00Z", "2024-04-05T00:00Z", PARIS) == [
        "2024-03-04T02:30Z", "2024-03-07T02:30Z", "2024-03-11T02:30Z", "2024-03-14T02:30Z",
        "2024-03-18T02:30Z", "2024-03-21T02:30Z", "2024-03-25T02:30Z", "2024-03-28T02:30Z",
        "2024-04-01T01:30Z", "2024-04-04T01:30Z",  # summer time from 31 March
    ]


def test_hourly_slots_are_on_the_store_clock_from_midnight():
    six = schedule("hourly", every_hours=6)
    assert slots_between(six, "2024-03-30T00:00Z", "2024-04-01T12:00Z", PARIS) == [
        "2024-03-30T05:00Z", "2024-03-30T11:00Z", "2024-03-30T17:00Z",  # 06:00, 12:00, 18:00 CET
        "2024-03-30T23:00Z",                                            # 31 March 00:00 CET
        "2024-03-31T04:00Z", "2024-03-31T10:00Z", "2024-03-31T16:00Z",  # 06:00, 12:00, 18:00 CEST
        "2024-03-31T22:00Z", "2024-04-01T04:00Z", "2024-04-01T10:00Z",
    ]
    eight = schedule("hourly", every_hours=8)
    assert slots_between(eight, "2024-05-01T00:00Z", "2024-05-03T00:00Z", "UTC") == [
        "2024-05-01T08:00Z", "2024-05-01T16:00Z", "2024-05-02T00:00Z", "2024-05-02T08:00Z", "2024-05-02T16:00Z",
    ]


def test_every_hour_across_both_changes_of_the_clocks():
    hourly = schedule("hourly", every_hours=1)
    # Going forward: 02:00 does not exist, so it runs at 03:00 with the 03:00 slot, once: 23 runs that day.
    spring = slots_between(hourly, "2024-03-30T22:59Z", "2024-03-31T22:00Z", PARIS)
    assert spring[:4] == ["2024-03-30T23:00Z", "2024-03-31T00:00Z", "2024-03-31T01:00Z", "2024-03-31T02:00Z"]
    assert len(spring) == 23
    # Going back: 02:00 happens twice and runs the first time; the next run is 03:00 CET: 24 runs that day.
    autumn = slots_between(hourly, "2024-10-26T21:59Z", "2024-10-27T23:00Z", PARIS)
    assert autumn[:5] == ["2024-10-26T22:00Z", "2024-10-26T23:00Z", "2024-10-27T00:00Z", "2024-10-27T02:00Z",
                          "2024-10-27T03:00Z"]
    assert len(autumn) == 24


def test_latest_slot_is_the_slot_at_or_before_a_moment():
    daily = schedule("daily", at_time="03:30")
    assert latest_slot(daily, utc("2024-06-10T01:30Z"), PARIS) == utc("2024-06-10T01:30Z")
    assert latest_slot(daily, utc("2024-06-10T01:29Z"), PARIS) == utc("2024-06-09T01:30Z")
    weekly = schedule("weekly", at_time="03:30", weekdays="6")  # Sundays
    assert latest_slot(weekly, utc("2024-06-15T23:00Z"), PARIS) == utc("2024-06-09T01:30Z")


@pytest.mark.parametrize("fields, interval", [
    ({"frequency": "hourly", "every_hours": 6}, timedelta(hours=6)),
    ({"frequency": "daily", "at_time": "03:30"}, timedelta(days=1)),
    ({"frequency": "weekly", "at_time": "03:30", "weekdays": "2"}, timedelta(days=7)),
    ({"frequency": "weekly", "at_time": "03:30", "weekdays": "0,3"}, timedelta(days=4)),
    ({"frequency": "weekly", "at_time": "03:30", "weekdays": "0,1,2,3,4,5,6"}, timedelta(days=1)),
])
def test_interval_is_the_longest_gap_between_slots(fields, interval):
    assert interval_of(BackupSchedule(parts="both", **fields)) == interval


def test_describe_says_when_in_store_time_and_utc():
    assert schedules.describe(schedule("daily", at_time="03:30"), PARIS, utc("2024-01-10T12:00Z")) == \
        "Daily at 03:30 Europe/Paris (02:30 UTC)"
    assert schedules.describe(schedule("daily", at_time="03:30"), PARIS, utc("2024-07-10T12:00Z")) == \
        "Daily at 03:30 Europe/Paris (01:30 UTC)"
    assert schedules.describe(schedule("weekly", at_time="03:30", weekdays="0,3"), "UTC") == \
        "Weekly on Mon, Thu at 03:30 UTC"
    assert schedules.describe(schedule("hourly", every_hours=6), PARIS) == "Every 6 hours from 00:00 Europe/Paris"
    assert schedules.describe(schedule("hourly", every_hours=1), PARIS) == "Every hour"


# --- Schedules in the platform database ------------------------------------------------------------

@pytest.mark.parametrize("parts, frequency, fields, message", [
    ("everything", "daily", {"at_time": "03:30"}, "Choose what to back up: database, files, both."),
    ("both", "monthly", {"at_time": "03:30"}, "Choose how often: every N hours, daily or weekly."),
    ("both", "daily", {}, "Choose a time of day, as HH:MM (for example 03:30)."),
    ("both", "daily", {"at_time": "25:00"}, "'25:00' is not a time of day; write it as HH:MM, from 00:00 to 23:59."),
    ("both", "daily", {"at_time": "3h30"}, "'3h30' is not a time of day; write it as HH:MM"),
    ("both", "daily", {"at_time": "03:30", "weekdays": "mon"}, "A daily schedule runs every day; choose weekly"),
    ("both", "daily", {"at_time": "03:30", "every_hours": 6}, "A daily schedule takes a time of day, not a number"),
    ("both", "weekly", {"at_time": "03:30"}, "Choose at least one day of the week."),
    ("both", "weekly", {"at_time": "03:30", "weekdays": "mon,someday"},
     "'someday' is not a day of the week; use Mon, Tue, … Sun (or 0 … 6, Monday = 0)."),
    ("both", "weekly", {"at_time": "03:30", "weekdays": [7]}, "7 is not a day of the week"),
    ("both", "hourly", {"every_hours": 5},
     "Every 5 hours is not possible: choose 1, 2, 3, 4, 6, 8, 12 or 24, so that the backups fall at the same times"),
    ("both", "hourly", {"every_hours": 0}, "Every 0 hours is not possible"),
    ("both", "hourly", {"every_hours": 48}, "Every 48 hours is not possible"),
    ("both", "hourly", {}, "Choose how many hours apart: 1, 2, 3, 4, 6, 8, 12 or 24."),
    ("both", "hourly", {"every_hours": 6, "at_time": "03:30"}, "A schedule every N hours takes no time and no days"),
])
def test_invalid_schedules_are_refused_with_a_clear_message(app, parts, frequency, fields, message):
    with app.app_context():
        with pytest.raises(ScheduleError) as refused:
            schedules.add_schedule(parts, frequency, caller=SUPER_ADMIN, **fields)
        assert db.session.scalar(db.select(db.func.count()).select_from(BackupSchedule)) == 0
    assert str(refused.value).startswith(message)


def test_an_unknown_store_time_zone_is_named():
    with pytest.raises(ScheduleError, match="'Mars/Olympus' is not a time zone; set STORE_TIMEZONE to a name like"):
        next_slot(schedule("daily", at_time="03:30"), utc("2024-05-01T00:00Z"), "Mars/Olympus")


def test_add_list_enable_disable_remove_are_audited(app):
    with app.app_context():
        daily = schedules.add_schedule("database", "daily", at_time="3:30", caller=SUPER_ADMIN)
        weekly = schedules.add_schedule("both", "weekly", at_time="04:00", weekdays="thu, Monday", caller=SUPER_ADMIN)
        assert (daily.at_time, weekly.weekdays) == ("03:30", "0,3")
        first, second = daily.id, weekly.id
        assert [s.id for s in schedules.list_schedules()] == [first, second]
        schedules.set_enabled(second, False, SUPER_ADMIN)
        assert schedules.next_run_at(weekly) is None
        schedules.set_enabled(second, True, SUPER_ADMIN)
        assert schedules.next_run_at(weekly) > datetime.now(UTC)
        schedules.remove_schedule(first, SUPER_ADMIN)
        with pytest.raises(ScheduleError, match=f"There is no schedule {first}."):
            schedules.remove_schedule(first, SUPER_ADMIN)
        events = db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [(e.action, e.target) for e in events] == [
        ("backup.schedule.add", f"schedule {first}"), ("backup.schedule.add", f"schedule {second}"),
        ("backup.schedule.disable", f"schedule {second}"), ("backup.schedule.enable", f"schedule {second}"),
        ("backup.schedule.remove", f"schedule {first}"),
    ]
    assert events[0].actor == SUPER_ADMIN.actor and events[0].detail == "database: Daily at 03:30 UTC"


def test_a_store_has_at_most_twenty_schedules(app):
    with app.app_context():
        for hour in range(schedules.MAX_SCHEDULES):
            schedules.add_schedule("database", "daily", at_time=f"{hour:02d}:00", caller=SUPER_ADMIN)
        with pytest.raises(ScheduleError, match="at most 20 schedules; remove one first"):
            schedules.add_schedule("database", "daily", at_time="23:00", caller=SUPER_ADMIN)


# --- The tick, with an injected clock ------------------------------------------------------------

def add(app, created, **fields):
    """A schedule as if saved at ``created`` (the simulated clock's start)."""
    with app.app_context():
        s = schedules.add_schedule("database", caller=SUPER_ADMIN, **fields)
        s.created_at = utc(created).replace(tzinfo=None)
        db.session.commit()
        return s.id


def runs_of(app, schedule_id):
    with app.app_context():
        found = db.session.scalars(db.select(JobRun).where(JobRun.schedule_id == schedule_id)
                                   .order_by(JobRun.slot)).all()
        db.session.expunge_all()
        return found


def tick(app, at):
    with app.app_context():
        return schedules.tick(utc(at) if isinstance(at, str) else at)


def test_a_simulated_month_of_hourly_ticks_makes_thirty_backups_each_at_its_slot(app, run_worker):
    """October 2024 in Paris, clocks going back on the 27th: a daily 03:30 backup, a tick every hour, a real
    worker running each queued backup. Exactly 30 runs, each for its slot, each backup made."""
    app.config["STORE_TIMEZONE"] = PARIS
    schedule_id = add(app, "2024-10-01T00:00Z", frequency="daily", at_time="03:30")
    start = utc("2024-10-01T00:00Z")
    for hour in range(30 * 24):
        report = tick(app, start + timedelta(hours=hour))
        assert not (report.waiting or report.skipped or report.failed or report.already)
        if report.started:
            run_worker()
    made = runs_of(app, schedule_id)
    expected = ([f"2024-10-{day:02d}T01:30Z" for day in range(1, 27)]     # 03:30 CEST
                + [f"2024-10-{day:02d}T02:30Z" for day in range(27, 31)])  # 03:30 CET (clocks back at 03:00)
    assert [f"{r.slot:%Y-%m-%dT%H:%MZ}" for r in made] == expected
    assert [r.id for r in made] == [f"sched-{schedule_id}-{s[:4]}{s[5:7]}{s[8:10]}T{s[11:13]}{s[14:16]}Z"
                                    for s in expected]
    assert {(r.state, r.kind, r.parts, r.started_by, r.attempts) for r in made} == \
        {("finished", "backup", "database", "scheduler", 1)}
    with app.app_context():
        kept = {a.name for a in archives.list_archives() if a.kind == "backup"}
        assert {r.archive_name for r in made} == kept and len(kept) == 30
        assert {a.created_by for a in archives.list_archives()} == {"scheduler"}
        assert db.session.get(BackupSchedule, schedule_id).last_slot == utc("2024-10-30T02:30Z").replace(tzinfo=None)


def test_after_downtime_the_missed_slot_runs_once_not_once_per_missed_slot(app, run_worker):
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    assert tick(app, "2024-05-01T04:00Z").started == [f"sched-{schedule_id}-20240501T0330Z"]
    run_worker()
    # Everything was down from day 1 to day 5: the ticks of days 2, 3 and 4 never happened.
    report = tick(app, "2024-05-05T09:00Z")
    assert report.started == [f"sched-{schedule_id}-20240505T0330Z"]
    run_worker()
    assert not tick(app, "2024-05-05T09:01Z")  # nothing more to do
    made = runs_of(app, schedule_id)
    assert [(r.id, r.state) for r in made] == [(f"sched-{schedule_id}-20240501T0330Z", "finished"),
                                               (f"sched-{schedule_id}-20240505T0330Z", "finished")]


def test_a_new_schedule_does_not_run_a_slot_from_before_it_existed(app):
    schedule_id = add(app, "2024-05-01T12:00Z", frequency="hourly", every_hours=24)
    assert not tick(app, "2024-05-01T23:59Z")
    assert tick(app, "2024-05-02T00:00Z").started == [f"sched-{schedule_id}-20240502T0000Z"]


def test_a_slot_is_started_once_even_when_last_slot_did_not_move(app):
    """A scheduler killed between recording the run and moving last_slot tries the same run id again: the
    primary key refuses it and nothing starts twice; last_slot then moves."""
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    assert tick(app, "2024-05-01T04:00Z").started
    with app.app_context():
        db.session.get(BackupSchedule, schedule_id).last_slot = None
        db.session.commit()
    again = tick(app, "2024-05-01T04:01Z")
    assert again.already == [f"sched-{schedule_id}-20240501T0330Z"] and not again.started
    assert len(runs_of(app, schedule_id)) == 1 and len(get_queue(app)) == 1


@pytest.fixture
def inbox(app):
    """A real SMTP server (aiosmtpd) that keeps what it receives."""
    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(email.message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=controller.port, NOTIFY_EMAIL="owner@test.example")
    yield received
    controller.stop()


@pytest.fixture
def restore_running(app):
    """A restore holding the store's lock, with a live heartbeat, as a worker running one would."""
    with app.app_context():
        db.session.add(JobRun(id="restore-run", kind="restore", parts="both", state="started",
                              started_by="user:ann@test.example"))
        db.session.commit()

    class Restore:
        def __enter__(self):
            self.context = app.app_context()
            self.context.push()
            self.holding = runs.holding("restore-run", "restore")
            self.holding.__enter__()

        def __exit__(self, *exc):
            self.holding.__exit__(None, None, None)
            self.context.pop()

    return Restore()


def test_a_busy_store_makes_the_run_wait_retry_then_skip_visibly(app, restore_running, inbox):
    app.config.update(SCHEDULE_RETRIES=3, SCHEDULE_RETRY_SECONDS=300)
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    run_id = f"sched-{schedule_id}-20240501T0330Z"
    with restore_running:
        assert tick(app, "2024-05-01T03:30Z").waiting == [run_id]
        assert not tick(app, "2024-05-01T03:34Z")                       # not before 03:35
        assert tick(app, "2024-05-01T03:35Z").waiting == [run_id]
        [run] = runs_of(app, schedule_id)
        assert (run.state, run.attempts, run.not_before) == ("waiting", 2, datetime(2024, 5, 1, 3, 40))
        assert tick(app, "2024-05-01T03:40Z").skipped == [run_id]
    [run] = runs_of(app, schedule_id)
    assert run.state == "skipped" and run.ended_at is not None
    assert run.error == ("Skipped: a restore started by ann@test.example was in progress "
                         "(tried 3 times over 10 minutes).")
    assert not tick(app, "2024-05-01T04:00Z")  # skipped is final: never tried again
    with app.app_context():
        event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "backup.skipped")).one()
        assert (event.outcome, event.actor, event.target) == ("failure", "scheduler", "database")
        assert run.error in event.detail
        assert runs.reconcile(db.session.get(JobRun, run_id)).state == "skipped"
    [message] = inbox
    assert "Scheduled backup was skipped" in message["Subject"] and run.error in message.get_content()
    assert len(get_queue(app)) == 0


def test_a_run_that_waited_goes_on_when_the_store_frees_up_in_time(app, restore_running, run_worker):
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    run_id = f"sched-{schedule_id}-20240501T0330Z"
    with restore_running:
        assert tick(app, "2024-05-01T03:31Z").waiting == [run_id]
        with app.app_context():  # while it waits, the page and a contender's lock check leave it alone
            assert runs.reconcile(db.session.get(JobRun, run_id)).state == "waiting"
    assert tick(app, "2024-05-01T03:36Z").started == [run_id]
    run_worker()
    [run] = runs_of(app, schedule_id)
    assert (run.state, run.attempts) == ("finished", 2)
    with app.app_context():
        assert archives.archive_path(run.archive_name).is_file()


def test_removing_a_schedule_skips_its_waiting_run(app, restore_running):
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    with restore_running:
        assert tick(app, "2024-05-01T03:31Z").waiting
    with app.app_context():
        schedules.remove_schedule(schedule_id, SUPER_ADMIN)
    assert not tick(app, "2024-05-01T03:40Z")
    [run] = runs_of(app, schedule_id)
    assert (run.state, run.error) == ("skipped", "Skipped: its schedule was removed.")


def test_run_now_is_a_normal_start_refused_while_busy(app, restore_running, run_worker):
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    with restore_running:
        with app.app_context():
            with pytest.raises(runs.RunRefused, match="a restore started by ann@test.example is still running"):
                schedules.run_now(schedule_id, SUPER_ADMIN)
    with app.app_context():
        run = schedules.run_now(schedule_id, Caller("user:bob@test.example", "198.51.100.10"))
        run_id = run.id
    run_worker()
    [run] = runs_of(app, schedule_id)
    assert (run.id, run.state, run.slot, run.started_by) == (run_id, "finished", None, "user:bob@test.example")


# --- The CLI ---------------------------------------------------------------------------------------

def test_schedule_commands(app, runner, run_worker):
    added = runner.invoke(args=["backup", "schedule", "add", "--parts", "database", "--daily", "03:30"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("Added schedule 1: database, Daily at 03:30 UTC; next run at ")
    weekly = runner.invoke(args=["backup", "schedule", "add", "--weekly", "mon,thu", "--at", "04:00", "--disabled"])
    assert weekly.exit_code == 0 and "Added schedule 2: both, Weekly on Mon, Thu at 04:00 UTC; turned off." in \
        weekly.output
    hourly = runner.invoke(args=["backup", "schedule", "add", "--parts", "files", "--every-hours", "6"])
    assert hourly.exit_code == 0 and "Every 6 hours from 00:00 UTC" in hourly.output

    listing = runner.invoke(args=["backup", "schedule", "list"]).output.splitlines()
    assert listing[0].startswith("1\tdatabase\tDaily at 03:30 UTC\tnext run at ")
    assert listing[1] == "2\tboth\tWeekly on Mon, Thu at 04:00 UTC\toff"
    assert listing[2].startswith("3\tfiles\tEvery 6 hours from 00:00 UTC\tnext run at ")

    for args, message in [
        (["--every-hours", "5"], "Error: Every 5 hours is not possible"),
        (["--daily", "03:30", "--every-hours", "6"], "Error: say when, with exactly one of"),
        (["--at", "03:30"], "Error: say when"),
        (["--daily", "03:30", "--at", "04:00"], "Error: --at is the time of a weekly schedule"),
        (["--weekly", "funday", "--at", "04:00"], "Error: 'funday' is not a day of the week"),
    ]:
        refused = runner.invoke(args=["backup", "schedule", "add", *args])
        assert refused.exit_code != 0 and refused.output.startswith(message), (args, refused.output)

    assert runner.invoke(args=["backup", "schedule", "enable", "2"]).output == "Schedule 2 is on.\n"
    run = runner.invoke(args=["backup", "schedule", "run", "1"])
    assert run.exit_code == 0 and run.output.startswith("Queued run ") and "backup of the database" in run.output
    busy = runner.invoke(args=["backup", "schedule", "run", "3"])
    assert busy.exit_code == 1 and "is still running" in busy.output
    run_worker()
    with app.app_context():
        finished = db.session.scalars(db.select(JobRun).where(JobRun.schedule_id == 1)).one()
        assert finished.state == "finished" and finished.started_by == "cli"

    removed = runner.invoke(args=["backup", "schedule", "remove", "2"])
    assert removed.exit_code == 0 and removed.output == "Removed schedule 2.\n"
    missing = runner.invoke(args=["backup", "schedule", "remove", "2"])
    assert missing.exit_code == 1 and missing.output == "Error: There is no schedule 2.\n"
    assert [line.split("\t")[0] for line in runner.invoke(args=["backup", "schedule", "list"]).output.splitlines()] \
        == ["1", "3"]
    with app.app_context():
        actions = [e.action for e in db.session.scalars(db.select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("backup.schedule.add") == 3 and "backup.schedule.remove" in actions


def test_scheduler_once_at_a_given_time(app, runner, redis_url):
    schedule_id = add(app, "2024-05-01T00:00Z", frequency="daily", at_time="03:30")
    first = runner.invoke(args=["backup", "scheduler", "--once", "--at", "2024-05-01T05:30:00+02:00"])
    assert first.exit_code == 0 and first.output == f"started: sched-{schedule_id}-20240501T0330Z\n"
    again = runner.invoke(args=["backup", "scheduler", "--at", "2024-05-01T03:45:00"])  # --at implies --once
    assert again.exit_code == 0 and again.output == "nothing due\n"
    bad = runner.invoke(args=["backup", "scheduler", "--at", "tomorrow"])
    assert bad.exit_code == 2 and "is not an ISO-8601 time" in bad.output
    assert len(get_queue(app)) == 1
    assert Redis.from_url(redis_url).exists(f"store:{app.config['STORE_NAME']}:operation")


def test_scheduler_commands_need_the_workers_redis(app, runner):
    app.config["REDIS_URL"] = None
    refused = runner.invoke(args=["backup", "scheduler", "--once"])
    assert refused.exit_code == 1 and "needs their Redis: set REDIS_URL" in refused.output


def test_the_tick_queues_a_copy_run_for_each_archive_whose_copy_is_due(app, runner, s3_server, run_worker):
    """A failed off-site copy whose retry time came gets one copy run (for the workers), not two."""
    with app.app_context():
        offsite.add_destination("away", endpoint_url=s3_server.endpoint, bucket="no-such-bucket-here",
                                access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key,
                                caller=COMMAND_LINE)
    made = runner.invoke(args=["backup", "create", "--parts", "database"])  # queues a copy run
    assert made.exit_code == 0, made.output
    run_worker()  # the copy fails: there is no such bucket
    with app.app_context():
        row = db.session.scalars(db.select(ArchiveCopy)).one()
        assert row.state == "failed" and row.next_attempt_at is not None
        later = row.next_attempt_at.replace(tzinfo=timezone.utc) + timedelta(seconds=1)
        first = schedules.tick(later)
        second = schedules.tick(later)
        copies = db.session.scalars(db.select(JobRun).where(JobRun.kind == "copy", JobRun.started_by == "scheduler")).all()
        assert len(copies) == 1 and copies[0].id in first.started and copies[0].options["name"] == row.archive_name
        assert copies[0].id not in second.started
        assert schedules.tick(datetime.now(timezone.utc)).started == []  # not due yet: nothing
