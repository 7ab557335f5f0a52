"""What the page's fragments show: a run's progress (and its JSON twin), the schedules and retention,
the kept archives with their newest trial, a review's dry run, and the staging copy."""
from datetime import datetime, timezone

from flask import current_app, url_for

from app.backup.forms import RetentionForm, ScheduleForm
from app.extensions import db
from app.models import JobRun
from app.models.store import utcnow
from app.operations import archives, offsite, retention, schedules, staging, trials
from app.operations.runs import FINAL_STATES, fetch_job, reconcile
from app.snapshot.scratch import STATE_FILE


ETA_AFTER_SECONDS = 5
ETA_AFTER_FRACTION = 0.05


def time_left(elapsed, done, total):
    """Seconds left, or None until there is enough to go on: an estimate from the first seconds or
    percent (a slow start, a phase that counts differently) once said "about 377 h" for a short run."""
    if not total or not 0 < done < total or elapsed < ETA_AFTER_SECONDS or done / total < ETA_AFTER_FRACTION:
        return None
    return elapsed * (total - done) / done


def progress_of(run):
    job = fetch_job(run.id) if run.state not in FINAL_STATES else None
    meta = (job.get_meta(refresh=False) if job is not None else None) or {}
    done, total = meta.get("done") or 0, meta.get("total")
    percent = 100 if run.state == "finished" else (min(99, int(done * 100 / total)) if total else None)
    started = run.started_at or (job.started_at.replace(tzinfo=None) if job is not None and job.started_at else None)
    elapsed = ((run.ended_at or utcnow()) - started).total_seconds() if started else 0
    eta = time_left(elapsed, done, total) if run.state == "started" else None
    return {
        "state": run.state,
        "phase": meta.get("phase") or ("done" if run.state == "finished" else run.state),
        "percent": percent,
        "done": done,
        "total": total,
        "unit": meta.get("unit") or "",
        "message": run.error if run.state in ("failed", "lost", "skipped", "cancelled") else meta.get("message") or "",
        "cancellable": meta.get("cancellable", True),
        "elapsed": elapsed,
        "eta": eta,
    }


def schedules_view():
    """The schedules as the page lists them: what, when next (store time and UTC), the last run."""
    now = datetime.now(timezone.utc)
    rows = []
    for schedule in schedules.list_schedules():
        last = db.session.scalars(db.select(JobRun).where(JobRun.schedule_id == schedule.id)
                                  .order_by(JobRun.created_at.desc()).limit(1)).first()
        rows.append({"schedule": schedule, "description": schedules.describe(schedule, current_app.config["STORE_TIMEZONE"]),
                     "next_run": schedules.next_run_at(schedule, now) if schedule.enabled else None, "last": last})
    return rows


def automation_context(schedule_form=None, retention_form=None, preview=None, message=None):
    """What the page's "Automatic backups" section needs (also rendered alone, after a change)."""
    policy = retention.current_policy()
    if retention_form is None:
        retention_form = RetentionForm(formdata=None)
        retention_form.fill(policy)
    return {"schedules": schedules_view(), "schedule_form": schedule_form or ScheduleForm(formdata=None),
            "retention_form": retention_form, "retention_policy": policy,
            "retention_enabled": current_app.config["RETENTION_ENABLED"], "retention_plan": retention.store_plan(),
            "retention_preview": preview, "automation_message": message,
            "store_timezone": current_app.config["STORE_TIMEZONE"]}


def archives_view(maintainer):
    """What the kept-archives table needs: the archives, the pinned ones, each one's off-site copies and
    its newest trial (one query each)."""
    kept = archives.list_archives()
    names = [a.name for a in kept]
    return {"archives": kept, "maintainer": maintainer, "pins": retention.pins(),
            "copies": offsite.copies_of(names), "trials": trials.latest_trials(names) if names else {}}


TRIAL_TITLES = {"dry run": "Dry run", "verify": "Verify", "drill": "Drill"}
NOT_TOUCHED = "The live store was not touched."


def trial_kind(run):
    return (run.options or {}).get("trial") or "verify"


def run_title(run):
    """The heading of a run's card."""
    if run.kind == "trial":
        return TRIAL_TITLES.get(trial_kind(run), "Trial")
    if run.kind == "staging":
        return "Staging copy"
    if run.kind == "backup":
        return ("Scheduled backup (" if run.schedule_id else "Backup (") + run.parts + ")"
    return {"export": "Export", "inspect": "Checking the archive", "restore": f"Restore ({run.parts})",
            "copy": "Off-site copy"}.get(run.kind, run.kind.capitalize())


def without_not_touched(message):
    """A trial's failure without its closing "The live store was not touched." (the card says more)."""
    message = (message or "").rstrip()
    return message[: -len(NOT_TOUCHED)].rstrip() if message.endswith(NOT_TOUCHED) else message


def upgrade_sentence(plan):
    return trials.upgrade_sentence(plan) if plan else None


def trial_time(trial):
    return f"{trial.checked_at:%Y-%m-%d %H:%M}"


def review_view(run):
    """What the review of a finished inspection shows besides its result: when the archive last passed a
    trial (when it was checked, or since: a dry run from this review), and this review's newest dry run."""
    result, options = run.result or {}, run.options or {}
    verified_at = result.get("verified_at")
    name = options.get("name")
    newest = trials.latest_trials([name]).get(name) if name else None
    if newest is not None and newest.archive_sha256 in (None, result.get("sha256")):
        verified_at = trial_time(newest) if newest.ok else None
    dry_run = dry_run_of(run)
    return {"verified_at": verified_at, "upgrade": upgrade_sentence(result.get("upgrade")),
            "dry_run": reconcile(dry_run) if dry_run is not None else None}


def dry_run_of(inspection):
    """The newest dry run started from this review (None if none was)."""
    candidates = db.session.scalars(
        db.select(JobRun).where(JobRun.kind == "trial", JobRun.created_at >= inspection.created_at)
        .order_by(JobRun.created_at.desc()).limit(50))
    return next((r for r in candidates if (r.options or {}).get("inspection") == inspection.id), None)


def archive_card_run(maintainer, recent):
    """The run the kept archives' status area shows after a reload: the newest Verify, drill or staging
    copy, while it runs or within ``recent`` (a timedelta) of its end."""
    if not maintainer:
        return None
    candidates = db.session.scalars(
        db.select(JobRun).where(JobRun.kind.in_(("trial", "staging"))).order_by(JobRun.created_at.desc()).limit(20))
    run = next((r for r in candidates if r.kind == "staging" or trial_kind(r) != "dry run"), None)
    if run is None:
        return None
    reconcile(run)
    if run.state in FINAL_STATES and (run.ended_at or run.created_at) < utcnow() - recent:
        return None
    return run


def staging_url():
    """Where the staging copy is served (the staging blueprint, once the factory registers it)."""
    if "staging" in current_app.blueprints:
        return url_for("staging.page")
    return "/staging/"


def staging_view():
    """The kept staging copy as the page shows it, or None."""
    store = staging.current()
    if store is None:
        return None
    info = dict(store.info or {})
    try:
        restored_at = datetime.fromtimestamp((store.folder / STATE_FILE).stat().st_mtime, timezone.utc)
    except OSError:
        restored_at = None
    return {"archive": info.get("archive", ""), "created_by": info.get("created_by", ""),
            "neutralised": info.get("neutralised") or [], "rows": info.get("rows"), "files": info.get("files"),
            "restored_at": restored_at, "url": staging_url()}
