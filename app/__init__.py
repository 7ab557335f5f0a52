"""The application factory."""
import os
from pathlib import Path

from flask import Flask, render_template, request, session
from flask_limiter.errors import RateLimitExceeded
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import event

from app import audit, filters
from app.cli import register as register_commands
from app.extensions import csrf, db, htmx, limiter, login_manager, migrate
from app.models import PlatformOperator, StoreStatus, User
from app.requests import UploadRequest
from app.security import access
from app.storage import StorageError
from config import CONFIGS, ProductionConfig

ROOT = Path(__file__).resolve().parent.parent


def create_app(config_name=None, overrides=None):
    config_class = CONFIGS[config_name or os.environ.get("APP_ENV", "development")]
    if config_class is ProductionConfig:
        ProductionConfig.check(None)
    app = Flask(__name__, template_folder="../templates", static_folder="../static",
                instance_path=str(ROOT / "instance"))
    app.request_class = UploadRequest
    app.config.from_object(config_class)
    app.config.update(overrides or {})
    app.extensions["factory"] = create_app  # a second app (a staging copy's storefront) without imports
    for key in ("UPLOADS_DIR", "BACKUPS_DIR"):
        Path(app.config[key]).mkdir(parents=True, exist_ok=True, mode=0o700)
    _create_sqlite_files(app)

    db.init_app(app)
    with app.app_context():
        _tune_sqlite(db.engines.values())
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", _limiter_storage(app.config.get("REDIS_URL")))
    limiter.init_app(app)
    htmx.init_app(app)
    _init_login(app)
    _register_blueprints_and_gates(app)
    _register_errors(app)
    filters.register(app)
    register_commands(app)

    @app.context_processor
    def inject_access():
        return {"is_super_admin": current_user.is_authenticated and access.is_super_admin()}

    return app


def _register_blueprints_and_gates(app):
    """Every area and, in one explicit call, the gate in front of each. The blueprints are imported
    here, not at the top, so that importing the package (as jobs and the CLI do) pulls in none."""
    from app import admin, auth, backup, health, platform, staging_site, storefront

    for area in (auth, admin, backup, health, platform, staging_site, storefront):
        app.register_blueprint(area.bp)
    access.install(
        app,
        gates={
            "admin": access.signed_in_store_user_gate,
            "backup": access.store_admin_gate(backup.MAINTAINER_EXEMPT),
            "platform": access.platform_gate(platform.PUBLIC_ENDPOINTS),
            "health": access.token_gate("HEALTH_TOKEN"),
            "staging": access.store_admin_gate(staging_site.MAINTAINER_EXEMPT),
        },
        large_bodies={"backup.upload_restore": backup.prepare_upload},
    )


def _create_sqlite_files(app):
    """SQLite files are created 0600 before SQLAlchemy opens them (SQLite gives its -wal and -shm
    files the same mode), so no other local user can read the store or the platform database."""
    urls = [app.config["SQLALCHEMY_DATABASE_URI"], *app.config["SQLALCHEMY_BINDS"].values()]
    for url in urls:
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def _limiter_storage(url):
    """Throttling state lives in Redis; only the embedded-Redis demo keeps it in memory."""
    if not url:
        return "memory://"
    return "redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def _tune_sqlite(engines):
    """SQLite: readers do not wait for the worker's writes (WAL), and foreign keys are enforced."""

    def on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    for engine in engines:
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", on_connect)


def _init_login(app):
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    # "strong" would tie the session to the client address, which a proxy can forge; we do not.
    login_manager.session_protection = None

    @login_manager.user_loader
    def load_user(session_id):
        kind, _, rest = session_id.partition(":")
        user_id, _, token = rest.partition(":")
        if not user_id.isdigit() or not token:
            return None
        model = {"user": User, "operator": PlatformOperator}.get(kind)
        if model is None:
            return None
        account = db.session.get(model, int(user_id))
        if account is None or not account.active or account.session_token != token:
            return None
        # A restore bumps the epoch: every store session from before it is over.
        if model is User and session.get("store_epoch") != StoreStatus.get().session_epoch:
            return None
        return account


def _register_errors(app):
    def render_error(error, status):
        description = getattr(error, "description", "")
        if htmx:
            return render_template("errors/_alert.html", status=status, message=description), status
        return render_template("errors/error.html", status=status, message=description), status

    @app.errorhandler(RateLimitExceeded)
    def too_many_attempts(error):
        audit.record("login.throttled", target=request.form.get("email", "")[:255], outcome="denied",
                     actor="anonymous")
        error.description = "Too many failed login attempts. Wait a few minutes and try again."
        return render_error(error, 429)

    for status in (400, 401, 403, 404, 405, 413, 500, 503):
        app.register_error_handler(status, lambda error, status=status: render_error(error, status))

    @app.errorhandler(StorageError)
    def archive_store_unavailable(error):
        """The bucket holding the archives does not answer (wrong keys, missing bucket, server down): say so
        on the page instead of a 500; nothing was changed by a request that could not read it."""
        app.logger.warning("The archive store cannot be read: %s", error)
        error.description = f"The archive store cannot be read right now: {error} Nothing was changed."
        return render_error(error, 503)

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        error.description = "Your form expired or was sent without its security token. Reload the page and try again."
        return render_error(error, 400)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        if request.blueprint in ("backup", "platform", "auth"):
            response.headers["Cache-Control"] = "no-store"
        return response
