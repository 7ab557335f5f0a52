"""The app a job runs in: the demo hands its own over; an `rq worker` process builds one."""
import os

from app import create_app
from app.extensions import db

_app = None
_pid = None


def use_app(app):
    """Run jobs in this app (the demo: web and worker share one process and one embedded Redis)."""
    global _app, _pid
    _app, _pid = app, os.getpid()


def worker_app():
    global _app, _pid
    if _app is None:
        _app, _pid = create_app(), os.getpid()
    elif _pid != os.getpid():
        # A forked work horse must not share the parent's database connections.
        with _app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)
        _pid = os.getpid()
    return _app
