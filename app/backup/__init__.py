"""The Backup & Restore wizard: Sidebar -> Tools -> Backup Data."""
from app.backup import automation, offsite  # noqa: F401  (their routes: schedules, retention, pins; off-site)
from app.backup.routes import MAINTAINER_EXEMPT, bp, prepare_upload

__all__ = ["bp", "MAINTAINER_EXEMPT", "prepare_upload"]
