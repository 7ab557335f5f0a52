"""Retention: which kept backups to delete, and why, so that generations stay without filling the disk.

The policy keeps every backup for KEEP_ALL days, then the newest of each day, ISO week, month and year
for the periods after that (the shape of spatie/laravel-backup's default strategy), then deletes the
oldest until the total is under the size cap. It never deletes: the newest backup, a backup younger
than a day, the safety backup of the last restore (for a week), a backup pinned "Keep forever", or one
whose off-site copy to an enabled destination is not verified yet.
Exports have their own, shorter rule (expire_exports). ``plan`` is a pure function; ``apply_retention``
deletes and audits. The policy is the one saved from the page (platform database), else the config's.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flask import current_app

from app import audit
from app.extensions import db
from app.models import ArchivePin, RetentionSetting
from app.models.store import utcnow
from app.operations import archives, offsite
from app.snapshot.container import NAME_PATTERN

NEVER_YOUNGER_THAN = timedelta(days=1)
SAFETY_BACKUP_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class Policy:
    keep_all_days: int = 7
    daily_days: int = 16
    weekly_weeks: int = 8
    monthly_months: int = 4
    yearly_years: int = 2
    max_bytes: int = 0  # 0: no size cap
    export_days: int = 7

    FIELDS = ("keep_all_days", "daily_days", "weekly_weeks", "monthly_months", "yearly_years", "max_bytes",
              "export_days")

    @classmethod
    def from_config(cls, config):
        return cls(config["RETENTION_KEEP_ALL_DAYS"], config["RETENTION_DAILY_DAYS"], config["RETENTION_WEEKLY_WEEKS"],
                   config["RETENTION_MONTHLY_MONTHS"], config["RETENTION_YEARLY_YEARS"], config["RETENTION_MAX_BYTES"],
                   config["EXPORT_TTL_DAYS"])

    def describe(self):
        cap = f", and at most {self.max_bytes / 1e9:.1f} GB in all" if self.max_bytes else ""
        return (f"every backup for {self.keep_all_days} days, then one a day for {self.daily_days} days, one a week "
                f"for {self.weekly_weeks} weeks, one a month for {self.monthly_months} months and one a year for "
                f"{self.yearly_years} years{cap}")


@dataclass(frozen=True)
class Generation:
    """A kept backup as retention sees it."""

    name: str
    made: datetime  # UTC
    size: int


def made_at(name):
    """When an archive was made, from its name (UTC)."""
    return datetime.strptime(NAME_PATTERN.match(name)["stamp"], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)


def _months_before(moment, months):
    month = moment.month - 1 - months
    year, month = moment.year + month // 12, month % 12 + 1
    day = min(moment.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
                           31, 31, 30, 31, 30, 31][month - 1])
    return moment.replace(year=year, month=month, day=day)


def plan(generations, now, policy, protected=None):
    """[(name, rule)] of the backups to delete, oldest first. ``protected`` maps names to the reason
    they are never deleted (added to: the newest, and anything younger than a day)."""
    protected = dict(protected or {})
    newest_first = sorted(generations, key=lambda g: g.made, reverse=True)
    if not newest_first:
        return []
    protected.setdefault(newest_first[0].name, "the newest backup")
    for g in newest_first:
        if now - g.made < NEVER_YOUNGER_THAN:
            protected.setdefault(g.name, "younger than a day")

    all_until = now - timedelta(days=policy.keep_all_days)
    daily_until = all_until - timedelta(days=policy.daily_days)
    weekly_until = daily_until - timedelta(weeks=policy.weekly_weeks)
    monthly_until = _months_before(weekly_until, policy.monthly_months)
    yearly_until = _months_before(monthly_until, 12 * policy.yearly_years)
    periods = [  # (starts at, bucket of a backup, what the bucket is called)
        (daily_until, lambda d: d.date(), "day"),
        (weekly_until, lambda d: d.isocalendar()[:2], "week"),
        (monthly_until, lambda d: (d.year, d.month), "month"),
        (yearly_until, lambda d: d.year, "year"),
    ]
    deletions, kept, seen = {}, [], set()
    for g in newest_first:
        if g.made >= all_until:
            kept.append(g)
            continue
        period = next(((start, bucket, unit) for start, bucket, unit in periods if g.made >= start), None)
        if period is None:
            deletions[g.name] = "older than every retention period"
            continue
        key = (period[2], period[1](g.made))
        if key in seen:  # a newer backup of the same day, week, month or year is kept
            deletions[g.name] = f"a newer backup of the same {period[2]} is kept"
        else:
            seen.add(key)
            kept.append(g)
    if policy.max_bytes:
        total = sum(g.size for g in kept)
        for g in reversed(kept):  # oldest first
            if total <= policy.max_bytes:
                break
            if g.name not in protected:
                deletions[g.name] = f"the backups took more than {policy.max_bytes / 1e9:.1f} GB"
                total -= g.size
    return [(g.name, deletions[g.name]) for g in reversed(newest_first)
            if g.name in deletions and g.name not in protected]


def current_policy():
    """The policy saved from the page, or the configured defaults when none was saved."""
    saved = db.session.get(RetentionSetting, 1)
    if saved is None:
        return Policy.from_config(current_app.config)
    return Policy(**{field: getattr(saved, field) for field in Policy.FIELDS})


def save_policy(policy, caller):
    """Save the store's policy (audited with its description); it applies from the next backup."""
    saved = db.session.get(RetentionSetting, 1) or RetentionSetting(id=1)
    for field in Policy.FIELDS:
        setattr(saved, field, getattr(policy, field))
    saved.updated_by, saved.updated_at = caller.actor, utcnow()
    db.session.add(saved)
    db.session.commit()
    audit.record("retention.policy", detail=f"keep {policy.describe()}; exports {policy.export_days} days",
                 actor=caller.actor, client_ip=caller.client_ip)


def pins():
    """Archives a user marked "Keep forever", by name."""
    return {pin.name: pin for pin in db.session.scalars(db.select(ArchivePin))}


def set_pinned(name, pinned, caller):
    """Mark a kept backup "Keep forever" (retention never deletes it), or take the mark off; audited."""
    pin = db.session.get(ArchivePin, name)
    if pinned and pin is None:
        db.session.add(ArchivePin(name=name, pinned_by=caller.actor))
    elif not pinned and pin is not None:
        db.session.delete(pin)
    else:
        return
    db.session.commit()
    audit.record("archive.pin" if pinned else "archive.unpin", target=name, actor=caller.actor,
                 client_ip=caller.client_ip)


def store_plan(now=None, policy=None):
    """The plan for this store's kept backups under ``policy`` (default: the current one). Unreadable
    archives are left for a person."""
    now = now or datetime.now(timezone.utc)
    kept = [a for a in archives.list_archives() if a.kind == "backup" and not a.problem]
    generations = [Generation(a.name, made_at(a.name), a.size) for a in kept]
    protected = {name: "kept forever" for name in pins()}
    protected.update(_last_safety_backup(kept, now))
    protected.update(offsite.unverified())
    return plan(generations, now, policy or current_policy(), protected)


def _last_safety_backup(kept, now):
    """The safety backup of the last restore (the newest one, from its signed manifest), for a week."""
    safety = [a for a in kept if a.safety]
    newest = max(safety, key=lambda a: made_at(a.name), default=None)
    if newest is not None and now - made_at(newest.name) < SAFETY_BACKUP_KEPT:
        return {newest.name: "the safety backup of the last restore"}
    return {}


def apply_retention(caller, now=None):
    """Delete what the plan says, each deletion audited with the rule that chose it; returns the plan."""
    deletions = store_plan(now)
    for name, rule in deletions:
        archives.delete(name)
        audit.record("archive.retention", target=name, detail=rule, actor=caller.actor, client_ip=caller.client_ip)
    return deletions


def expire_exports(now=None):
    """Exports leave the maintainer network and are kept only the policy's export_days; returns what
    was removed (each removal audited)."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=current_policy().export_days)
    removed = []
    for info in archives.exports():
        if made_at(info.name) < cutoff:
            archives.delete(info.name)
            audit.record("archive.expire", target=info.name, actor="system", detail="export past its time to live")
            removed.append(info.name)
    return removed
