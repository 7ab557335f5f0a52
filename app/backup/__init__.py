"""The Backup & Restore wizard: Sidebar -> Tools -> Backup Data."""
from flask import Blueprint

from app.security.access import GATES, store_admin_gate

bp = Blueprint("backup", __name__, url_prefix="/admin/tools/backup")

# Endpoints a super-admin may use from anywhere; every other one needs a maintainer network.
MAINTAINER_EXEMPT = frozenset({"backup.index"})

GATES["backup"] = store_admin_gate(MAINTAINER_EXEMPT)

from app.backup import routes  # noqa: E402,F401
