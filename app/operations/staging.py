"""Staging: an archive restored into a scratch store that is kept, and served read-only at /staging/.

The storefront of the staging copy is rendered by this same application, built a second time with
the scratch store as its store database and folder (``storefront_app``); the live app forwards GET
requests under /staging/ to it, for super-admins at maintainer addresses only. Before it is served,
the copy's payment and mail settings are blanked (``NEUTRALISED``), so nothing in it can charge a card
or send mail with the real store's credentials. One staging copy at a time; "Discard staging" drops it.
"""
import sqlalchemy as sa

from app import audit
from app.extensions import db
from app.operations import archives, trials
from app.snapshot.scratch import ScratchStore

STAGING_FOLDER = "staging"
# Settings blanked in a staging copy: every secret, and every payment or mail setting.
NEUTRALISED = "is_secret OR key LIKE 'payments.%' OR key LIKE 'mail.%' OR key LIKE 'smtp.%'"
_APPS = {}  # scratch token -> the storefront app serving it (built once per process)


def _root():
    return trials.scratch_root() / STAGING_FOLDER


def current():
    """The kept staging copy (a ScratchStore with .info), or None. A copy still being restored (or left half
    made by a process that died) is not one: it says which archive it holds only once it is complete."""
    ready = [store for store in _copies() if store.info.get("archive")]
    return max(ready, key=lambda store: (store.folder / "scratch.json").stat().st_mtime, default=None)


def _copies():
    root = _root()
    found = (ScratchStore.reopen(folder, db.engine) for folder in sorted(root.iterdir())) if root.is_dir() else ()
    return [store for store in found if store is not None]


def create(name, caller, progress=None):
    """Restore the kept archive ``name`` into a new staging copy; once it is complete, it replaces the previous
    one (which stays served until then), and whatever a process that died left half made is dropped."""
    root = _root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = ScratchStore.create(db.engine, root)
    try:
        with archives.readable(name) as local:
            result, plan = trials.load(local, store, progress=progress)
        with store.engine.begin() as connection:
            blanked = connection.scalars(sa.text(f"SELECT key FROM settings WHERE {NEUTRALISED} ORDER BY key")).all()
            connection.execute(sa.text(f"UPDATE settings SET value = '' WHERE {NEUTRALISED}"))
        store.remember(archive=name, created_by=caller.name, neutralised=list(blanked),
                       rows=sum(result.row_counts.values()), files=result.file_count)
    except BaseException:
        store.drop()
        raise
    for other in _copies():
        if other.token != store.token:
            _drop(other)
    audit.record("staging.create", target=name, detail=f"settings blanked: {', '.join(blanked) or 'none'}",
                 actor=caller.actor, client_ip=caller.client_ip)
    return {"archive": name, "neutralised": list(blanked), "rows": sum(result.row_counts.values()),
            "files": result.file_count, "upgrade": plan}


def discard(caller):
    """Drop the staging copy (its database schema or file, and its folder)."""
    store = current()
    if store is None:
        return False
    name = store.info.get("archive", "")
    _drop(store)
    audit.record("staging.discard", target=name, actor=caller.actor, client_ip=caller.client_ip)
    return True


def _drop(store):
    app = _APPS.pop(store.token, None)
    if app is not None:
        trials.dispose(app)
    store.drop()


def app_for(store):
    """The storefront app serving the staging copy (built on first use). Apps of copies that were replaced
    or discarded (by a worker, or another web process) are disposed of here."""
    for token in [t for t in _APPS if t != store.token]:
        trials.dispose(_APPS.pop(token))
    app = _APPS.get(store.token)
    if app is None:
        app = _APPS[store.token] = trials.storefront_app(store, store.info.get("archive", "an archive"))
    return app


def serves(app, path):
    """Only storefront pages are served from a staging copy (never its admin or its login)."""
    try:
        endpoint, _ = app.url_map.bind("staging.invalid", script_name="/staging").match(path, method="GET")
    except Exception:  # werkzeug's NotFound / MethodNotAllowed / RequestRedirect: not a storefront page
        return False
    return endpoint.startswith("storefront.")
