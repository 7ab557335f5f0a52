"""Login throttling: failed attempts per client IP and per account; successes cost nothing."""
from flask import current_app, request

from app.extensions import limiter


def _account_key():
    return "account:" + (request.form.get("email") or "").strip().lower()


def _failed(response):
    return response.status_code != 302


def throttled(view):
    """Limit failed POSTs to a login view, by client IP and by the account named in the form."""
    per_ip = limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_IP"], methods=["POST"], deduct_when=_failed)
    per_account = limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], methods=["POST"],
                                key_func=_account_key, deduct_when=_failed)
    return per_ip(per_account(view))
