"""The access gate: login, then role, then network, checked before every admin request.

The factory installs it with one explicit call (``install``), naming each admin area's gate and
the endpoints that may receive a large body; nothing registers itself on import.
"""
import hmac
import threading
import time
from urllib.parse import urlsplit

from flask import abort, current_app, g, jsonify, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from app import audit
from app.extensions import csrf, db, htmx
from app.models import MaintainerNetwork, PlatformOperator, User
from app.security.client import client_ip_text, request_client_ip
from app.security.networks import in_networks, parse_network
from app.urls import safe_next

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def maintainer_networks():
    rows = db.session.scalars(db.select(MaintainerNetwork.cidr)).all()
    networks = []
    for cidr in rows:
        try:
            networks.append(parse_network(cidr))
        except ValueError:
            current_app.logger.error("Ignoring invalid maintainer network %r", cidr)
    return networks


def is_maintainer_ip():
    """Is this request coming from a maintainer network? An empty list denies everyone."""
    if "is_maintainer" not in g:
        g.is_maintainer = in_networks(request_client_ip(), maintainer_networks())
    return g.is_maintainer


def is_super_admin():
    return isinstance(current_user._get_current_object(), User) and current_user.role == "super_admin"


def is_operator():
    return isinstance(current_user._get_current_object(), PlatformOperator)


def deny_anonymous(login_endpoint):
    """Anonymous users go to the login page; an HTMX request is told to send its page there."""
    if htmx:
        # Come back to the page the fragment was on, not to the fragment itself.
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        here = safe_next(page.path + (f"?{page.query}" if page.query else "")) if page.netloc == request.host else None
        response = current_app.response_class("", status=401)
        response.headers["HX-Redirect"] = url_for(login_endpoint, next=here)
        return response
    here = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for(login_endpoint, next=here))


class DenialLog:
    """Denials go to the audit log, at most one per client and reason a minute and a bounded number
    a minute in all, so a flood of refused requests cannot fill it."""

    def __init__(self, per_key_seconds=60.0, per_minute=120):
        self.per_key_seconds, self.per_minute = per_key_seconds, per_minute
        self.last = {}
        self.window_start, self.in_window = 0.0, 0
        self.mutex = threading.Lock()

    def allow(self, key):
        now = time.monotonic()
        with self.mutex:
            if now - self.window_start >= 60:
                self.window_start, self.in_window = now, 0
                self.last = {k: t for k, t in self.last.items() if now - t < self.per_key_seconds}
            if self.in_window >= self.per_minute or now - self.last.get(key, -1e9) < self.per_key_seconds:
                return False
            self.last[key] = now
            self.in_window += 1
            return True


def record_denial(kind, reason):
    """Audit one refused request (role, network, CSRF), rate-limited per process and app."""
    ip = client_ip_text()
    denials = current_app.extensions.setdefault("denial_log", DenialLog())
    if denials.allow((ip, kind, request.endpoint)):
        audit.record(f"access.{kind}", target=f"{request.method} {request.path}"[:500], outcome="denied",
                     detail=reason, client_ip=ip)


def deny(reason, kind="role"):
    record_denial(kind, reason)
    abort(403, description=reason)


def outside_network_reason():
    return (
        f"You are connecting from {client_ip_text()}, which is not in the maintainer network list. "
        f"Ask the platform team to add {client_ip_text()} and try again."
    )


def deny_outside_network():
    deny(outside_network_reason(), kind="network")


def install(app, gates, large_bodies):
    """Put the gate in front of every request: ``gates`` maps a blueprint name to its gate;
    ``large_bodies`` maps an endpoint to a hook run after the gate and before CSRF reads the body.

    Flask-WTF's own hook is switched off (WTF_CSRF_CHECK_DEFAULT = False) because it would parse
    the body of a request we are about to refuse. The global body limit stays small; a large-body
    hook raises it for its one route, after the gate has passed.
    """
    gates, large_bodies = dict(gates), dict(large_bodies)

    def access_control():
        if request.routing_exception is not None:
            return None  # no route (404) or not this method (405): Flask answers that, no view runs
        gate = gates.get(request.blueprint)
        if gate is not None:
            refusal = gate()
            if refusal is not None:
                return refusal
        large_body = large_bodies.get(request.endpoint)
        if large_body is not None:
            refusal = large_body()
            if refusal is not None:
                return refusal
        if request.method not in SAFE_METHODS:
            try:
                csrf.protect()
            except CSRFError as error:
                record_denial("csrf", error.description)
                raise
        return None

    app.before_request(access_control)


def signed_in_store_user_gate():
    """Any logged-in store user (the admin home)."""
    if not current_user.is_authenticated or not isinstance(current_user._get_current_object(), User):
        return deny_anonymous("auth.login")
    return None


def store_admin_gate(maintainer_exempt):
    """A gate for a store admin blueprint: super_admin, and a maintainer network for every
    endpoint not named in ``maintainer_exempt``."""

    def gate():
        refusal = signed_in_store_user_gate()
        if refusal is not None:
            return refusal
        if not is_super_admin():
            deny("This page is only available to super-admins.")
        if request.endpoint not in maintainer_exempt and not is_maintainer_ip():
            deny_outside_network()
        return None

    return gate


def platform_gate(public_endpoints):
    """A gate for the platform area: operators only, from a maintainer network only."""

    def gate():
        if request.endpoint in public_endpoints:
            return None
        if not current_user.is_authenticated or not is_operator():
            return deny_anonymous("platform.login")
        if not is_maintainer_ip():
            deny_outside_network()
        return None

    return gate


def token_gate(config_key):
    """A gate for an area machines poll (monitoring): ``Authorization: Bearer <token>`` matching the
    setting ``config_key``, never a session. Unset, the area does not exist (404); a missing or wrong
    token is a 401, audited like any denial."""

    def gate():
        expected = current_app.config.get(config_key)
        if not expected:
            abort(404)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), str(expected).encode()):
            return None
        record_denial("token", "missing or wrong token" if given else "no token")
        response = jsonify(error="A valid token is required: send the header 'Authorization: Bearer <token>'.")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = "Bearer"
        response.headers["Cache-Control"] = "no-store"
        return response

    return gate
