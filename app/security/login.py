"""Password checks shared by the store and platform logins."""
from flask import session
from flask_login import login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from app import audit
from app.extensions import db
from app.models.store import new_token

# Checked against when the email is unknown, so both failures take the same time.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def authenticate(model, email, password, action):
    """The active account with this email and password, or None; audits either way."""
    email = (email or "").strip().lower()
    account = db.session.scalar(db.select(model).where(db.func.lower(model.email) == email))
    if account is None:
        check_password_hash(_DUMMY_HASH, password)
        ok = False
    else:
        ok = account.check_password(password) and account.active
    audit.record(action, target=email, outcome="success" if ok else "failure",
                 actor=f"{'operator' if action.startswith('platform') else 'user'}:{email}")
    return account if ok else None


def start_session(account, **extra):
    """A fresh session for a fresh login: nothing from before survives (no fixation)."""
    session.clear()
    session.update(extra)
    login_user(account)


def end_session(account):
    """Log out for real: a copy of the old cookie is worthless once the token rotates."""
    account.session_token = new_token()
    db.session.commit()
    logout_user()
    session.clear()
