"""The Backup & Restore wizard: Sidebar -> Tools -> Backup Data."""
from app.backup import automation  # noqa: F401  (its routes: schedules, retention, pins)
from app.backup.routes import MAINTAINER_EXEMPT, bp, prepare_upload

__all__ = ["bp", "MAINTAINER_EXEMPT", "prepare_upload"]
