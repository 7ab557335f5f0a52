"""The platform team's area: its own login and the maintainer network list."""
from flask import Blueprint

from app.security.access import GATES, platform_gate

bp = Blueprint("platform", __name__, url_prefix="/platform")

# The only endpoints reachable without an operator session from a maintainer network.
PUBLIC_ENDPOINTS = frozenset({"platform.login"})

GATES["platform"] = platform_gate(PUBLIC_ENDPOINTS)

from app.platform import routes  # noqa: E402,F401
