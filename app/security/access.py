"""The access gate: login, then role, then network, checked before every admin request."""
from flask import abort, current_app, g, redirect, request, url_for
from flask_login import current_user

from app.extensions import csrf, db, htmx
from app.models import MaintainerNetwork, PlatformOperator, User
from app.security.networks import client_ip, in_networks, parse_network, parse_networks


def request_client_ip():
    """The one place the client address comes from: gate, audit log and throttling."""
    if "client_ip" not in g:
        trusted = current_app.extensions.get("trusted_proxies")
        if trusted is None:
            trusted = current_app.extensions["trusted_proxies"] = parse_networks(
                current_app.config["TRUSTED_PROXIES"]
            )
        g.client_ip = client_ip(
            request.environ.get("REMOTE_ADDR"),
            request.headers.getlist("X-Forwarded-For"),
            trusted,
        )
    return g.client_ip


def client_ip_text():
    ip = request_client_ip()
    return str(ip) if ip is not None else "unknown"


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
    from urllib.parse import urlsplit

    from app.urls import safe_next

    if htmx:
        # Come back to the page the fragment was on, not to the fragment itself.
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        here = safe_next(page.path + (f"?{page.query}" if page.query else "")) if page.netloc == request.host else None
        response = current_app.response_class("", status=401)
        response.headers["HX-Redirect"] = url_for(login_endpoint, next=here)
        return response
    here = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for(login_endpoint, next=here))


def deny(reason):
    abort(403, description=reason)


def outside_network_reason():
    return (
        f"You are connecting from {client_ip_text()}, which is not in the maintainer network list. "
        f"Ask the platform team to add {client_ip_text()} and try again."
    )


# Each admin area's gate, by blueprint name; access_control() runs it before anything reads the body.
GATES = {}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Endpoints that may receive a large body: endpoint -> hook run after the gate and before CSRF
# (which parses the body); it raises request.max_content_length and may refuse the body unread.
LARGE_BODIES = {}


def access_control():
    """The app-wide before_request hook: the area's gate (login, role, network), then CSRF.

    Flask-WTF's own hook is switched off (WTF_CSRF_CHECK_DEFAULT = False) because it would
    parse the body of a request we are about to refuse. The global body limit stays small; a
    LARGE_BODIES hook raises it for its one route, after the gate and before CSRF reads the body.
    """
    gate = GATES.get(request.blueprint)
    if gate is not None:
        refusal = gate()
        if refusal is not None:
            return refusal
    large_body = LARGE_BODIES.get(request.endpoint)
    if large_body is not None:
        refusal = large_body()  # raises the size limit for this route, now that the gate has passed
        if refusal is not None:
            return refusal
    if request.method not in SAFE_METHODS:
        csrf.protect()
    return None


def store_admin_gate(maintainer_exempt):
    """A before_request hook for a store admin blueprint: super_admin, and a maintainer
    network for every endpoint not named in ``maintainer_exempt``."""

    def gate():
        if not current_user.is_authenticated or not isinstance(current_user._get_current_object(), User):
            return deny_anonymous("auth.login")
        if not is_super_admin():
            deny("This page is only available to super-admins.")
        if request.endpoint not in maintainer_exempt and not is_maintainer_ip():
            deny(outside_network_reason())
        return None

    return gate


def platform_gate(public_endpoints):
    """A before_request hook for the platform area: operators only, from a maintainer network only."""

    def gate():
        if request.endpoint in public_endpoints:
            return None
        if not current_user.is_authenticated or not is_operator():
            return deny_anonymous("platform.login")
        if not is_maintainer_ip():
            deny(outside_network_reason())
        return None

    return gate
