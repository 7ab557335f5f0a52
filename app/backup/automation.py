"""Backups without anyone clicking: the schedules, the retention policy and "Keep forever" pins.
Maintainer networks only, like Backup (none of these endpoints is in MAINTAINER_EXEMPT)."""
from flask import redirect, render_template, request, url_for

from app.backup.forms import RetentionForm, ScheduleForm
from app.backup.routes import _refusal, _status_response, bp, caller, get_archive
from app.backup.views import archives_view, automation_context
from app.extensions import htmx
from app.operations import RunRefused, health, retention, schedules


def _automation(status=200, **context):
    if not htmx:
        return redirect(url_for("backup.index"))
    body = render_template("backup/_automation.html", **automation_context(**context), automation_error=status >= 400)
    badge = render_template("backup/_health.html", health=health.store_health(), oob=True)
    return body + badge, status


@bp.post("/schedules")
def add_schedule():
    form = ScheduleForm()
    if not form.validate():
        return _automation(422, schedule_form=form, message=next(iter(form.errors.values()))[0])
    try:
        schedules.add_schedule(form.parts.data, form.frequency.data, caller=caller(), **form.timing())
    except schedules.ScheduleError as error:
        return _automation(422, schedule_form=form, message=str(error))
    return _automation(message="Schedule added.")


@bp.post("/schedules/<int:schedule_id>/enabled/<int:on>")
def enable_schedule(schedule_id, on):
    try:
        schedules.set_enabled(schedule_id, bool(on), caller())
    except schedules.ScheduleError as error:
        return _refusal(str(error), 404)
    return _automation(message="Schedule turned on." if on else "Schedule turned off; it will not run until turned on.")


@bp.post("/schedules/<int:schedule_id>/delete")
def remove_schedule(schedule_id):
    try:
        schedules.remove_schedule(schedule_id, caller())
    except schedules.ScheduleError as error:
        return _refusal(str(error), 404)
    return _automation(message="Schedule removed. Backups it made are kept.")


@bp.post("/schedules/<int:schedule_id>/run")
def run_schedule_now(schedule_id):
    try:
        run = schedules.run_now(schedule_id, caller())
    except schedules.ScheduleError as error:
        return _refusal(str(error), 404)
    except RunRefused as refusal:
        return _refusal(str(refusal))
    if not htmx:
        return redirect(url_for("backup.index"))
    return _status_response(run)


@bp.post("/retention")
def save_retention():
    """Preview (the default) says what the policy would delete; only "save" stores it."""
    form = RetentionForm()
    if not form.validate():
        field, errors = next(iter(form.errors.items()))
        return _automation(422, retention_form=form, message=f"{getattr(form, field).label.text}: {errors[0]}")
    policy = retention.Policy(**form.values())
    preview = retention.store_plan(policy=policy)
    if request.form.get("action") == "save":
        retention.save_policy(policy, caller())
        return _automation(message="Retention policy saved: " + policy.describe() + ".", preview=preview)
    return _automation(retention_form=form, preview=preview)


@bp.post("/archives/<name>/pin/<int:on>")
def pin_archive(name, on):
    info = get_archive(name)
    if info.kind != "backup":
        return _refusal("Only backups are kept by retention; exports expire on their own rule.", 400)
    retention.set_pinned(info.name, bool(on), caller())
    if not htmx:
        return redirect(url_for("backup.index"))
    return render_template("backup/_archives.html", **archives_view(True))
