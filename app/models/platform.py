"""Platform models: they live in the platform database and no restore ever touches them."""
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.models.store import new_token, utcnow


class PlatformModel(db.Model):
    __abstract__ = True
    __bind_key__ = "platform"


class MaintainerNetwork(PlatformModel):
    __tablename__ = "maintainer_networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cidr: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class PlatformOperator(UserMixin, PlatformModel):
    __tablename__ = "platform_operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    session_token: Mapped[str] = mapped_column(String(64), default=new_token)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    is_super_admin = False
    role = "platform_operator"

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self):
        return self.active

    def get_id(self):
        return f"operator:{self.id}:{self.session_token}"


class AuditEvent(PlatformModel):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))  # "user:email", "operator:email", "cli", "anonymous"
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(500), default="")
    outcome: Mapped[str] = mapped_column(String(20))  # success / failure / denied
    detail: Mapped[str] = mapped_column(Text, default="")


class JobRun(PlatformModel):
    """One export, backup or restore run; the id is the RQ job id."""

    __tablename__ = "job_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # export / backup / restore / inspect
    parts: Mapped[str] = mapped_column(String(20), default="")
    state: Mapped[str] = mapped_column(String(20), default="queued")
    started_by: Mapped[str] = mapped_column(String(255))
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    archive_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # What the job needs to know (ids and choices, never secrets); the RQ job carries only this row's id.
    options: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    result: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # A scheduled run: its schedule, the slot it is for, and its tries at the store's lock while
    # another operation held it (state "waiting" until then, "skipped" after the last try).
    schedule_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    slot: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    not_before: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    ACTIVE_STATES = ("queued", "started")


class StoreStatus(PlatformModel):
    """Operational state of the store that must survive a restore: maintenance and session epoch."""

    __tablename__ = "store_status"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_reason: Mapped[str] = mapped_column(String(200), default="")
    # A maintenance flag left by a dead worker lifts itself after this moment.
    maintenance_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Part of every store session id: bumping it logs every store user out (after a restore).
    session_epoch: Mapped[int] = mapped_column(Integer, default=1)

    @classmethod
    def get(cls):
        """The store's status; an unsaved default when none was written yet (reading never writes)."""
        return db.session.get(cls, 1) or cls(id=1, maintenance=False, session_epoch=1)

    @classmethod
    def for_update(cls):
        """The status row, added to the session so the caller can change and commit it."""
        status = db.session.get(cls, 1)
        if status is None:
            status = cls(id=1, maintenance=False, session_epoch=1)
            db.session.add(status)
        return status


class BackupSchedule(PlatformModel):
    """When backups run by themselves. Times are the store's local time (STORE_TIMEZONE)."""

    __tablename__ = "backup_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parts: Mapped[str] = mapped_column(String(20))
    frequency: Mapped[str] = mapped_column(String(10))  # hourly / daily / weekly
    every_hours: Mapped[int | None] = mapped_column(Integer, nullable=True)  # hourly: every N hours
    at_time: Mapped[str | None] = mapped_column(String(5), nullable=True)  # daily, weekly: "HH:MM"
    weekdays: Mapped[str | None] = mapped_column(String(20), nullable=True)  # weekly: "0,3" (Monday = 0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The newest slot the scheduler has started a run for (UTC): each slot is started once.
    last_slot: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RetentionSetting(PlatformModel):
    """The store's retention policy as saved from the page (one row; absent: the configured defaults)."""

    __tablename__ = "retention_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    keep_all_days: Mapped[int] = mapped_column(Integer)
    daily_days: Mapped[int] = mapped_column(Integer)
    weekly_weeks: Mapped[int] = mapped_column(Integer)
    monthly_months: Mapped[int] = mapped_column(Integer)
    yearly_years: Mapped[int] = mapped_column(Integer)
    max_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    export_days: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ArchivePin(PlatformModel):
    """A kept archive a user marked "Keep forever": retention never deletes it."""

    __tablename__ = "archive_pins"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    pinned_by: Mapped[str] = mapped_column(String(255))
    pinned_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Destination(PlatformModel):
    """An off-site copy target the platform team configured: an S3-compatible bucket. Its secret is
    here only when it is not read from the environment (``credentials_env``); nothing shows it back."""

    __tablename__ = "offsite_destinations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint_url: Mapped[str] = mapped_column(String(500))
    bucket: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(500), default="")
    region: Mapped[str] = mapped_column(String(64), default="us-east-1")
    # "OFFSITE_MAIN": the keys are OFFSITE_MAIN_ACCESS_KEY_ID / OFFSITE_MAIN_SECRET_ACCESS_KEY in the environment.
    credentials_env: Mapped[str | None] = mapped_column(String(64), nullable=True)
    access_key_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    secret_access_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Send S3 checksums (boto3's default); some S3-compatible providers reject them.
    checksums: Mapped[bool] = mapped_column(Boolean, default=True)
    # An age public key ("age1..."): copies are encrypted to it, and only its identity can read them.
    age_recipient: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Days a copy is locked (S3 object lock, COMPLIANCE mode) against deletion; 0: no lock.
    object_lock_days: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    def __repr__(self):
        return f"<Destination {self.name}>"


class ArchiveCopy(PlatformModel):
    """One archive's copy in one destination: pending, copying, verified (read back and compared with
    our SHA-256) or failed (with the reason, and when it is tried again)."""

    __tablename__ = "archive_copies"
    __table_args__ = (UniqueConstraint("archive_name", "destination_id", name="uq_archive_copies_archive_destination"),)

    STATES = ("pending", "copying", "verified", "failed")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    archive_name: Mapped[str] = mapped_column(String(255), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("offsite_destinations.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    object_name: Mapped[str | None] = mapped_column(String(512), nullable=True)  # in the bucket, under its prefix
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # bytes sent (the encrypted size if so)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of the bytes sent
    archive_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of the archive itself
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ArchiveTrial(PlatformModel):
    """An archive restored into a scratch store and checked there: a dry run before a restore, a
    "Verify" a person asked for, or the scheduled drill. ``ok`` False says why (and where) it failed."""

    __tablename__ = "archive_trials"

    KINDS = ("dry run", "verify", "drill")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    archive_name: Mapped[str] = mapped_column(String(255), index=True)
    archive_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(20))
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    table_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    row_label: Mapped[str | None] = mapped_column(String(500), nullable=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    started_by: Mapped[str] = mapped_column(String(255))
    checked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
