"""flask backup ...: the same operations as the wizard, for operators and cron."""
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from app import audit
from app.backup.runs import RunRefused, command_line_operation
from app.maintenance import maintenance_during
from app.snapshot import SnapshotError

backup_cli = AppGroup("backup", help="Export, back up, inspect and restore the store.")
PARTS = click.Choice(["database", "files", "both"])


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


def _fail(action, error, target=""):
    audit.record(action, target=target, outcome="failure", detail=str(error), actor="cli")
    click.echo(f"Error: {error}", err=True)
    sys.exit(1)


@backup_cli.command("export")
def export_command():
    """Export the store's data (database only, secrets removed)."""
    from app.backup import service

    try:
        path = service.export(created_by="cli", progress=_progress())
    except SnapshotError as error:
        _fail("export.finish", error)
    audit.record("export.finish", target=path.name, actor="cli")
    click.echo(path)


@backup_cli.command("create")
@click.option("--parts", type=PARTS, default="both", show_default=True)
def create_command(parts):
    """Back up the database, the uploaded files, or both."""
    from app.backup import service

    try:
        with command_line_operation():
            path = service.backup(parts, created_by="cli", progress=_progress())
    except (SnapshotError, RunRefused) as error:
        _fail("backup.finish", error, parts)
    audit.record("backup.finish", target=path.name, actor="cli")
    click.echo(path)


@backup_cli.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def inspect_command(file):
    """Check an archive completely and say what it holds."""
    from app.backup import service

    try:
        s = service.inspect(file, progress=_progress())
    except SnapshotError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    click.echo(f"{s.name}: a valid {s.kind} of {s.store} ({s.parts}), made {s.created_at:%Y-%m-%d %H:%M:%S} UTC "
               f"by {s.created_by}, schema {s.schema_revision}, from {s.source_engine}")
    for table, rows in s.row_counts.items():
        click.echo(f"  {table}: {rows} rows")
    if s.parts != "database":
        click.echo(f"  files: {s.file_count} ({s.file_bytes} bytes)")


@backup_cli.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--parts", type=PARTS, required=True)
@click.option("--yes", is_flag=True, help="Confirm that the current store will be overwritten.")
def restore_command(file, parts, yes):
    """Replace the store's database and/or files with an archive's (destructive)."""
    from app.backup import service

    if not yes:
        click.echo("Error: a restore overwrites the current store; pass --yes to confirm.", err=True)
        sys.exit(2)
    try:
        with command_line_operation(restore=True), maintenance_during("restore", current_app):
            service.restore(file, parts, progress=_progress())
            service.end_store_sessions()
    except (SnapshotError, RunRefused) as error:
        _fail("restore.finish", error, file.name)
    audit.record("restore.finish", target=file.name, detail=parts, actor="cli")
    click.echo(f"Restored {parts} from {file.name}.")


@backup_cli.command("list")
def list_command():
    """List kept archives, newest first."""
    from app.backup import service

    for a in service.list_archives():
        note = f"  UNREADABLE: {a.problem}" if a.problem else (f"  ({a.label})" if a.label else "")
        click.echo(f"{a.name}\t{a.kind}\t{a.parts}\t{a.size}\t{a.created_at}\t{a.created_by}{note}")


@backup_cli.command("delete")
@click.argument("name")
def delete_command(name):
    """Delete a kept archive by name."""
    from app.backup import service

    try:
        service.delete(name)
    except SnapshotError as error:
        _fail("archive.delete", error, name)
    audit.record("archive.delete", target=name, actor="cli")
    click.echo(f"Deleted {name}.")
