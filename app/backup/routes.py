"""Routes of the wizard: parse (a form), call an operation, render."""
import secrets
from datetime import timedelta
from pathlib import Path

from flask import (
    Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, send_file, url_for,
)

from app import audit
from app.audit import actor_name
from app.backup.forms import BackupForm, RestoreForm
from app.backup.views import (
    archive_card_run, archives_view, automation_context, dry_run_of, progress_of, review_view, run_title, staging_view,
    trial_kind, upgrade_sentence, without_not_touched,
)
from app.extensions import db, htmx
from app.models import JobRun
from app.models.store import utcnow
from app.operations import Caller, RunRefused, archives, health, incoming, offsite, review, staging
from app.operations.procedures import check_export_allowed
from app.operations.runs import ACTIVE_STATES, FINAL_STATES, reconcile, start_run
from app.operations.runs import cancel_run as cancel
from app.security.access import deny_outside_network, is_maintainer_ip, outside_network_reason
from app.security.client import client_ip_text
from app.snapshot import ArchiveNotFound, SnapshotError

bp = Blueprint("backup", __name__, url_prefix="/admin/tools/backup")

# Endpoints a super-admin may use from anywhere; every other one needs a maintainer network.
# Those serving both exports and backups load their object and check its kind (get_run, get_archive).
MAINTAINER_EXEMPT = frozenset({
    "backup.index", "backup.start_export", "backup.run_status", "backup.cancel_run", "backup.download_archive", "backup.delete_archive",
    "backup.audit_log",
})
# How long a finished run stays on its card after a reload.
RECENT = timedelta(hours=1)
STOP_POLLING = 286  # htmx stops polling on this status


def caller():
    return Caller(actor_name(), client_ip_text())


def get_run(run_id):
    """The run, if the caller may see it: any export; anything else only from a maintainer network."""
    run = db.get_or_404(JobRun, run_id)
    if run.kind != "export" and not is_maintainer_ip():
        deny_outside_network()
    return reconcile(run)


def get_archive(name):
    """A kept archive, if the caller may touch it: exports anywhere, backups from a maintainer network."""
    try:
        info = next((a for a in archives.list_archives() if a.name == name), None)
    except SnapshotError as error:  # the archive store (a bucket) cannot be read: say why
        abort(503, description=str(error))
    if info is None:
        abort(404, description="No such archive in the backups folder.")
    if info.kind != "export" and not is_maintainer_ip():
        deny_outside_network()
    return info


@bp.get("/")
def index():
    maintainer = is_maintainer_ip()
    return render_template(
        "backup/index.html",
        client_ip=client_ip_text(),
        outside_reason=None if maintainer else outside_network_reason(),
        cards={**{kind: _card_run(kind) for kind in ("export", "backup", "restore")},
               "archive": archive_card_run(maintainer, RECENT)},
        staging_copy=staging_view() if maintainer else None,
        backup_form=BackupForm(formdata=None),
        destinations=[d for d in offsite.list_destinations() if d["enabled"]] if maintainer else [],
        usage=archives.folder_usage(),
        health=health.store_health(),
        **archives_view(maintainer),
        **(automation_context() if maintainer else {}),
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


def _start(kind, parts="", options=None, run_id=None):
    try:
        run = start_run(kind, caller(), parts=parts, options=options, run_id=run_id)
    except RunRefused as refusal:
        return _refusal(str(refusal))
    if not htmx:  # without JavaScript: back to the page, whose card shows the run
        return redirect(url_for("backup.index"))
    return _status_response(run)


def _refusal(message, status=409):
    """A refusal as an alert: a fragment for HTMX, the error page otherwise (any status, even 507)."""
    template = "errors/_alert.html" if htmx else "errors/error.html"
    return render_template(template, status=status, message=message), status


@bp.post("/export")
def start_export():
    try:
        check_export_allowed(caller())
    except RunRefused as refusal:
        return _refusal(str(refusal), 429)
    return _start("export", parts="database")


@bp.post("/backup")
def start_backup():
    form = BackupForm()
    if not form.validate():
        return _refusal(form.parts.errors[0], 400)
    return _start("backup", parts=form.parts.data)


def prepare_upload():
    """The large-body hook of upload_restore (see app.security.access.install), run after the gate and
    before the body is read: raise the body limit for this route, refuse a body the disk cannot hold."""
    cap = request.max_content_length = incoming.upload_cap()
    needed = request.content_length or 0
    if needed > cap:
        return _refusal(f"This file is {needed / 1e6:.0f} MB; this store accepts uploads of up to {cap / 1e6:.0f} MB "
                        "(a few times its own size). Nothing was received. To bring in a larger store, restore "
                        "it with `flask backup restore`, or ask the platform team to raise UPLOAD_FLOOR_BYTES.", 413)
    if needed and not incoming.has_room_for(needed):
        return _refusal("There is not enough free disk space to receive this file; nothing was changed. "
                        "Free some space (e.g. delete old backups) and try again.", 507)
    return None


@bp.post("/restore/upload")
def upload_restore():
    # The body limit was raised, and free space checked, by prepare_upload before the body was read.
    upload = request.files.get("archive")
    if upload is None or not upload.filename:
        return _refusal("Choose a backup file to upload.", 400)
    name = incoming.store_upload(upload)
    return _start("inspect", options={"source": "upload", "name": name,
                                      "original_name": Path(upload.filename).name[:200]})


@bp.post("/restore/kept")
def restore_kept():
    name = request.form.get("name", "")
    try:
        archives.check_kept(name)
    except ArchiveNotFound as error:
        return _refusal(str(error), 404)
    except SnapshotError as error:  # the archive store (a bucket) cannot be read
        return _refusal(str(error), 503)
    return _start("inspect", options={"source": "kept", "name": name, "original_name": name})


@bp.post("/restore/<run_id>/confirm")
def confirm_restore(run_id):
    inspection = db.get_or_404(JobRun, run_id)
    if inspection.kind != "inspect" or inspection.state != "finished":
        return _refusal("This archive has not been checked successfully; upload it again.", 409)
    result = inspection.result or {}
    form = RestoreForm()
    form.offer_parts(result.get("summary", {}).get("parts"))
    stale = _stale_review(inspection, form)
    if stale:
        return _refusal(stale, 409)
    problem = None
    if not form.validate():
        problem = next(iter(form.errors.values()))[0]
    elif form.store_name.data.strip() != current_app.config["STORE_NAME"]:
        problem = (f"Type the store's name, {current_app.config['STORE_NAME']}, to confirm the restore. "
                   "Nothing was changed.")
    elif result.get("other_store") and not form.other_store.data:
        problem = (f"This archive is from the store {result['other_store']!r}. Tick the box to confirm that you "
                   "want to restore another store's data here. Nothing was changed.")
    elif form.parts.data != "files" and access_would_return(result) and not form.accounts.data:
        problem = ("This restore would give access back to the accounts listed above. Choose whether to restore "
                   "the archive's users and roles or to keep today's. Nothing was changed.")
    losses_now = None
    if problem is None:
        problem, losses_now = _changed_since_review(inspection)
    if problem:
        if htmx:  # keep the review and its form on screen, with the problem above the form
            return _status_response(inspection, form=form, form_error=problem, status=422)
        return _refusal(problem, 400)
    options = dict(inspection.options, safety=form.safety.data, inspection=run_id, sha256=result.get("sha256"),
                   losses=losses_now,
                   other_store=bool(result.get("other_store")),
                   keep_accounts=form.keep_accounts(), try_first=bool(form.try_first.data))
    # One confirmation per inspection: the restore's id is derived from it, so a second one is refused.
    if db.session.get(JobRun, restore_run_id(run_id)) is not None:
        return _refusal("This archive was already confirmed for a restore; check it again to restore it again.", 409)
    return _start("restore", parts=form.parts.data, options=options, run_id=restore_run_id(run_id))


@bp.post("/restore/<run_id>/try")
def try_restore(run_id):
    """"Try it first": a dry run of the reviewed archive, with the parts and accounts chosen in the review's
    form, restored into a scratch store (never the live one); its card shows in the review."""
    inspection = db.get_or_404(JobRun, run_id)
    if inspection.kind != "inspect" or inspection.state != "finished":
        return _refusal("This archive has not been checked successfully; upload it again.", 409)
    if db.session.get(JobRun, restore_run_id(run_id)) is not None:
        return _refusal("This archive was already confirmed for a restore; check it again to try it.", 409)
    form = RestoreForm()
    form.offer_parts((inspection.result or {}).get("summary", {}).get("parts"))
    if not form.parts.validate(form):
        return _refusal(form.parts.errors[0], 400)
    running = dry_run_of(inspection)
    if running is not None and reconcile(running).state in ACTIVE_STATES:
        return _status_response(running)  # one dry run at a time per review: show the one under way
    source = {key: inspection.options.get(key) for key in ("source", "name", "original_name")}
    return _start("trial", parts=form.parts.data, options={
        "trial": "dry run", **source, "keep_accounts": form.keep_accounts(), "inspection": inspection.id})


def _stale_review(inspection, form):
    """Why this confirmation cannot stand for the archive on the page, or None: it was made for another
    review, a newer archive was checked since, or the review is too old to trust."""
    if (form.archive_sha256.data or "") != (inspection.result or {}).get("sha256"):
        return ("This confirmation does not belong to the archive that was reviewed; nothing was changed. "
                "Check the archive again and confirm its review.")
    newer = db.session.scalar(db.select(JobRun.id).where(JobRun.kind == "inspect", JobRun.created_at > inspection.created_at)
                              .limit(1))
    if newer is not None:
        return ("Another archive was checked after this review, so this review may not be the one on your "
                "screen; nothing was changed. Confirm the newest review, or check this archive again.")
    age = (utcnow() - (inspection.ended_at or inspection.created_at)).total_seconds()
    if age > current_app.config["REVIEW_MAX_AGE"]:
        return (f"This review is {int(age // 60)} minutes old; the store may have changed since. Nothing was "
                "changed: check the archive again (Restore… or upload it) and confirm the new review.")
    return None


def _changed_since_review(inspection):
    """What the restore would lose, computed again now: (a problem, None) if it differs from the review
    (the review then shows the new figures and the user confirms again), else (None, the losses), which
    the restore's card shows."""
    result = dict(inspection.result or {})
    now = review.compare_with_store(result.get("summary") or {})
    if now.get("losses") == (result.get("current") or {}).get("losses"):
        return None, now.get("losses") or []
    inspection.result = {**result, "current": now}  # the review on screen shows today's figures
    db.session.commit()
    return ("The store changed since the review: what the restore would lose is shown again above. Nothing "
            "was changed; read it and confirm again."), None


def access_would_return(inspection_result):
    """Would the archive's accounts raise or bring back anyone's access? Then the user must choose."""
    privileges = inspection_result.get("privileges") or {}
    return bool(privileges.get("rises") or privileges.get("returns"))


def restore_run_id(inspection_id):
    return f"{inspection_id}-restore"


@bp.get("/runs/<run_id>")
def run_status(run_id):
    return _status_response(get_run(run_id))


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id):
    run = get_run(run_id)
    try:
        cancel(run, caller(), phase_allows=progress_of(run).get("cancellable", True))
    except RunRefused as refusal:
        return _refusal(str(refusal))
    if not htmx:
        return redirect(url_for("backup.index"))
    return _status_response(run)


def _status_response(run, form=None, form_error=None, status=None):
    view = progress_of(run)
    review_extra = None
    download_url = None
    if run.state == "finished" and run.kind in ("export", "backup") and run.archive_name:
        download_url = url_for("backup.download_archive", name=run.archive_name)
    if request.accept_mimetypes.best == "application/json":
        return jsonify(state=view["state"], phase=view["phase"], percent=view["percent"], message=view["message"],
                       done=view["done"], total=view["total"], unit=view["unit"], download_url=download_url)
    if run.kind == "inspect" and run.state == "finished":
        review_extra = review_view(run)
        if form is None:
            form = RestoreForm(formdata=None)
            form.offer_parts((run.result or {}).get("summary", {}).get("parts"))
            form.suggest_try_first(review_extra["verified_at"])
    body = render_template("backup/_status.html", run=run, view=view, download_url=download_url,
                           store_name=current_app.config["STORE_NAME"], form=form, form_error=form_error,
                           review_extra=review_extra)
    if htmx and run.kind in ("trial", "staging") and run.state in FINAL_STATES:
        body += _after_trial(run)
    if status is not None:
        return body, status
    if htmx and run.state in FINAL_STATES:
        return body, STOP_POLLING
    return body


@bp.context_processor
def card_helpers():
    """What the run cards' templates call (also when a card is included in another fragment)."""
    return {"run_title": run_title, "trial_kind": trial_kind, "upgrade_sentence": upgrade_sentence,
            "without_not_touched": without_not_touched, "progress_of": progress_of}


def _after_trial(run):
    """Sent with a trial's or a staging copy's final card, out of band: the kept archives (each row shows its
    newest trial) and the staging section, so the page says what changed without a reload."""
    extra = render_template("backup/_archives_area.html", oob=True, **archives_view(True))
    if run.kind == "staging":
        extra += render_template("backup/_staging.html", oob=True, staging_copy=staging_view())
    return extra


@bp.post("/archives/<name>/verify")
def verify_archive(name):
    """Verify: restore a kept backup into a scratch store, check it there and open its storefront."""
    info = _backup_only(get_archive(name), "verified")
    return _start("trial", options={"trial": "verify", "source": "kept", "name": info.name,
                                    "original_name": info.name})


@bp.post("/archives/<name>/staging")
def stage_archive(name):
    """Restore a kept backup into the staging copy (replacing the last one), served read-only at /staging/."""
    info = _backup_only(get_archive(name), "restored into staging")
    return _start("staging", options={"name": info.name})


def _backup_only(info, what):
    if info.kind != "backup":
        abort(400, description=f"{info.name} is an export: exports leave out passwords and secrets and cannot be "
                               f"{what}. Choose a backup.")
    return info


@bp.post("/staging/discard")
def discard_staging():
    staging.discard(caller())
    if not htmx:
        return redirect(url_for("backup.index"))
    return render_template("backup/_staging.html", staging_copy=None, discarded=True)


@bp.get("/archives/<name>")
def download_archive(name):
    info = get_archive(name)
    if request.args.get("format") == "csv":
        return _download_csv(info)
    path = archives.local_path(info.name)
    if path is None:  # kept in a bucket: streamed through the app, after the gate, never a link to it
        try:
            chunks = archives.download_chunks(info.name)
        except SnapshotError as error:
            audit.record("archive.download", target=info.name, outcome="failure", detail=str(error))
            return _refusal(str(error), 404 if isinstance(error, ArchiveNotFound) else 503)
        audit.record("archive.download", target=info.name)
        return Response(chunks, mimetype="application/zip", direct_passthrough=True, headers={
            "Content-Disposition": f"attachment; filename={info.name}", "Content-Length": str(info.size),
            "Cache-Control": "no-cache"})
    audit.record("archive.download", target=info.name)
    return send_file(path, as_attachment=True, download_name=info.name,
                     mimetype="application/zip", max_age=0, conditional=False, etag=False)


def _download_csv(info):
    """An export as one CSV per table in a ZIP, made for this download and removed once it is sent."""
    target = incoming.incoming_dir() / f"csv-{secrets.token_hex(8)}.zip"
    try:
        archives.export_as_csv(info.name, target)
    except SnapshotError as error:
        return _refusal(str(error), 400)
    audit.record("archive.download", target=info.name, detail="as CSV")
    body = open(target, "rb")  # noqa: SIM115  (closed by the response)
    target.unlink()  # the open file is all that is left of it: nothing stays behind, whatever the client does
    return send_file(body, as_attachment=True, download_name=info.name.removesuffix(".zip") + "-csv.zip",
                     mimetype="application/zip", max_age=0, conditional=False, etag=False)


@bp.post("/archives/<name>/delete")
def delete_archive(name):
    info = get_archive(name)
    archives.delete(info.name)
    audit.record("archive.delete", target=info.name)
    if htmx:
        return render_template("backup/_archives.html", **archives_view(is_maintainer_ip()))
    return redirect(url_for("backup.index"))


@bp.get("/audit")
def audit_log():
    return render_template("backup/audit.html", events=audit.recent_events(audit.STORE_ACTIONS))
