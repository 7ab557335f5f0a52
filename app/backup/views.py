"""What the page's fragments show: a run's progress (and its JSON twin), the schedules and retention."""
from datetime import datetime, timezone

from flask import current_app

from app.backup.forms import RetentionForm, ScheduleForm
from app.extensions import db
from app.models import JobRun
from app.models.store import utcnow
from app.operations import archives, offsite, retention, schedules
from app.operations.runs import FINAL_STATES, fetch_job


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
    """What the kept-archives table needs: the archives, the pinned ones, and each one's off-site copies."""
    kept = archives.list_archives()
    return {"archives": kept, "maintainer": maintainer, "pins": retention.pins(),
            "copies": offsite.copies_of([a.name for a in kept])}
