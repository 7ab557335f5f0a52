"""The Backup & Restore wizard: Sidebar -> Tools -> Backup Data."""
from flask import Blueprint

from app.security.access import GATES, LARGE_BODIES, store_admin_gate

bp = Blueprint("backup", __name__, url_prefix="/admin/tools/backup")

# Endpoints a super-admin may use from anywhere; every other one needs a maintainer network.
# Those serving both exports and backups check the archive's kind themselves (require_maintainer).
MAINTAINER_EXEMPT = frozenset({
    "backup.index", "backup.start_export", "backup.run_status", "backup.download_archive", "backup.delete_archive",
    "backup.audit_log",
})

GATES["backup"] = store_admin_gate(MAINTAINER_EXEMPT)

from app.backup import routes  # noqa: E402

LARGE_BODIES["backup.upload_restore"] = routes.prepare_upload
