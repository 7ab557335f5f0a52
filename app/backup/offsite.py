"""Restore from off-site: list a destination's copies, fetch one (decrypted with the identity the user
gives for this request only) into the uploads waiting for a check, and go on with the usual review.
Maintainer networks only, like Restore. The destinations themselves are the platform team's
(app/platform): here a super-admin can only read from them."""
from flask import render_template, request

from app.backup.routes import _refusal, _start, bp, caller
from app.operations import offsite


@bp.get("/restore/offsite")
def offsite_archives():
    name = request.args.get("destination", "")
    try:
        destination = offsite.get_destination(name)
        remote = offsite.list_remote(destination)
    except offsite.OffsiteError as error:
        return _refusal(str(error), 404 if "no off-site destination" in str(error) else 502)
    return render_template("backup/_offsite.html", destination=offsite.describe(destination), remote=remote)


@bp.post("/restore/offsite")
def fetch_offsite():
    """Fetch in this request, not in a job: the identity must never go into Redis or a job's arguments."""
    identity = request.form.get("identity", "").strip() or None
    try:
        options = offsite.fetch_for_restore(request.form.get("destination", ""), request.form.get("name", ""),
                                            identity=identity, caller=caller())
    except offsite.OffsiteError as error:
        return _refusal(str(error), 422)
    return _start("inspect", options=options)
