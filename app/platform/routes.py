"""Platform pages: operator login, the maintainer network list and the off-site destinations."""
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.extensions import db
from app.forms import ConfirmForm, DestinationForm, LoginForm, MaintainerNetworkForm
from app.models import Destination, MaintainerNetwork, PlatformOperator
from app.operations import Caller, offsite
from app.operations.maintainers import (
    MaintainerListError, NeedsWideConfirmation, add_network, list_networks, remove_network,
)
from app.security.login import authenticate, end_session, start_session
from app.security.throttle import throttled
from app.security.access import is_maintainer_ip
from app.security.client import client_ip_text, request_client_ip
from app.security.networks import parse_network
from app import audit
from app.urls import safe_next

bp = Blueprint("platform", __name__, url_prefix="/platform")

# The only endpoints reachable without an operator session from a maintainer network.
PUBLIC_ENDPOINTS = frozenset({"platform.login"})


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
            entry = add_network(form.cidr.data, form.label.data, current_user.email, caller_ip=request_client_ip(),
                                confirm_wide=_wide_confirmed(form))
        except NeedsWideConfirmation as error:
            flash(f"{error} Tick the confirmation to add it anyway.", "error")
            return _render_list(form, status=409, wide_network=str(error.network))
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


def _wide_confirmed(form):
    """The confirmation counts only for the network it was shown for."""
    try:
        confirmed = form.confirm_wide.data and parse_network(form.confirm_wide.data)
        return bool(confirmed) and confirmed == parse_network(form.cidr.data)
    except ValueError:
        return False


def _render_list(form, status=200, lockout_id=None, wide_network=None):
    return render_template(
        "platform/maintainers.html",
        form=form,
        confirm_form=ConfirmForm(formdata=None),
        networks=list_networks(),
        client_ip=client_ip_text(),
        inside=is_maintainer_ip(),
        lockout_id=lockout_id,
        wide_network=wide_network,
    ), status


@bp.get("/audit")
def audit_log():
    return render_template("platform/audit.html", events=audit.recent_events())


# Off-site destinations: where the store's backups are copied. Only the platform team may point them
# somewhere (a stolen store password must not be able to send the backups to an attacker's bucket).

def _operator():
    return Caller(f"operator:{current_user.email}", client_ip_text())


@bp.get("/destinations")
def destinations():
    return _render_destinations(DestinationForm(formdata=None))


@bp.post("/destinations")
def add_destination():
    form = DestinationForm()
    if not form.validate_on_submit():
        return _render_destinations(form, status=400)
    try:
        offsite.add_destination(
            form.name.data, endpoint_url=form.endpoint_url.data, bucket=form.bucket.data, prefix=form.prefix.data,
            region=form.region.data, credentials_env=form.credentials_env.data or None,
            access_key_id=form.access_key_id.data, secret_access_key=form.secret_access_key.data,
            checksums=form.checksums.data, age_recipient=form.age_recipient.data,
            object_lock_days=form.object_lock_days.data or 0, caller=_operator())
    except offsite.DestinationError as error:
        flash(str(error), "error")
        return _render_destinations(form, status=400)
    flash(f"Added the destination {form.name.data}. New backups are copied there; check that it answers below.",
          "success")
    return redirect(url_for("platform.destinations"))


@bp.post("/destinations/<int:destination_id>/<any(check, enable, disable, remove):action>")
def change_destination(destination_id, action):
    if not ConfirmForm().validate_on_submit():
        return _render_destinations(DestinationForm(formdata=None), status=400)
    destination = db.get_or_404(Destination, destination_id)
    name = destination.name
    if action == "check":
        problem = offsite.check_destination(destination)
        flash(f"{name}: {problem}." if problem else f"{name} answers: its bucket is reachable with its credentials.",
              "error" if problem else "success")
    elif action == "remove":
        offsite.remove_destination(destination, _operator())
        flash(f"Removed {name}. The copies already in its bucket stay there.", "success")
    else:
        offsite.set_enabled(destination, action == "enable", _operator())
        flash(f"{name} is {'on' if action == 'enable' else 'off: no new copies go there'}.", "success")
    return redirect(url_for("platform.destinations"))


def _render_destinations(form, status=200):
    form.secret_access_key.data = None  # never sent back to the browser
    return render_template("platform/destinations.html", form=form, confirm_form=ConfirmForm(formdata=None),
                           destinations=offsite.list_destinations()), status
