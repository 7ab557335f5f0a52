"""Who is asking, from where: the one client-IP helper of the gate, the audit log and throttling."""
from flask import current_app, g, request

from app.security.networks import client_ip, parse_networks


def request_client_ip():
    """The client's address for this request (None when it cannot be trusted)."""
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
