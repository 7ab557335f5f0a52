"""Backup schedules: when backups run by themselves, and the scheduler's one step, ``tick``.

A schedule backs up some parts every N hours, daily at a time, or weekly on some days at a time. Times
are the store's local time (STORE_TIMEZONE, a zoneinfo name), so "daily at 03:30" stays at 03:30 on the
store's clock across daylight saving changes. Slots are aware UTC datetimes here; the database keeps
naive UTC like every other platform timestamp.

Why our own tick rather than RQ's scheduler (``rq worker --with-scheduler``): RQ's scheduler only
delays single jobs, it has no recurring slots. Our slots live in the platform database, where the run's
primary key ("sched-<schedule id>-<slot>") makes each slot start exactly once however many scheduler
processes run and however often they restart, and the schedule's ``last_slot`` gives the missed-slot
rule: after downtime the latest missed slot runs once, not once per missed slot.
"""
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import update

from app import audit
from app.extensions import db
from app.models import BackupSchedule, JobRun
from app.models.store import utcnow
from app.operations import archives, offsite, runs
from app.operations.notify import notify_run
from app.operations.procedures import Caller
from app.snapshot.container import PARTS

UTC = timezone.utc
FREQUENCIES = ("hourly", "daily", "weekly")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_SCHEDULES = 20
SCHEDULER = Caller("scheduler")
WAITING, SKIPPED = runs.WAITING, runs.SKIPPED
log = logging.getLogger(__name__)


class ScheduleError(ValueError):
    """A schedule that cannot be saved, found or computed; the message says why, for the store owner."""


# --- Slot math: pure functions of a schedule's fields, a moment and a time zone ---------------------

def interval_of(schedule):
    """The longest time between two of the schedule's slots (what "late" is measured against): every_hours
    hours, a day, or for a weekly schedule the longest gap between its weekdays (one weekday: 7 days)."""
    if schedule.frequency == "hourly":
        return timedelta(hours=schedule.every_hours)
    if schedule.frequency == "daily":
        return timedelta(days=1)
    days = weekday_numbers(schedule)
    return timedelta(days=max((days[(i + 1) % len(days)] - day) % 7 or 7 for i, day in enumerate(days)))


def weekday_numbers(schedule):
    return [int(day) for day in (schedule.weekdays or "").split(",") if day.strip()]


def latest_slot(schedule, at, tz):
    """The schedule's latest slot at or before ``at`` (aware UTC), or None."""
    at, tz = _utc(at), _zone(tz)
    today = at.astimezone(tz).date()
    return max((slot for slot in _slots(schedule, today, range(-8, 1), tz) if slot <= at), default=None)


def next_slot(schedule, after, tz):
    """The schedule's first slot strictly after ``after`` (aware UTC), or None.

    Daily and weekly slots are at_time on the store's clock. Every-N-hours slots are at local midnight
    and every N hours after it on the store's clock (00:00, 06:00, 12:00, 18:00 for N = 6), which is why N
    must divide 24. On the day the clocks go forward a time that does not exist runs at the first valid
    moment after the gap (02:30 in Paris runs at 03:00); on the day they go back a time that happens
    twice runs once, the first time.
    """
    after, tz = _utc(after), _zone(tz)
    today = after.astimezone(tz).date()
    return min((slot for slot in _slots(schedule, today, range(0, 9), tz) if slot > after), default=None)


def _slots(schedule, today, days, tz):
    found = set()
    for offset in days:
        day = today + timedelta(days=offset)
        if schedule.frequency == "hourly":
            times = [(hour, 0) for hour in range(0, 24, schedule.every_hours)]
        elif schedule.frequency == "daily" or day.weekday() in weekday_numbers(schedule):
            times = [_hour_minute(schedule.at_time)]
        else:
            times = []
        found.update(local_moment(day, hour, minute, tz) for hour, minute in times)
    return found


def local_moment(day, hour, minute, tz):
    """The UTC instant of a wall-clock time of the store: the first of the two when the clocks go back,
    the first valid moment after the gap when it falls inside one."""
    wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    moment = wall.astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return moment
    # In a gap: the clocks jump at one instant between the two readings of the time; find it.
    before, after = sorted((moment, wall.replace(fold=1).astimezone(UTC)))
    offset_after = after.astimezone(tz).utcoffset()
    while before.astimezone(tz).utcoffset() != offset_after:
        before += timedelta(minutes=1)
    return before


def _hour_minute(text):
    hour, minute = text.split(":")
    return int(hour), int(minute)


def _utc(moment):
    """An aware UTC datetime; a naive one is taken as UTC (the database's timestamps are naive UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _naive(moment):
    return _utc(moment).replace(tzinfo=None)


def zone(name):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not a time zone; set STORE_TIMEZONE to a name like Europe/Paris.") from None


def _zone(tz):
    return tz if isinstance(tz, tzinfo) else zone(tz)


def store_zone():
    return zone(current_app.config["STORE_TIMEZONE"])


# --- What a person types, checked ------------------------------------------------------------------

def normalise_time(text):
    """'3:30' or '03:30' -> '03:30'; anything else is refused."""
    if not text:
        raise ScheduleError("Choose a time of day, as HH:MM (for example 03:30).")
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", str(text))
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ScheduleError(f"{text!r} is not a time of day; write it as HH:MM, from 00:00 to 23:59.")
    return f"{int(match[1]):02d}:{match[2]}"


def parse_weekdays(value):
    """Days of the week as sorted numbers (Monday = 0), from 'mon,thu', '0,3' or a list of either."""
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else list(value or [])
    days = set()
    for item in items:
        text = str(item).strip().lower()
        if not text:
            continue
        if text.isdigit() and int(text) < 7:
            days.add(int(text))
        elif len(text) >= 3 and any(name.startswith(text) for name in DAY_NAMES):
            days.add(next(i for i, name in enumerate(DAY_NAMES) if name.startswith(text)))
        else:
            raise ScheduleError(f"{item!r} is not a day of the week; use Mon, Tue, … Sun (or 0 … 6, Monday = 0).")
    if not days:
        raise ScheduleError("Choose at least one day of the week.")
    return sorted(days)


def _every_hours(value):
    if value is None:
        raise ScheduleError("Choose how many hours apart: 1, 2, 3, 4, 6, 8, 12 or 24.")
    try:
        hours = int(value)
    except (TypeError, ValueError):
        hours = None
    if hours is None or isinstance(value, bool) or not 1 <= hours <= 24 or 24 % hours:
        raise ScheduleError(f"Every {value} hours is not possible: choose 1, 2, 3, 4, 6, 8, 12 or 24, so that the "
                            "backups fall at the same times every day.")
    return hours


def _checked(parts, frequency, every_hours, at_time, weekdays):
    """(every_hours, at_time, weekdays) as stored, or a ScheduleError saying what is wrong."""
    if parts not in PARTS:
        raise ScheduleError(f"Choose what to back up: {', '.join(PARTS)}.")
    if frequency not in FREQUENCIES:
        raise ScheduleError("Choose how often: every N hours, daily or weekly.")
    if frequency == "hourly":
        if at_time or weekdays:
            raise ScheduleError("A schedule every N hours takes no time and no days: it runs at midnight and every "
                                "N hours after it.")
        return _every_hours(every_hours), None, None
    if every_hours is not None:
        raise ScheduleError(f"A {frequency} schedule takes a time of day, not a number of hours.")
    at_time = normalise_time(at_time)
    if frequency == "daily":
        if weekdays:
            raise ScheduleError("A daily schedule runs every day; choose weekly to pick the days.")
        return None, at_time, None
    return None, at_time, ",".join(str(day) for day in parse_weekdays(weekdays))


# --- Schedules in the platform database ------------------------------------------------------------

def add_schedule(parts, frequency, *, every_hours=None, at_time=None, weekdays=None, enabled=True, caller):
    """Save a new schedule; its first run is its first slot after now (never one that already passed)."""
    every_hours, at_time, weekdays = _checked(parts, frequency, every_hours, at_time, weekdays)
    if db.session.scalar(db.select(db.func.count()).select_from(BackupSchedule)) >= MAX_SCHEDULES:
        raise ScheduleError(f"A store can have at most {MAX_SCHEDULES} schedules; remove one first.")
    schedule = BackupSchedule(parts=parts, frequency=frequency, every_hours=every_hours, at_time=at_time,
                              weekdays=weekdays, enabled=bool(enabled), created_by=caller.actor)
    db.session.add(schedule)
    db.session.commit()
    _audit("backup.schedule.add", schedule.id, caller, _detail(schedule))
    return schedule


def remove_schedule(schedule_id, caller):
    """Delete a schedule; a run of it still waiting for the store's lock is skipped, one queued or running goes on."""
    schedule = get_schedule(schedule_id)
    detail = _detail(schedule)
    _skip_waiting(schedule.id, "its schedule was removed")
    db.session.delete(schedule)
    db.session.commit()
    _audit("backup.schedule.remove", schedule_id, caller, detail)


def set_enabled(schedule_id, enabled, caller):
    """Turn a schedule on or off. Turned on, it starts from its next slot: the slots that passed while it
    was off are not made up. Turned off, a run of it still waiting for the lock is skipped."""
    schedule = get_schedule(schedule_id)
    if schedule.enabled == bool(enabled):
        return schedule
    if enabled:
        passed = latest_slot(schedule, datetime.now(UTC), store_zone())
        if passed is not None and (schedule.last_slot is None or _utc(schedule.last_slot) < passed):
            schedule.last_slot = _naive(passed)
    else:
        _skip_waiting(schedule.id, "its schedule was turned off")
    schedule.enabled = bool(enabled)
    db.session.commit()
    _audit("backup.schedule.enable" if enabled else "backup.schedule.disable", schedule.id, caller, _detail(schedule))
    return schedule


def get_schedule(schedule_id):
    schedule = db.session.get(BackupSchedule, schedule_id) if str(schedule_id).isdigit() else None
    if schedule is None:
        raise ScheduleError(f"There is no schedule {schedule_id}.")
    return schedule


def list_schedules():
    return db.session.scalars(db.select(BackupSchedule).order_by(BackupSchedule.id)).all()


def describe(schedule, tz, now=None):
    """'Daily at 03:30 Europe/Paris (02:30 UTC)', 'Every 6 hours from 00:00 Europe/Paris',
    'Weekly on Mon, Thu at 03:30 …'. The UTC time is that of the next slot (it moves with daylight saving)."""
    tz = _zone(tz)
    name = getattr(tz, "key", None) or str(tz)
    if schedule.frequency == "hourly":
        n = schedule.every_hours
        return "Every hour" if n == 1 else f"Every {n} hours from 00:00 {name}"
    days = "" if schedule.frequency == "daily" else " on " + ", ".join(WEEKDAYS[d] for d in weekday_numbers(schedule))
    text = f"{schedule.frequency.capitalize()}{days} at {schedule.at_time} {name}"
    upcoming = next_slot(schedule, now or datetime.now(UTC), tz)
    if name != "UTC" and upcoming is not None:
        text += f" ({upcoming:%H:%M} UTC)"
    return text


def next_run_at(schedule, now=None):
    """When the schedule's next run starts (aware UTC), None while it is turned off."""
    if not schedule.enabled:
        return None
    return next_slot(schedule, now or datetime.now(UTC), store_zone())


def run_now(schedule_id, caller):
    """Start a backup of the schedule's parts now, like the Backup button (refused while another runs).
    Its run names the schedule but no slot: the schedule's own slots are unchanged."""
    schedule = get_schedule(schedule_id)
    return runs.start_run("backup", caller, parts=schedule.parts, schedule_id=schedule.id)


def _detail(schedule):
    return f"{schedule.parts}: {describe(schedule, store_zone())}" + ("" if schedule.enabled else "; turned off")


def _audit(action, schedule_id, caller, detail):
    """After the change is committed (the audit log writes in its own transaction)."""
    audit.record(action, target=f"schedule {schedule_id}", detail=detail, actor=caller.actor,
                 client_ip=caller.client_ip)


def _skip_waiting(schedule_id, reason):
    db.session.execute(update(JobRun).where(JobRun.schedule_id == schedule_id, JobRun.state == WAITING)
                       .values(state=SKIPPED, error=f"Skipped: {reason}.", ended_at=utcnow()))


# --- The scheduler's one step --------------------------------------------------------------------

@dataclass
class TickReport:
    """What one tick did, by run id."""

    started: list = field(default_factory=list)   # queued for a worker
    waiting: list = field(default_factory=list)   # found the store busy; will try again
    skipped: list = field(default_factory=list)   # found it busy on the last try
    already: list = field(default_factory=list)   # slots started before (another scheduler, a restart)
    failed: list = field(default_factory=list)    # the queue refused the job

    def __bool__(self):
        return any(vars(self).values())

    def __str__(self):
        return "; ".join(f"{what}: {', '.join(ids)}" for what, ids in vars(self).items() if ids) or "nothing due"


def slot_run_id(schedule_id, slot):
    return f"sched-{schedule_id}-{_utc(slot):%Y%m%dT%H%MZ}"


def tick(now=None):
    """One step of the scheduler at ``now`` (default: the clock; tests and ``--at`` pass their own).

    For each enabled schedule whose latest slot at or before now is newer than its last_slot (or its
    creation), one run is started for that slot: a slot missed while everything was down runs once, and
    the slots before it not at all. The run id comes from the slot, so a second scheduler process or a
    restart hits the primary key and starts nothing. The run is recorded before last_slot moves
    (compare-and-set on its old value), so a scheduler killed in between retries the same id next time.
    Then runs waiting for the store's lock whose time has come try it again.
    """
    now = _utc(now or datetime.now(UTC))
    tz = store_zone()
    report = TickReport()
    enabled = db.session.scalars(db.select(BackupSchedule).where(BackupSchedule.enabled.is_(True))
                                 .order_by(BackupSchedule.id)).all()
    for schedule in enabled:
        schedule_id, parts, previous = schedule.id, schedule.parts, schedule.last_slot
        slot = latest_slot(schedule, now, tz)
        if slot is None or slot <= _utc(previous or schedule.created_at):
            continue
        _start_slot(schedule_id, parts, slot, now, report)
        db.session.execute(update(BackupSchedule).where(
            BackupSchedule.id == schedule_id,
            BackupSchedule.last_slot.is_(None) if previous is None else BackupSchedule.last_slot == previous,
        ).values(last_slot=_naive(slot)))
        db.session.commit()
    due = db.session.scalars(db.select(JobRun).where(JobRun.state == WAITING, JobRun.not_before <= _naive(now))
                             .order_by(JobRun.created_at)).all()
    for run in due:
        _try_lock(run, now, report)
    _retry_copies(now, report)
    _drill_if_due(now, report)
    return report


def _drill_if_due(now, report):
    """Every DRILL_EVERY_DAYS (default 7; 0: never), the newest kept backup is restored into a scratch
    store and checked there (a trial run, kind "drill"). The run id comes from the period, so the drill
    runs once per period however many schedulers tick."""
    days = current_app.config.get("DRILL_EVERY_DAYS", 7)
    if not days:
        return
    newest = archives.newest_backup()
    if newest is None:
        return
    run_id = f"drill-{int(now.timestamp()) // (int(days) * 86400)}"
    try:
        report.started.append(runs.start_run("trial", SCHEDULER, run_id=run_id,
                                             options={"trial": "drill", "name": newest.name}).id)
    except runs.AlreadyStarted:
        pass
    except runs.RunRefused as refusal:
        report.failed.append(f"drill of {newest.name}: {refusal}")


def _retry_copies(now, report):
    """Off-site copies whose retry time came (or whose copy run was lost) get a copy run for the workers,
    one per archive, unless one is already queued or running for it: the tick itself never copies."""
    busy = {(run.options or {}).get("name") for run in db.session.scalars(
        db.select(JobRun).where(JobRun.kind == "copy", JobRun.state.in_(runs.ACTIVE_STATES)))}
    for name in sorted({name for name, _ in offsite.due_copies(now)} - busy):
        try:
            report.started.append(runs.start_run("copy", SCHEDULER, options={"name": name}).id)
        except runs.RunRefused as refusal:
            report.failed.append(f"copy of {name}: {refusal}")


def _start_slot(schedule_id, parts, slot, now, report):
    run_id = slot_run_id(schedule_id, slot)
    try:
        run = runs.record_run("backup", SCHEDULER, parts=parts, run_id=run_id, state=WAITING,
                              schedule_id=schedule_id, slot=_naive(slot), not_before=_naive(now))
    except runs.AlreadyStarted:
        report.already.append(run_id)
        return
    _try_lock(run, now, report)


def _try_lock(run, now, report):
    """One try of a waiting scheduled run at the store's lock: it is queued, waits SCHEDULE_RETRY_SECONDS
    more, or on the last of SCHEDULE_RETRIES tries is skipped, visibly (audited, owners notified)."""
    config = current_app.config
    tries, pause = config["SCHEDULE_RETRIES"], config["SCHEDULE_RETRY_SECONDS"]
    attempt = run.attempts + 1
    claimed = db.session.execute(  # one scheduler process per try, even with several running
        update(JobRun).where(JobRun.id == run.id, JobRun.state == WAITING, JobRun.attempts == run.attempts)
        .values(attempts=attempt, not_before=_naive(now + timedelta(seconds=pause)))).rowcount
    db.session.commit()
    if not claimed:
        return
    lock = runs.store_lock("backup")
    if lock.acquire(run.id, is_dead=runs.run_is_over):
        # Queued from now on (not_before: since when, on the real clock; see runs.reconcile).
        queued = db.session.execute(update(JobRun).where(JobRun.id == run.id, JobRun.state == WAITING)
                                    .values(state="queued", not_before=utcnow())).rowcount
        db.session.commit()
        if not queued:  # skipped meanwhile: its schedule was removed or turned off
            lock.release(run.id)
            return
        db.session.refresh(run)
        try:
            runs.enqueue_run(run, SCHEDULER, lock)
        except runs.RunRefused as refusal:  # the queue is down: the run failed, and the owners hear of it
            log.warning("Scheduled run %s not started: %s", run.id, refusal)
            report.failed.append(run.id)
            notify_run(run)
            return
        report.started.append(run.id)
    elif attempt >= tries:
        _skip(run, lock, attempt, pause)
        report.skipped.append(run.id)
    else:
        report.waiting.append(run.id)


def _skip(run, lock, attempts, pause):
    tried = "tried once" if attempts == 1 else f"tried {attempts} times over {_span((attempts - 1) * pause)}"
    error = f"Skipped: {runs.holder_description(lock)} was in progress ({tried})."
    skipped = db.session.execute(update(JobRun).where(JobRun.id == run.id, JobRun.state == WAITING)
                                 .values(state=SKIPPED, error=error, ended_at=utcnow())).rowcount
    db.session.commit()
    if not skipped:
        return
    db.session.refresh(run)
    audit.record("backup.skipped", target=run.parts, outcome="failure", detail=f"run {run.id}: {error}",
                 actor=SCHEDULER.actor)
    notify_run(run)


def _span(seconds):
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def run_scheduler(app, *, interval, stop_event, clock=lambda: datetime.now(UTC)):
    """Tick every ``interval`` seconds until ``stop_event`` is set, each tick in its own app context. A tick
    that fails (the database or Redis away for a moment) is logged, and the next one tries again: the
    scheduler never dies of one. (jobs.scheduler runs it as a process; `make demo` in a thread.)"""
    log.info("Scheduler started: a tick every %s s", interval)
    while not stop_event.is_set():
        try:
            with app.app_context():
                report = tick(clock())
            if report:
                log.info("Scheduler tick: %s", report)
        except Exception:
            log.exception("A scheduler tick failed; the next one is in %s s", interval)
        stop_event.wait(interval)
    log.info("Scheduler stopped")


__all__ = ["ScheduleError", "interval_of", "next_slot", "latest_slot", "add_schedule", "remove_schedule",
           "set_enabled", "get_schedule", "list_schedules", "describe", "next_run_at", "run_now", "tick",
           "TickReport", "run_scheduler", "parse_weekdays", "normalise_time", "slot_run_id"]
