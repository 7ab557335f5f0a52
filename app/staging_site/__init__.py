"""The staging copy's storefront, read-only, at /staging/: super-admins at maintainer networks only.

GET requests for storefront pages (and the application's own static files, which the pages link to) are
forwarded to the storefront app that renders the staging copy (app.operations.staging.app_for); its
answer comes back with its body, its status and only a few safe headers (never a cookie, never a
redirect to elsewhere), marked noindex. Anything else under /staging/ is a 404: the copy's admin, its
login and every POST stay unreachable.

The factory installs this blueprint's gate (the backup page's: ``access.store_admin_gate``); the
blueprint also runs that same gate itself, so the copy is never served without it.
"""
from flask import Blueprint, abort, current_app, request

from app.operations import staging
from app.security import access

PREFIX = "/staging"
MAINTAINER_EXEMPT = frozenset()  # every endpoint here needs a maintainer network
SAFE_HEADERS = ("Content-Type", "Content-Disposition", "Cache-Control", "Content-Security-Policy",
                "X-Content-Type-Options")
NO_COPY = "There is no staging copy; restore one from the Backup & Restore page."

bp = Blueprint("staging", __name__, url_prefix=PREFIX)
bp.before_request(access.store_admin_gate(MAINTAINER_EXEMPT))


@bp.get("/", defaults={"rest": ""})
@bp.get("/<path:rest>")
def page(rest):
    store = staging.current()
    if store is None:
        abort(404, description=NO_COPY)
    app = staging.app_for(store)
    path = "/" + rest
    if not (staging.serves(app, path) or _static_file(app, path)):
        abort(404, description="The staging copy serves its storefront only.")
    inner = app.test_client().get(path, query_string=request.query_string.decode("latin-1"),
                                  base_url=request.host_url.rstrip("/") + PREFIX)
    try:
        response = current_app.response_class(inner.get_data(), status=inner.status_code)
        for name in SAFE_HEADERS:
            if name in inner.headers:
                response.headers[name] = inner.headers[name]
    finally:
        inner.close()
    response.headers["Cache-Control"] = _private(response.headers.get("Cache-Control"))
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _static_file(app, path):
    """The application's own stylesheet, script and icons (the same files as the live app's), which the
    storefront pages link to under /staging/static/."""
    try:
        endpoint, _ = app.url_map.bind("staging.invalid", script_name=PREFIX).match(path, method="GET")
    except Exception:  # werkzeug's NotFound / MethodNotAllowed / RequestRedirect
        return False
    return endpoint == "static"


def _private(cache_control):
    """The copy is for a few signed-in people: never kept by a shared cache."""
    if not cache_control:
        return "no-store"
    return cache_control.replace("public", "private") if "public" in cache_control else f"private, {cache_control}"
