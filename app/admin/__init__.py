"""The store admin's home: any logged-in store user; the sidebar shows what their role may use."""
from flask import Blueprint, render_template

from app.operations import health
from app.security.access import is_super_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
def index():
    # The backups' health is for the people who can act on it: super-admins.
    return render_template("admin/index.html", health=health.store_health() if is_super_admin() else None)
