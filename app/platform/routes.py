"""Platform pages: operator login and the maintainer network list."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.throttle import throttled
from app.auth.login import authenticate, end_session, start_session
from app.extensions import db
from app.forms import ConfirmForm, LoginForm, MaintainerNetworkForm
from app.models import MaintainerNetwork, PlatformOperator
from app.platform import bp
from app.platform.maintainers import MaintainerListError, add_network, list_networks, remove_network
from app.security.access import client_ip_text, is_maintainer_ip, request_client_ip
from app import audit
from app.urls import safe_next


@bp.route("/login", methods=["GET", "POST"])
@throttled
def login():
    form = LoginForm()
    if form.validate_on_submit():
        operator = authenticate(PlatformOperator, form.email.data, form.password.data, "platform.login")
        if operator is not None:
            start_session(operator)
            return redirect(safe_next(request.args.get("next")) or url_for("platform.maintainers"))
        flash("Invalid email or password.", "error")
    status = 400 if request.method == "POST" else 200
    return render_template("platform/login.html", form=form), status


@bp.post("/logout")
def logout():
    if ConfirmForm().validate_on_submit():
        audit.record("platform.logout")
        end_session(current_user)
    return redirect(url_for("platform.login"))


@bp.get("/maintainers")
def maintainers():
    return _render_list(MaintainerNetworkForm())


@bp.post("/maintainers")
def add_maintainer():
    form = MaintainerNetworkForm()
    if form.validate_on_submit():
        try:
            entry = add_network(form.cidr.data, form.label.data, current_user.email, caller_ip=request_client_ip())
        except MaintainerListError as error:
            flash(str(error), "error")
            return _render_list(form, status=400)
        flash(f"Added {entry.cidr} ({entry.label}).", "success")
        return redirect(url_for("platform.maintainers"))
    return _render_list(form, status=400)


@bp.post("/maintainers/<int:network_id>/remove")
def remove_maintainer(network_id):
    form = ConfirmForm()
    entry = db.get_or_404(MaintainerNetwork, network_id)
    if form.validate_on_submit():
        try:
            remove_network(entry.cidr, caller_ip=request_client_ip(), confirm_lockout=form.confirm_lockout.data)
        except MaintainerListError as error:
            flash(str(error), "error")
            return _render_list(MaintainerNetworkForm(formdata=None), status=409, lockout_id=network_id)
        flash(f"Removed {entry.cidr}.", "success")
    return redirect(url_for("platform.maintainers"))


def _render_list(form, status=200, lockout_id=None):
    return render_template(
        "platform/maintainers.html",
        form=form,
        confirm_form=ConfirmForm(formdata=None),
        networks=list_networks(),
        client_ip=client_ip_text(),
        inside=is_maintainer_ip(),
        lockout_id=lockout_id,
    ), status


@bp.get("/audit")
def audit_log():
    return render_template("platform/audit.html", events=audit.recent_events())
