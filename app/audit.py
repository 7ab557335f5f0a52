"""The audit log: who did what, from where, with which outcome; written outside the request's transaction."""
from flask import has_request_context
from flask_login import current_user

from app.extensions import db
from app.models import AuditEvent, PlatformOperator
from app.models.store import utcnow
from app.security.client import client_ip_text


def actor_name(user=None):
    if user is None:
        if not has_request_context() or not current_user.is_authenticated:
            return "anonymous" if has_request_context() else "cli"
        user = current_user._get_current_object()
    kind = "operator" if isinstance(user, PlatformOperator) else "user"
    return f"{kind}:{user.email}"


def record(action, *, target="", outcome="success", detail="", actor=None, client_ip=None):
    """Write one audit event in its own transaction, so a rolled-back request still leaves its trace."""
    if client_ip is None and has_request_context():
        client_ip = client_ip_text()
    values = dict(
        at=utcnow(),
        actor=actor or actor_name(),
        client_ip=client_ip,
        action=action,
        target=str(target)[:500],
        outcome=outcome,
        detail=str(detail),
    )
    with db.engines["platform"].begin() as connection:
        connection.execute(db.insert(AuditEvent), values)


# What a store's super-admins see of the log: their store's snapshot operations.
STORE_ACTIONS = ("export.", "backup.", "restore.", "inspect.", "archive.")


def recent_events(prefixes=None, limit=200):
    query = db.select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(limit)
    if prefixes:
        query = query.where(db.or_(*[AuditEvent.action.startswith(p) for p in prefixes]))
    return db.session.scalars(query).all()
