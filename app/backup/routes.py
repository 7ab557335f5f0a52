"""Routes of the wizard: parse, call the service, render."""
from flask import render_template

from app.backup import bp
from app.security.access import client_ip_text, is_maintainer_ip, outside_network_reason


@bp.get("/")
def index():
    maintainer = is_maintainer_ip()
    return render_template(
        "backup/index.html",
        maintainer=maintainer,
        client_ip=client_ip_text(),
        outside_reason=None if maintainer else outside_network_reason(),
    )
