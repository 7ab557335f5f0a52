"""Routes of the wizard: parse, call the service, render."""
import shutil
from datetime import timedelta
from pathlib import Path

from flask import abort, current_app, jsonify, redirect, render_template, request, send_file, url_for

from app import audit
from app.audit import actor_name
from app.backup import bp, service, uploads
from app.backup.runs import FINAL_STATES, RunRefused, progress_of, reconcile, start_run
from app.extensions import db, htmx
from app.models import JobRun
from app.models.store import utcnow
from app.security.access import client_ip_text, deny, is_maintainer_ip, outside_network_reason

PARTS = ("database", "files", "both")
# How long a finished run stays on its card after a reload.
RECENT = timedelta(hours=1)
STOP_POLLING = 286  # htmx stops polling on this status


def require_maintainer():
    """For routes that serve both exports and backups: backups need a maintainer network."""
    if not is_maintainer_ip():
        deny(outside_network_reason())


@bp.get("/")
def index():
    maintainer = is_maintainer_ip()
    return render_template(
        "backup/index.html",
        maintainer=maintainer,
        client_ip=client_ip_text(),
        outside_reason=None if maintainer else outside_network_reason(),
        cards={kind: _card_run(kind) for kind in ("export", "backup", "restore")},
        archives=service.list_archives(),
        parts_choices=PARTS,
    )


def _card_run(card):
    """The run a card shows after a reload: an active one, or one that ended within the hour."""
    kinds = ("inspect", "restore") if card == "restore" else (card,)
    run = db.session.scalars(
        db.select(JobRun).where(JobRun.kind.in_(kinds)).order_by(JobRun.created_at.desc()).limit(1)
    ).first()
    if run is None:
        return None
    reconcile(run)
    if run.state in FINAL_STATES and (run.ended_at or run.created_at) < utcnow() - RECENT:
        return None
    if card != "export" and not is_maintainer_ip():
        return None
    return run


def _start(kind, parts="", options=None):
    try:
        run = start_run(kind, actor=actor_name(), client_ip=client_ip_text(), parts=parts, options=options)
    except RunRefused as refusal:
        return _refusal(str(refusal))
    if not htmx:  # without JavaScript: back to the page, whose card shows the run
        return redirect(url_for("backup.index"))
    return _status_response(run)


def _refusal(message, status=409):
    if htmx:
        return render_template("errors/_alert.html", status=status, message=message), status
    abort(status, description=message)


@bp.post("/export")
def start_export():
    return _start("export", parts="database")


@bp.post("/backup")
def start_backup():
    parts = request.form.get("parts", "")
    if parts not in PARTS:
        return _refusal("Choose what to back up: Database, Files or Both.", 400)
    return _start("backup", parts=parts)


def prepare_upload():
    """Run by the access hook after the gate, before the body is read (see LARGE_BODIES)."""
    request.max_content_length = current_app.config["MAX_UPLOAD_BYTES"]
    needed = request.content_length or 0
    if needed and shutil.disk_usage(uploads.incoming_dir()).free - needed < uploads.FREE_SPACE_MARGIN:
        return _refusal("There is not enough free disk space to receive this file; nothing was changed. "
                        "Free some space (e.g. delete old backups) and try again.", 507)
    return None


@bp.post("/restore/upload")
def upload_restore():
    # The body limit was raised, and free space checked, by prepare_upload before the body was read.
    upload = request.files.get("archive")
    if upload is None or not upload.filename:
        return _refusal("Choose a backup file to upload.", 400)
    name = uploads.store_upload(upload)
    return _start("inspect", options={"source": "upload", "name": name,
                                      "original_name": Path(upload.filename).name[:200]})


@bp.post("/restore/kept")
def restore_kept():
    name = request.form.get("name", "")
    try:
        service.archive_path(name)
    except service.SnapshotError as error:
        return _refusal(str(error), 404)
    return _start("inspect", options={"source": "kept", "name": name, "original_name": name})


@bp.post("/restore/<run_id>/confirm")
def confirm_restore(run_id):
    inspection = db.get_or_404(JobRun, run_id)
    if inspection.kind != "inspect" or inspection.state != "finished":
        return _refusal("This archive has not been checked successfully; upload it again.", 409)
    summary = (inspection.result or {}).get("summary", {})
    parts, safety = request.form.get("parts", ""), request.form.get("safety") == "y"
    allowed = {"both": PARTS, "database": ("database",), "files": ("files",)}.get(summary.get("parts"), ())
    problem = None
    if parts not in allowed:
        problem = "Choose what to restore from the parts this archive contains."
    elif request.form.get("store_name", "").strip() != current_app.config["STORE_NAME"]:
        problem = (f"Type the store's name, {current_app.config['STORE_NAME']}, to confirm the restore. "
                   "Nothing was changed.")
    if problem:
        if htmx:  # keep the review and its form on screen, with the problem above the form
            return _status_response(inspection, form_error=problem, chosen={"parts": parts, "safety": safety},
                                    status=422)
        return _refusal(problem, 400)
    options = dict(inspection.options, safety=safety, inspection=run_id)
    return _start("restore", parts=parts, options=options)


@bp.get("/runs/<run_id>")
def run_status(run_id):
    run = db.get_or_404(JobRun, run_id)
    if run.kind != "export":
        require_maintainer()
    reconcile(run)
    return _status_response(run)


def _status_response(run, form_error=None, chosen=None, status=None):
    view = progress_of(run)
    download_url = None
    if run.state == "finished" and run.kind in ("export", "backup") and run.archive_name:
        download_url = url_for("backup.download_archive", name=run.archive_name)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(state=view["state"], phase=view["phase"], percent=view["percent"], message=view["message"],
                       done=view["done"], total=view["total"], unit=view["unit"], download_url=download_url)
    body = render_template("backup/_status.html", run=run, view=view, download_url=download_url,
                           store_name=current_app.config["STORE_NAME"], parts_choices=PARTS, form_error=form_error,
                           chosen=chosen or {})
    if status is not None:
        return body, status
    if htmx and run.state in FINAL_STATES:
        return body, STOP_POLLING
    return body


@bp.get("/archives/<name>")
def download_archive(name):
    info = _archive_or_404(name)
    if info.kind != "export":
        require_maintainer()
    audit.record("archive.download", target=name)
    path = service.archive_path(name)
    return send_file(path, as_attachment=True, download_name=name, mimetype="application/zip", max_age=0,
                     conditional=False, etag=False)


@bp.post("/archives/<name>/delete")
def delete_archive(name):
    info = _archive_or_404(name)
    if info.kind != "export":
        require_maintainer()
    service.delete(name)
    audit.record("archive.delete", target=name)
    if htmx:
        return render_template("backup/_archives.html", archives=service.list_archives(),
                               maintainer=is_maintainer_ip())
    return redirect(url_for("backup.index"))


def _archive_or_404(name):
    for info in service.list_archives():
        if info.name == name:
            return info
    abort(404, description="No such archive in the backups folder.")


@bp.get("/audit")
def audit_log():
    return render_template("backup/audit.html", events=audit.recent_events(audit.STORE_ACTIONS))
