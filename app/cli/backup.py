"""flask backup ...: the same operations as the wizard, for operators and cron."""
import logging
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from app import audit
from app.operations import COMMAND_LINE, RunRefused, archives, run_backup, run_export, run_restore
from app.operations import schedules
from app.operations.procedures import run_retention
from app.queue import redis_for_command
from app.snapshot import SnapshotError
from app.snapshot.container import PARTS

backup_cli = AppGroup("backup", help="Export, back up, inspect and restore the store.")


def _progress():
    """Progress lines on stderr, only when a person is watching."""
    if not sys.stderr.isatty():
        return None

    def show(event):
        total = f"/{event.total}" if event.total else ""
        click.echo(f"\r{event.phase}: {event.done}{total} {event.unit} {event.message[:40]:<40}", err=True, nl=False)
        if event.phase == "done":
            click.echo("", err=True)

    return show


def _fail(error, code=1):
    click.echo(f"Error: {error}", err=True)
    sys.exit(code)


def _operation(procedure, *args, **kwargs):
    """Run one operation as the command line: Redis started for it is stopped afterwards, and a
    refusal or failure is one line on stderr (the procedure has audited it)."""
    try:
        with redis_for_command(current_app._get_current_object()):
            return procedure(*args, COMMAND_LINE, progress=_progress(), **kwargs)
    except (SnapshotError, RunRefused) as error:
        _fail(error)


@backup_cli.command("export")
def export_command():
    """Export the store's data (database only, secrets removed)."""
    click.echo(_operation(run_export))


@backup_cli.command("create")
@click.option("--parts", type=click.Choice(PARTS), default="both", show_default=True)
def create_command(parts):
    """Back up the database, the uploaded files, or both."""
    click.echo(_operation(run_backup, parts))


@backup_cli.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def inspect_command(file):
    """Check an archive completely and say what it holds."""
    try:
        s = archives.inspect(file, progress=_progress())
    except SnapshotError as error:
        _fail(error)
    click.echo(f"{s.name}: a valid {s.kind} of {s.store} ({s.parts}), made {s.created_at:%Y-%m-%d %H:%M:%S} UTC "
               f"by {s.created_by}, schema {s.schema_revision}, from {s.source_engine}")
    for table, rows in s.row_counts.items():
        click.echo(f"  {table}: {rows} rows")
    if s.parts != "database":
        click.echo(f"  files: {s.file_count} ({s.file_bytes} bytes)")


@backup_cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--parts", type=click.Choice(PARTS), required=True)
@click.option("--yes", is_flag=True, help="Confirm that the current store will be overwritten.")
@click.option("--no-safety-backup", is_flag=True, help="Skip the safety backup of the current store.")
@click.option("--from-other-store", is_flag=True, help="Accept an archive made by another store (moving stores).")
@click.option("--keep-accounts", is_flag=True, help="Keep today's users and roles (restore everything else).")
def restore_command(file, parts, yes, no_safety_backup, from_other_store, keep_accounts):
    """Replace the store's database and/or files with an archive's (destructive)."""
    if not yes:
        _fail("a restore overwrites the current store; pass --yes to confirm.", code=2)
    result = _operation(run_restore, file, parts, safety=not no_safety_backup, accept_other_store=from_other_store,
                        keep_accounts=keep_accounts)
    if result["safety_backup"]:
        click.echo(f"Safety backup of the store as it was: {result['safety_backup']}")
    click.echo(f"Restored {parts} from {file.name}.")


@backup_cli.command("list")
def list_command():
    """List kept archives, newest first."""
    for a in archives.list_archives():
        note = f"  UNREADABLE: {a.problem}" if a.problem else (f"  ({a.label})" if a.label else "")
        click.echo(f"{a.name}\t{a.kind}\t{a.parts}\t{a.size}\t{a.created_at}\t{a.created_by}{note}")


@backup_cli.command("delete")
@click.argument("name")
def delete_command(name):
    """Delete a kept archive by name."""
    try:
        archives.delete(name)
    except SnapshotError as error:
        audit.record("archive.delete", target=name, outcome="failure", detail=str(error), actor="cli")
        _fail(error)
    audit.record("archive.delete", target=name, actor="cli")
    click.echo(f"Deleted {name}.")


@backup_cli.command("prune")
@click.option("--dry-run", is_flag=True, help="Only say what the retention policy would delete.")
def prune_command(dry_run):
    """Apply the retention policy to kept backups now (it also runs after every backup)."""
    if dry_run:  # reads only: no lock, no Redis
        deletions = run_retention(COMMAND_LINE, dry_run=True)
    else:
        try:
            with redis_for_command(current_app._get_current_object()):
                deletions = run_retention(COMMAND_LINE)
        except RunRefused as error:
            _fail(error)
    verb = "would delete" if dry_run else "deleted"
    for name, rule in deletions:
        click.echo(f"{verb} {name}: {rule}")
    click.echo(f"{len(deletions)} backup{'s' if len(deletions) != 1 else ''} {verb}.")


@backup_cli.group("schedule")
def schedule_cli():
    """Backups that run by themselves (times in the store's time zone, STORE_TIMEZONE)."""


@schedule_cli.command("list")
def schedule_list_command():
    """List the schedules and when each runs next."""
    tz = schedules.store_zone()
    for s in schedules.list_schedules():
        upcoming = schedules.next_run_at(s)
        when = f"next run at {upcoming:%Y-%m-%d %H:%M} UTC" if upcoming else "off"
        click.echo(f"{s.id}\t{s.parts}\t{schedules.describe(s, tz)}\t{when}")


@schedule_cli.command("add")
@click.option("--parts", type=click.Choice(PARTS), default="both", show_default=True)
@click.option("--daily", "daily", metavar="HH:MM", help="Every day at this time.")
@click.option("--weekly", "weekly", metavar="DAYS", help="On these days (mon,thu or 0,3), with --at.")
@click.option("--at", "at_time", metavar="HH:MM", help="The time of a weekly schedule.")
@click.option("--every-hours", type=int, metavar="N", help="Every N hours from midnight (N divides 24).")
@click.option("--disabled", is_flag=True, help="Save it turned off.")
def schedule_add_command(parts, daily, weekly, at_time, every_hours, disabled):
    """Add a schedule: --daily HH:MM, --weekly DAYS --at HH:MM, or --every-hours N."""
    chosen = [flag for flag, value in (("--daily", daily), ("--weekly", weekly), ("--every-hours", every_hours))
              if value is not None]
    if len(chosen) != 1:
        _fail("say when, with exactly one of --daily HH:MM, --weekly DAYS --at HH:MM or --every-hours N.", code=2)
    if at_time is not None and weekly is None:
        _fail("--at is the time of a weekly schedule; for every day use --daily HH:MM.", code=2)
    frequency = "daily" if daily is not None else "weekly" if weekly is not None else "hourly"
    try:
        s = schedules.add_schedule(parts, frequency, every_hours=every_hours, at_time=daily or at_time,
                                   weekdays=weekly, enabled=not disabled, caller=COMMAND_LINE)
    except schedules.ScheduleError as error:
        _fail(error)
    upcoming = schedules.next_run_at(s)
    when = f"next run at {upcoming:%Y-%m-%d %H:%M} UTC" if upcoming else "turned off"
    click.echo(f"Added schedule {s.id}: {parts}, {schedules.describe(s, schedules.store_zone())}; {when}.")


@schedule_cli.command("remove")
@click.argument("schedule_id")
def schedule_remove_command(schedule_id):
    """Remove a schedule (kept backups stay)."""
    try:
        schedules.remove_schedule(schedule_id, COMMAND_LINE)
    except schedules.ScheduleError as error:
        _fail(error)
    click.echo(f"Removed schedule {schedule_id}.")


@schedule_cli.command("enable")
@click.argument("schedule_id")
def schedule_enable_command(schedule_id):
    """Turn a schedule on (from its next slot)."""
    _set_enabled(schedule_id, True)


@schedule_cli.command("disable")
@click.argument("schedule_id")
def schedule_disable_command(schedule_id):
    """Turn a schedule off."""
    _set_enabled(schedule_id, False)


def _set_enabled(schedule_id, enabled):
    try:
        schedules.set_enabled(schedule_id, enabled, COMMAND_LINE)
    except schedules.ScheduleError as error:
        _fail(error)
    click.echo(f"Schedule {schedule_id} is {'on' if enabled else 'off'}.")


@schedule_cli.command("run")
@click.argument("schedule_id")
def schedule_run_command(schedule_id):
    """Queue a backup of the schedule's parts now, for the workers (like the page's Run now)."""
    _need_workers_redis("flask backup create --parts PARTS")
    try:
        run = schedules.run_now(schedule_id, COMMAND_LINE)
    except (schedules.ScheduleError, RunRefused) as error:
        _fail(error)
    click.echo(f"Queued run {run.id}: a backup of the {run.parts}; a worker runs it.")


@backup_cli.command("scheduler")
@click.option("--once", is_flag=True, help="One tick, then exit (for cron or a test).")
@click.option("--at", "at", metavar="ISO-8601", help="Tick as if it were this time (implies --once; UTC unless "
                                                      "it has an offset), e.g. 2026-03-29T03:30:00+02:00.")
def scheduler_command(once, at):
    """Start due scheduled backups: every SCHEDULER_INTERVAL seconds, or --once."""
    _need_workers_redis("make demo, which runs its own scheduler")
    now = None
    if at is not None:
        try:
            now = datetime.fromisoformat(at)
        except ValueError:
            _fail(f"{at!r} is not an ISO-8601 time, e.g. 2026-03-29T03:30:00+02:00.", code=2)
    app = current_app._get_current_object()
    if once or at is not None:
        try:
            click.echo(str(schedules.tick(now)))
        except schedules.ScheduleError as error:
            _fail(error)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        schedules.run_scheduler(app, interval=app.config["SCHEDULER_INTERVAL"], stop_event=stop)
    except KeyboardInterrupt:
        pass


def _need_workers_redis(instead):
    """Queued runs need the workers' Redis; an embedded one started for a command would vanish with it."""
    if not current_app.config.get("REDIS_URL"):
        _fail(f"this queues backups for the workers, so it needs their Redis: set REDIS_URL (or use {instead}).")
