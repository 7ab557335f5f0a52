"""The application factory."""
import os
from pathlib import Path

from flask import Flask, render_template, request
from flask_login import current_user

from app.extensions import csrf, db, htmx, limiter, login_manager, migrate
from config import CONFIGS, ProductionConfig


def create_app(config_name=None, overrides=None):
    config_class = CONFIGS[config_name or os.environ.get("APP_ENV", "development")]
    if config_class is ProductionConfig:
        ProductionConfig.check(None)
    app = Flask(__name__, template_folder="../templates", static_folder="../static",
                instance_path=str(Path(__file__).resolve().parent.parent / "instance"))
    from app.backup.uploads import UploadRequest

    app.request_class = UploadRequest
    app.config.from_object(config_class)
    app.config.update(overrides or {})
    for key in ("UPLOADS_DIR", "BACKUPS_DIR"):
        Path(app.config[key]).mkdir(parents=True, exist_ok=True, mode=0o700)
    _ensure_sqlite_folders(app)

    db.init_app(app)
    with app.app_context():
        _tune_sqlite(db.engines.values())
    migrate.init_app(app, db, directory=str(Path(__file__).resolve().parent.parent / "migrations"))
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", _limiter_storage(app.config.get("REDIS_URL")))
    limiter.init_app(app)
    htmx.init_app(app)
    _init_login(app)

    from app.admin import bp as admin_bp
    from app.auth import bp as auth_bp
    from app.backup import bp as backup_bp
    from app.platform import bp as platform_bp
    from app.storefront import bp as storefront_bp

    for blueprint in (auth_bp, admin_bp, backup_bp, platform_bp, storefront_bp):
        app.register_blueprint(blueprint)

    from app.security.access import access_control

    app.before_request(access_control)
    _register_errors(app)
    _register_cli(app)
    from app import filters

    filters.register(app)

    @app.context_processor
    def inject_access():
        from app.security.access import is_super_admin

        return {"is_super_admin": current_user.is_authenticated and is_super_admin()}

    return app


def _ensure_sqlite_folders(app):
    urls = [app.config["SQLALCHEMY_DATABASE_URI"], *app.config["SQLALCHEMY_BINDS"].values()]
    for url in urls:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _limiter_storage(url):
    """Throttling state lives in Redis; only the embedded-Redis demo keeps it in memory."""
    if not url:
        return "memory://"
    return "redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def _tune_sqlite(engines):
    """SQLite: readers do not wait for the worker's writes (WAL), and foreign keys are enforced."""
    from sqlalchemy import event

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
    from app.models import PlatformOperator, StoreStatus, User

    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    # "strong" would tie the session to the client address, which a proxy can forge; we do not.
    login_manager.session_protection = None

    @login_manager.user_loader
    def load_user(session_id):
        from flask import session

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

    from flask_limiter.errors import RateLimitExceeded

    @app.errorhandler(RateLimitExceeded)
    def too_many_attempts(error):
        from app import audit

        audit.record("login.throttled", target=request.form.get("email", "")[:255], outcome="denied",
                     actor="anonymous")
        error.description = "Too many failed login attempts. Wait a few minutes and try again."
        return render_error(error, 429)

    for status in (400, 401, 403, 404, 405, 413, 500, 503):
        app.register_error_handler(status, lambda error, status=status: render_error(error, status))

    from flask_wtf.csrf import CSRFError

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


def _register_cli(app):
    from app.cli import register

    register(app)
