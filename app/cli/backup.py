"""flask backup ...: the same operations as the wizard, for operators and cron."""
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from app import audit
from app.operations import COMMAND_LINE, RunRefused, archives, run_backup, run_export, run_restore
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
