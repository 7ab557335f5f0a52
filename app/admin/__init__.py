"""The store admin's home: any logged-in store user; the sidebar shows what their role may use."""
from flask import Blueprint, render_template
from flask_login import current_user

from app.models import User
from app.security.access import GATES, deny_anonymous

bp = Blueprint("admin", __name__, url_prefix="/admin")


def gate():
    if not current_user.is_authenticated or not isinstance(current_user._get_current_object(), User):
        return deny_anonymous("auth.login")
    return None


GATES["admin"] = gate


@bp.get("/")
def index():
    return render_template("admin/index.html")
