"""The storefront's maintenance flag; it lives in the platform database so a restore cannot flip it."""
from datetime import timedelta

from app.extensions import db
from app.models import StoreStatus
from app.models.store import utcnow


def in_maintenance():
    status = db.session.get(StoreStatus, 1)
    if status is None or not status.maintenance:
        return False
    # A flag left behind by a worker that died lifts itself once its deadline passes.
    return status.maintenance_until is None or status.maintenance_until > utcnow()


def set_maintenance(on, reason="", ttl_seconds=None):
    status = StoreStatus.for_update()
    status.maintenance = on
    status.maintenance_reason = reason if on else ""
    status.maintenance_until = utcnow() + timedelta(seconds=ttl_seconds) if on and ttl_seconds else None
    db.session.commit()
