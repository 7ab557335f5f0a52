"""The operations, one procedure each: its steps in order, one cleanup path, one audit record.

    run_restore: refuse what can be refused → (try it first) → (bring an older archive forward) → lock
                 → recover a half-finished restore → safety backup → engine: check, stage the files,
                 then maintenance only for load → swap → commit → end sessions; old files deleted → audit

The web (through jobs), the CLI and the scheduler all call these; none of them repeats a step.
"""
import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app

from app import audit
from app.filters import filesize
from app.maintenance import maintenance_during
from app.operations import archives, incoming, offsite, retention, review, staging, trials
from app.operations.runs import RunRefused, failure_message, holding, new_holder, recent_runs, start_run
from app.snapshot import IncompatibleArchive, ProgressEvent, SnapshotError
from app.snapshot.container import PARTS


@dataclass(frozen=True)
class Caller:
    """Who starts an operation, for the archive's created_by and the audit log."""

    actor: str                   # "user:<email>", "cli", "scheduler"
    client_ip: str | None = None

    @property
    def name(self):
        return self.actor.split(":", 1)[-1]


COMMAND_LINE = Caller("cli")


class _Outcome:
    def __init__(self, target, detail):
        self.target, self.detail = target, detail


@contextmanager
def _audited(action, caller, target="", detail=""):
    """The one cleanup path every procedure shares: success or failure, one audit record."""
    outcome = _Outcome(target, detail)
    try:
        yield outcome
    except BaseException as error:
        audit.record(action, target=outcome.target, outcome="failure", detail=failure_message(error),
                     actor=caller.actor, client_ip=caller.client_ip)
        raise
    audit.record(action, target=outcome.target, detail=outcome.detail, actor=caller.actor,
                 client_ip=caller.client_ip)


def _say(progress, phase, message):
    if progress is not None:
        progress(ProgressEvent(phase, 0, None, "", message))


def run_export(caller, *, holder=None, progress=None):
    """Export the store's data (database only, secrets redacted); returns the archive's path."""
    with _audited("export.finish", caller, target="database") as outcome:
        with holding(holder or new_holder(), "export"):
            retention.expire_exports()
            check_export_quota()
            path = archives.export(created_by=caller.name, progress=progress)
        outcome.target = path.name
    return path


def check_export_allowed(caller):
    """Exports may be started from outside the maintainer networks, so each user gets a few an hour,
    and all kept exports together stay under a quota (they also expire: EXPORT_TTL_DAYS)."""
    limit = current_app.config["EXPORTS_PER_HOUR"]
    mine = [run for run in recent_runs("export", timedelta(hours=1)) if run.started_by == caller.actor]
    if len(mine) >= limit:
        raise RunRefused(f"You started {len(mine)} exports in the last hour, the limit is {limit}; nothing was "
                         "started. Download one of them, or try again later.")
    retention.expire_exports()
    check_export_quota()


def check_export_quota():
    quota = current_app.config["EXPORT_QUOTA_BYTES"]
    used = archives.export_bytes()
    if used >= quota:
        raise RunRefused(f"Kept exports already take {used / 1e6:.0f} MB, the store's export quota "
                         f"({quota / 1e6:.0f} MB); nothing was started. Delete old exports and try again.")


def run_backup(parts, caller, *, holder=None, label=None, progress=None, copy_inline=False):
    """Back up the chosen parts; returns the archive's path. Off-site copies follow: queued as a copy
    run, or (``copy_inline``: a command with no workers) made here, after the store's lock is released."""
    if parts not in PARTS:
        raise RunRefused(f"Choose what to back up: one of {', '.join(PARTS)}.")
    with _audited("backup.finish", caller, target=parts) as outcome:
        with holding(holder or new_holder(), "backup"):
            archives.recover()
            make_room_for_backup(parts, caller)
            path = archives.backup(parts, created_by=caller.name, progress=progress, label=label)
            _plan_copies(path.name)
            _keep_generations(caller)
        outcome.target = path.name
    if copy_inline:
        offsite.copy_to_all(path.name, progress=progress, caller=caller)
    else:
        _queue_copies(path.name, caller)
    return path


def _plan_copies(name):
    """Pending copies to every enabled destination, before retention runs: an archive whose copy is not
    verified is never deleted. Failing to record them does not fail the backup (copy_to_all makes them)."""
    try:
        offsite.plan_copies(name)
    except Exception:
        current_app.logger.exception("Could not record the off-site copies of %s", name)


def _queue_copies(name, caller):
    """A copy run for the workers (no lock: it reads a finished archive). Without a queue the copies stay
    pending, and offsite.retry_due takes them up later."""
    if not offsite.has_unfinished(name):
        return
    try:
        start_run("copy", caller, options={"name": name})
    except RunRefused:
        current_app.logger.warning("Could not queue the off-site copies of %s; they stay pending", name)


def estimated_backup_size(parts):
    """What a backup of ``parts`` will take: the newest kept backup of the same parts, else the store's
    size (database and files, uncompressed: an over-estimate, which is the safe side)."""
    same = [a for a in archives.list_archives() if a.kind == "backup" and a.parts == parts and not a.problem]
    if same:
        return max(same, key=lambda a: retention.made_at(a.name)).size
    return incoming.store_size()


def make_room_for_backup(parts, caller):
    """Before a backup writes anything: if the disk would keep less than BACKUP_FREE_MARGIN_BYTES free
    after it, apply retention first; if that is not enough, refuse and say how much is missing."""
    estimate, margin = estimated_backup_size(parts), current_app.config["BACKUP_FREE_MARGIN_BYTES"]
    if archives.free_space() - estimate >= margin:
        return
    if current_app.config["RETENTION_ENABLED"]:
        retention.apply_retention(caller)
    free = archives.free_space()
    if free - estimate < margin:
        missing = estimate + margin - free
        raise RunRefused(
            f"Not enough disk space for this backup: it needs about {filesize(estimate)} and the disk keeps "
            f"{filesize(margin)} free, but only {filesize(free)} is free; {filesize(missing)} is missing. Nothing was "
            "written. Delete old backups or archives you no longer need, or ask the platform team for more space.")


def _keep_generations(caller):
    """After a successful backup, under its lock: retention. A deletion that fails does not fail the
    backup (it is logged, and the next backup tries again)."""
    if not current_app.config["RETENTION_ENABLED"]:
        return
    try:
        retention.apply_retention(caller)
    except (OSError, SnapshotError):
        current_app.logger.exception("Retention after a backup failed; the backup itself is kept")


def run_retention(caller, *, dry_run=False, holder=None):
    """Apply the retention policy now (or, with ``dry_run``, only say what it would delete)."""
    if dry_run:
        return retention.store_plan()
    with holding(holder or new_holder(), "backup"):
        return retention.apply_retention(caller)


def run_inspect(source, caller, *, holder=None, progress=None):
    """Check an archive completely and compare it with the store; refuses what no restore could use."""
    with _audited("inspect.finish", caller, target=source.name):
        with holding(holder or new_holder(), "inspect"):
            _say(progress, "verify", "Checking the archive's signature, checksums and contents")
            manifest = archives.manifest_of(source)
            if manifest.get("kind") != "backup":
                raise IncompatibleArchive(_export_refusal(source.name))
            plan = trials.upgrade_plan(manifest)
            if plan is not None:
                _say(progress, "forward", trials.upgrade_sentence(plan))
            with trials.restorable(source, plan, progress) as today:
                summary = archives.inspect(today, progress=progress)
                accounts = archives.read_accounts(today) if summary.parts in ("database", "both") else None
            if plan is not None:  # the archive as it was made; its rows as today's schema will hold them
                summary = dataclasses.replace(summary, name=source.name, **_as_made(manifest))
            current = review.compare_with_store(summary)
            digest = archives.file_sha256(source)
            privileges = None
            if accounts is not None:
                restorer = caller.name if caller.actor.startswith("user:") else None
                privileges = review.privilege_changes(accounts, restorer)
    other_store = summary.store if summary.store != current_app.config["STORE_NAME"] else None
    trial = trials.latest_trials([source.name]).get(source.name)
    return {"summary": review.summary_dict(summary), "current": current, "other_store": other_store,
            "privileges": privileges, "sha256": digest, "upgrade": plan,
            "verified_at": f"{trial.checked_at:%Y-%m-%d %H:%M}" if trial is not None and trial.ok else None}


def _as_made(manifest):
    """The fields of a summary that say when, by whom and at which schema an archive was made."""
    return {"created_at": datetime.strptime(manifest["created_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc),
            "created_by": manifest["created_by"], "label": manifest["label"],
            "schema_revision": manifest["schema_revision"], "app_version": manifest["app_version"]}


def run_restore(source, parts, caller, *, holder=None, safety=True, accept_other_store=False, keep_accounts=False,
                progress=None, expected_sha256=None, try_first=False):
    """Replace the chosen parts of the store with the archive's; all of it happens, or none of it.
    With ``keep_accounts`` the accounts tables keep today's rows (users and roles stay as they are).
    ``expected_sha256``: the archive that was reviewed; any other file is refused before anything happens.
    ``try_first``: restore it into a scratch store and check it there first; if that fails, stop there.
    An archive made at an older schema is brought forward (in a scratch store) and that copy restored."""
    with _audited("restore.finish", caller, target=source.name, detail=parts) as outcome:
        if expected_sha256 and archives.file_sha256(source) != expected_sha256:
            raise IncompatibleArchive(
                "The archive to restore is not the one that was reviewed (its SHA-256 differs); nothing was "
                "changed. Check the archive again and confirm its review.")
        manifest = archives.manifest_of(source)
        check_restorable(manifest, parts, accept_other_store, source.name)
        plan = trials.upgrade_plan(manifest)
        if try_first:
            _say(progress, "trial", "Trying the archive first in a scratch store (the live store is not touched)")
            run_trial("dry run", source, caller, parts=parts, keep_accounts=keep_accounts, progress=progress,
                      sha256=expected_sha256)
        if plan is not None:
            _say(progress, "forward", trials.upgrade_sentence(plan))
        with trials.restorable(source, plan, progress) as today, holding(holder or new_holder(), "restore",
                                                                         restore=True):
            archives.recover()
            safety_name = None
            if safety:
                _say(progress, "safety", "Taking a safety backup of the current store")
                safety_name = archives.backup(parts, created_by=caller.name, progress=progress, safety=True,
                                              label=f"Safety backup before restoring {source.name}"[:200]).name
            details = archives.restore(today, parts, progress=progress, keep_accounts=keep_accounts,
                                       maintenance=lambda: _storefront_closed(progress))
        outcome.detail = "; ".join([parts, f"safety backup {safety_name}" if safety_name else "no safety backup",
                                    "today's users and roles kept" if keep_accounts else "accounts from the archive"]
                                   + ([f"brought forward from schema {plan['from']}"] if plan else [])
                                   + (["tried first"] if try_first else []))
    return {"restored": parts, "safety_backup": safety_name, "details": details}


def run_trial(kind, source, caller, *, parts=None, keep_accounts=False, progress=None, sha256=None):
    """Restore an archive into a scratch store and check it there: a "dry run" before a restore, a
    "verify" a person asked for, or the scheduled "drill" (those two also open the storefront against
    it). No lock, no maintenance: the live store is never touched. One ArchiveTrial row either way,
    with ``sha256`` when the caller knows it already (a reviewed archive): never a read of its own."""
    name = getattr(source, "name", str(source))
    started = time.monotonic()
    digest = sha256
    with _audited(f"{kind.replace(' ', '_')}.finish", caller, target=name) as outcome:
        with archives.readable(source) as local:
            try:
                result = trials.try_archive(local, parts=parts, keep_accounts=keep_accounts,
                                            storefront=kind != "dry run", progress=progress)
            except SnapshotError as error:
                trials.record(kind, name, caller, sha256=digest, error=error, seconds=time.monotonic() - started)
                raise trials.TrialFailed(trials.failure_text(error), table=getattr(error, "table", None),
                                         row=getattr(error, "row", None)) from error
        trials.record(kind, name, caller, sha256=digest, result=result, seconds=time.monotonic() - started)
        outcome.detail = f"{sum(result['row_counts'].values())} rows, {result['file_count']} files, checked"
    return result


def run_staging(name, caller, *, progress=None):
    """Restore a kept archive into the staging copy served read-only at /staging/ (replacing the last one)."""
    with _audited("staging.finish", caller, target=name):
        return staging.create(name, caller, progress=progress)


@contextmanager
def _storefront_closed(progress):
    """The storefront's maintenance around the steps of a restore that change the store (the engine enters
    it after checking the archive and staging its files); every store session ends before it lifts."""
    _say(progress, "maintenance", "Putting the storefront into maintenance")
    with maintenance_during("restore", current_app._get_current_object()):
        yield
        archives.end_store_sessions()
    _say(progress, "reopened", "The storefront is open again")


def check_restorable(manifest, parts, accept_other_store, name):
    """Everything a restore can refuse from the signed manifest alone, before any lock, safety backup
    or maintenance."""
    if manifest.get("kind") != "backup":
        raise IncompatibleArchive(_export_refusal(name))
    held = manifest.get("parts")
    if parts not in PARTS or not (parts == held or held == "both"):
        raise IncompatibleArchive(f"{name} holds {held}; it cannot restore {parts}. Nothing was changed.")
    store = current_app.config["STORE_NAME"]
    if manifest.get("store") != store and not accept_other_store:
        raise IncompatibleArchive(
            f"{name} is a backup of the store {manifest.get('store')!r}, not of {store!r}. To move a store "
            "between environments, confirm that the archive is from another store; nothing was changed.")


def _export_refusal(name):
    return (f"{name} is an export, not a backup: exports leave out passwords and secrets and cannot be "
            "restored. Restore a backup instead; nothing was changed.")
