"""The WSGI entry point: gunicorn wsgi:app."""
from app import create_app
from app.operations.maintainers import check_proxies_outside_maintainers

app = create_app()
# The web server refuses to start when a trusted proxy sits inside a maintainer network (its own
# requests would pass as a maintainer's). The CLI still starts, so the list can be fixed.
check_proxies_outside_maintainers(app)
