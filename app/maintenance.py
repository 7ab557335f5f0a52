"""The storefront's maintenance flag; it lives in the platform database so a restore cannot flip it."""
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import update

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


# Maintenance set for a restore lifts itself this many heartbeat TTLs after its holder's last
# heartbeat, so a worker or command that died cannot leave the storefront closed.
LEASE_HEARTBEATS = 4


def lease_seconds(app):
    return app.config["JOB_HEARTBEAT_TTL"] * LEASE_HEARTBEATS


def extend_maintenance(app):
    """Push the deadline of a maintenance that is on (called by the restore holder's heartbeat)."""
    with app.app_context(), db.engines["platform"].begin() as connection:
        connection.execute(update(StoreStatus).where(StoreStatus.maintenance.is_(True)).values(
            maintenance_until=utcnow() + timedelta(seconds=lease_seconds(app))))


@contextmanager
def maintenance_during(reason, app):
    """The storefront in maintenance for the block, and open again afterwards, also on failure."""
    set_maintenance(True, reason, ttl_seconds=lease_seconds(app))
    try:
        yield
    finally:
        set_maintenance(False)
