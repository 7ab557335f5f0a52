"""What the status fragment and its JSON twin show of a run: state, phase, percent, counts, timing."""
from app.models.store import utcnow
from app.operations.runs import FINAL_STATES, fetch_job


def progress_of(run):
    job = fetch_job(run.id) if run.state not in FINAL_STATES else None
    meta = (job.get_meta(refresh=False) if job is not None else None) or {}
    done, total = meta.get("done") or 0, meta.get("total")
    percent = 100 if run.state == "finished" else (min(99, int(done * 100 / total)) if total else None)
    started = run.started_at or (job.started_at.replace(tzinfo=None) if job is not None and job.started_at else None)
    elapsed = ((run.ended_at or utcnow()) - started).total_seconds() if started else 0
    eta = None
    if run.state == "started" and total and done and 0 < done < total:
        eta = elapsed * (total - done) / done
    return {
        "state": run.state,
        "phase": meta.get("phase") or ("done" if run.state == "finished" else run.state),
        "percent": percent,
        "done": done,
        "total": total,
        "unit": meta.get("unit") or "",
        "message": run.error if run.state in ("failed", "lost") else meta.get("message") or "",
        "elapsed": elapsed,
        "eta": eta,
    }
