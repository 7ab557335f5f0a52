"""The Backup & Restore wizard: Sidebar -> Tools -> Backup Data."""
from app.backup.routes import MAINTAINER_EXEMPT, bp, prepare_upload

__all__ = ["bp", "MAINTAINER_EXEMPT", "prepare_upload"]
