"""Login and logout pages for store users."""
from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import audit
from app.forms import ConfirmForm, LoginForm
from app.extensions import db
from app.models import JobRun, StoreStatus, User
from app.models.store import utcnow
from app.security.login import authenticate, end_session, start_session
from app.security.throttle import throttled
from app.urls import safe_next

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Invalid email or password."


@bp.route("/login", methods=["GET", "POST"])
@throttled
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(User, form.email.data, form.password.data, "login")
        if user is not None:
            start_session(user, store_epoch=StoreStatus.get().session_epoch)
            return redirect(safe_next(request.args.get("next")) or url_for("admin.index"))
        flash(GENERIC_FAILURE, "error")
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form, restored_at=_recent_restore()), status


def _recent_restore():
    """When a restore just ended every session, the login page says why the user is here: a restore that finished
    in the last 15 minutes (its end), or one still running (True): the sessions end when its rows commit, a moment
    before the run itself finishes (the old files are deleted after)."""
    recent = db.session.execute(
        db.select(JobRun.state, JobRun.ended_at).where(
            JobRun.kind == "restore",
            db.or_(db.and_(JobRun.state == "finished", JobRun.ended_at > utcnow() - timedelta(minutes=15)),
                   JobRun.state == "started"))
        .order_by(JobRun.created_at.desc()).limit(1)).first()
    if recent is None:
        return None
    return recent.ended_at if recent.state == "finished" else True


@bp.post("/logout")
def logout():
    form = ConfirmForm()
    if form.validate_on_submit() and current_user.is_authenticated:
        audit.record("logout")
        end_session(current_user)
    return redirect(url_for("auth.login"))
