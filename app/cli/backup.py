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
from app.operations import offsite, schedules, trials
from app.operations.procedures import run_retention, run_trial
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
@click.option("--format", "output", type=click.Choice(["archive", "csv"]), default="archive", show_default=True,
              help="archive: the portable export file; csv: also a ZIP of one CSV per table, for a spreadsheet.")
@click.option("--csv-dir", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="Where the CSV ZIP is written.")
def export_command(output, csv_dir):
    """Export the store's data (database only, secrets removed)."""
    path = _operation(run_export)
    if output == "csv":
        target = csv_dir / (path.name.removesuffix(".zip") + "-csv.zip")
        try:
            archives.export_as_csv(path.name, target)
        except SnapshotError as error:
            _fail(error)
        click.echo(target)
        return
    click.echo(path)


@backup_cli.command("create")
@click.option("--parts", type=click.Choice(PARTS), default="both", show_default=True)
def create_command(parts):
    """Back up the database, the uploaded files, or both (then copy it off-site)."""
    # Without the workers' Redis no copy run would ever be taken up: copy here instead.
    path = _operation(run_backup, parts, copy_inline=not current_app.config.get("REDIS_URL"))
    for copy in offsite.copies_of([path.name])[path.name]:
        click.echo(f"Off-site copy to {copy['destination']}: {_copy_state(copy)}", err=True)
    click.echo(path)


@backup_cli.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def inspect_command(file):
    """Check an archive completely and say what it holds."""
    try:
        manifest = archives.manifest_of(file)
        plan = trials.upgrade_plan(manifest)
        with trials.restorable(file, plan, _progress()) as today:  # an older archive: checked as brought forward
            s = archives.inspect(today, progress=_progress())
    except SnapshotError as error:
        _fail(error)
    click.echo(f"{file.name}: a valid {s.kind} of {s.store} ({s.parts}), made {manifest['created_at']} by "
               f"{manifest['created_by']}, schema {manifest['schema_revision']}, from {s.source_engine}")
    if plan is not None:
        click.echo(f"  {trials.upgrade_sentence(plan)}")
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
@click.option("--try-first", is_flag=True, help="Restore it into a scratch store and check it there first; stop if "
              "that fails.")
def restore_command(file, parts, yes, no_safety_backup, from_other_store, keep_accounts, try_first):
    """Replace the store's database and/or files with an archive's (destructive)."""
    if not yes:
        _fail("a restore overwrites the current store; pass --yes to confirm.", code=2)
    result = _operation(run_restore, file, parts, safety=not no_safety_backup, accept_other_store=from_other_store,
                        keep_accounts=keep_accounts, try_first=try_first)
    if result["safety_backup"]:
        click.echo(f"Safety backup of the store as it was: {result['safety_backup']}")
    click.echo(f"Restored {parts} from {file.name}.")


@backup_cli.command("drill")
@click.argument("name", required=False)
def drill_command(name):
    """Restore a kept backup (default: the newest) into a scratch store and check it: keys, unique values,
    row counts, every file's SHA-256, the storefront's pages. The live store is not touched; for cron."""
    if name is None:
        newest = archives.newest_backup()
        if newest is None:
            _fail("there is no kept backup to drill.")
        name = newest.name
    result = _operation(run_trial, "drill", name)
    for check in result["checks"]:
        click.echo(f"ok  {check}")
    click.echo(f"Drill passed: {name} restores and checks out ({result['seconds']} s).")


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


def _copy_state(copy):
    if copy["state"] == "verified":
        return f"verified at {copy['verified_at']:%Y-%m-%d %H:%M:%S} UTC"
    if copy["state"] == "failed":
        retry = copy["next_attempt_at"] and f"; tried again after {copy['next_attempt_at']:%Y-%m-%d %H:%M:%S} UTC"
        return f"failed: {copy['error']}{retry or ''}"
    return "queued for the workers" if copy["state"] == "pending" else "being copied by another process"


@backup_cli.group("destinations")
def destinations_cli():
    """Off-site copies: the S3-compatible buckets every backup is copied to (the platform team's)."""


@destinations_cli.command("list")
def destinations_list_command():
    """List the destinations (never their secret keys)."""
    for d in offsite.list_destinations():
        where = f"s3://{d['bucket']}/{d['prefix']}" + (f" at {d['endpoint_url']}")
        encryption = f"encrypted to {d['age_recipient']}" if d["encrypted"] else "not encrypted"
        lock = f"object lock {d['object_lock_days']} days" if d["object_lock_days"] else "no object lock"
        click.echo("\t".join([d["name"], "on" if d["enabled"] else "off", where, f"credentials {d['credentials']}",
                              encryption, lock, "checksums on" if d["checksums"] else "checksums off"]))


@destinations_cli.command("add")
@click.argument("name")
@click.option("--endpoint", required=True, metavar="URL", help="The S3 endpoint, e.g. https://s3.example.com.")
@click.option("--bucket", required=True)
@click.option("--prefix", default="", help="A folder in the bucket for this store's copies.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--credentials-env", metavar="PREFIX", help="Read PREFIX_ACCESS_KEY_ID and PREFIX_SECRET_ACCESS_KEY "
                                                           "from the environment (nothing secret is stored).")
@click.option("--access-key-id", metavar="KEY", help="Store the keys in the platform database instead.")
@click.option("--secret-access-key", metavar="SECRET", help="Asked for (hidden) when left out.")
@click.option("--no-checksums", is_flag=True, help="For providers that reject boto3's default S3 checksums.")
@click.option("--age-recipient", metavar="age1...", help="Encrypt copies to this age public key.")
@click.option("--object-lock-days", type=click.IntRange(0), default=0, show_default=True,
              help="Lock each copy (COMPLIANCE) this many days; the bucket needs object lock.")
@click.option("--disabled", is_flag=True, help="Save it turned off.")
def destinations_add_command(name, endpoint, bucket, prefix, region, credentials_env, access_key_id,
                             secret_access_key, no_checksums, age_recipient, object_lock_days, disabled):
    """Add a destination every backup is copied to."""
    if access_key_id and not secret_access_key and not credentials_env:
        secret_access_key = click.prompt("Secret access key", hide_input=True)
    try:
        destination = offsite.add_destination(
            name, endpoint_url=endpoint, bucket=bucket, prefix=prefix, region=region, credentials_env=credentials_env,
            access_key_id=access_key_id, secret_access_key=secret_access_key, checksums=not no_checksums,
            age_recipient=age_recipient, object_lock_days=object_lock_days, enabled=not disabled, caller=COMMAND_LINE)
    except offsite.OffsiteError as error:
        _fail(error)
    click.echo(f"Added destination {destination.name}.")
    problem = offsite.check_destination(destination)
    if problem:
        click.echo(f"Warning: {problem}. Copies to it will fail until that is fixed.", err=True)


@destinations_cli.command("remove")
@click.argument("name")
def destinations_remove_command(name):
    """Remove a destination (the copies already in its bucket stay there)."""
    try:
        offsite.remove_destination(name, COMMAND_LINE)
    except offsite.OffsiteError as error:
        _fail(error)
    click.echo(f"Removed destination {name}; its copies stay in the bucket.")


@destinations_cli.command("enable")
@click.argument("name")
def destinations_enable_command(name):
    """Turn a destination on: new backups are copied to it."""
    _set_destination(name, True)


@destinations_cli.command("disable")
@click.argument("name")
def destinations_disable_command(name):
    """Turn a destination off: no copies, and its unverified copies no longer hold back retention."""
    _set_destination(name, False)


def _set_destination(name, enabled):
    try:
        offsite.set_enabled(name, enabled, COMMAND_LINE)
    except offsite.OffsiteError as error:
        _fail(error)
    click.echo(f"Destination {name} is {'on' if enabled else 'off'}.")


@backup_cli.command("copy")
@click.argument("name")
@click.option("--to", "destination", metavar="DEST", help="One destination (default: every enabled one without a "
                                                           "verified copy).")
def copy_command(name, destination):
    """Copy a kept archive off-site now, and verify the copy by reading it back."""
    try:
        if destination:
            copies = [offsite.copy_archive(name, destination, progress=_progress(), caller=COMMAND_LINE)]
        else:
            copies = offsite.copy_to_all(name, progress=_progress(), caller=COMMAND_LINE)
    except SnapshotError as error:
        _fail(error)
    if not copies:
        _fail("there is no enabled off-site destination; add one with `flask backup destinations add`.")
    _report_copies(copies)


@backup_cli.command("retry-copies")
def retry_copies_command():
    """Try again the off-site copies that are due (failed ones after their wait, stalled ones)."""
    copies = offsite.retry_due(caller=COMMAND_LINE)
    if not copies:
        click.echo("No copies are due.")
    _report_copies(copies)


def _report_copies(copies):
    described = [offsite.describe_copy(copy) for copy in copies]
    for copy in described:
        click.echo(f"{copy['archive']} -> {copy['destination']}: {_copy_state(copy)}")
    failed = [copy for copy in described if copy["state"] == "failed"]
    if failed:
        _fail(f"{len(failed)} cop{'ies' if len(failed) != 1 else 'y'} failed; the local archive is kept.")


@backup_cli.command("verify")
@click.argument("name", required=False)
def verify_command(name):
    """Read verified off-site copies back (of one archive, or all) and compare them with what was sent."""
    results = offsite.verify(name, caller=COMMAND_LINE)
    if not results:
        click.echo("No verified off-site copies to check.")
    for result in results:
        click.echo(f"{result['archive']} -> {result['destination']}: {result['message']}")
    bad = [r for r in results if r["state"] != "verified"]
    if bad:
        _fail(f"{len(bad)} cop{'ies' if len(bad) != 1 else 'y'} could not be verified.")


@backup_cli.command("fetch")
@click.argument("destination")
@click.argument("name")
@click.option("--identity-file", type=click.File("r"), help="The age identity (secret key) of an encrypted copy; "
                                                             "'-' reads it from standard input.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=".", show_default=True,
              help="The folder to put the archive in.")
def fetch_command(destination, name, identity_file, output):
    """Fetch an archive's copy back from a destination (checked, decrypted); prints its path, ready for
    `flask backup restore PATH`."""
    identity = identity_file.read() if identity_file is not None else None
    try:
        result = offsite.fetch(destination, name, output / name, identity=identity, progress=_progress(),
                               caller=COMMAND_LINE)
    except SnapshotError as error:
        _fail(error)
    click.echo(result["path"])
