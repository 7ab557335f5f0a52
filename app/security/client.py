"""Who is asking, from where: the one client-IP helper of the gate, the audit log and throttling."""
from flask import current_app, g, request

from app.security.networks import client_ip, parse_networks


def trusted_proxies(app):
    """TRUSTED_PROXIES, parsed once per app; ValueError names an entry that is not a network."""
    parsed = app.extensions.get("trusted_proxies")
    if parsed is None:
        parsed = app.extensions["trusted_proxies"] = parse_networks(app.config.get("TRUSTED_PROXIES") or ())
    return parsed


def request_client_ip():
    """The client's address for this request (None when it cannot be trusted)."""
    if "client_ip" not in g:
        g.client_ip = client_ip(
            request.environ.get("REMOTE_ADDR"),
            request.headers.getlist("X-Forwarded-For"),
            trusted_proxies(current_app),
        )
    return g.client_ip


def client_ip_text():
    ip = request_client_ip()
    return str(ip) if ip is not None else "unknown"
