"""Is the store being backed up? One answer, green / amber / red, with the reasons in sentences.

    green  the last backup and its age ("Last backup 3 h ago (both, verified when written)")
    amber  a scheduled backup is late (no success for 1.5 intervals), the backups disk is fuller than
           BACKUPS_DISK_WARN_PERCENT, there is no schedule and no backup in the last 7 days, or the newest
           backup was never restored (drill, Verify, dry run) while no backup was in the drill period
    red    a schedule's last run failed, was lost or was skipped, nothing succeeded for 2 intervals, or the
           newest backup failed to restore in a scratch store

The badge on the page and the token-protected JSON endpoint both show ``store_health()``."""
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import current_app

from app.extensions import db
from app.filters import filesize
from app.models import ArchiveTrial, BackupSchedule, JobRun
from app.operations import archives, retention, trials
from app.operations.schedules import interval_of, next_slot, store_zone

LEVELS = ("green", "amber", "red")
ENDED = ("finished", "failed", "lost", "skipped")
NO_SCHEDULE_GRACE = timedelta(days=7)
LATE, MISSED = 1.5, 2  # intervals without a success: amber, red
PART_WORDS = {"database": "database", "files": "files", "both": "database and files"}
ENDINGS = {"failed": "failed", "lost": "did not finish", "skipped": "was skipped"}


@dataclass
class Health:
    level: str                    # "green" | "amber" | "red"
    headline: str
    reasons: list[str] = field(default_factory=list)
    last_backup: dict | None = None   # name, parts, at (ISO, UTC), ago; None when no backup is kept
    disk: dict = field(default_factory=dict)  # archives.folder_usage(): archives, archive_bytes, free, total, percent_used
    schedules: int = 0            # enabled schedules
    checked_at: datetime | None = None
    store: str = ""

    def as_dict(self):
        return {"level": self.level, "headline": self.headline, "reasons": list(self.reasons),
                "last_backup": self.last_backup, "disk": dict(self.disk), "schedules": self.schedules,
                "checked_at": _iso(self.checked_at), "store": self.store}


def store_health(now=None):
    now = _utc(now or datetime.now(timezone.utc))
    findings = []  # (level, headline, reason)
    last = last_backup()
    schedules = db.session.scalars(db.select(BackupSchedule).where(BackupSchedule.enabled.is_(True))
                                   .order_by(BackupSchedule.id)).all()
    for schedule in schedules:
        findings += _schedule_findings(schedule, now)
    if not schedules:
        findings.append(_without_schedule(last, now))
    elif last is None:  # a schedule is set but has not made a backup yet: the store has none
        first = min(next_slot(s, now, store_zone()) for s in schedules)
        findings.append(("amber", "No backup yet",
                         f"The store has no backup yet; the first scheduled one starts at {first:%Y-%m-%d %H:%M} UTC. "
                         "Start one now with Backup if you are about to make a risky change."))
    findings += _trial_findings(last, now)
    disk = archives.folder_usage()
    limit = current_app.config["BACKUPS_DISK_WARN_PERCENT"]
    if disk["percent_used"] > limit:
        findings.append(("amber", f"Backups disk {disk['percent_used']} % full",
                         f"The disk holding the backups is {disk['percent_used']} % full (warning above {limit} %), "
                         f"{filesize(disk['free'])} free. Delete backups you no longer need or ask for more space, "
                         "before a backup fails for lack of room."))
    level = max((f[0] for f in findings), key=LEVELS.index, default="green")
    if level == "green":
        headline = _green_headline(last, now)
    else:
        headline = next(f[1] for f in findings if f[0] == level)
    reasons = [f[2] for f in sorted(findings, key=lambda f: -LEVELS.index(f[0])) if f[2]]
    return Health(level=level, headline=headline, reasons=reasons,
                  last_backup=_backup_info(last, now) if last else None, disk=disk, schedules=len(schedules),
                  checked_at=now, store=current_app.config["STORE_NAME"])


def last_backup():
    """The newest kept backup that reads correctly (any parts, a safety backup too), or None."""
    return archives.newest_backup()


def _schedule_findings(schedule, now):
    interval = interval_of(schedule)
    what = f"The scheduled backup of the {PART_WORDS.get(schedule.parts, schedule.parts)} (every {duration(interval)})"
    runs = db.select(JobRun).where(JobRun.schedule_id == schedule.id, JobRun.kind == "backup")
    ended = db.session.scalars(runs.where(JobRun.state.in_(ENDED)).order_by(JobRun.created_at.desc())).first()
    success = db.session.scalars(runs.where(JobRun.state == "finished").order_by(JobRun.ended_at.desc())).first()
    found = []
    if ended is not None and ended.state in ENDINGS:
        when = _utc(ended.ended_at or ended.created_at)
        error = f": {ended.error}" if ended.error else "."
        found.append(("red", f"Last scheduled backup {ENDINGS[ended.state]}",
                      f"{what} {ENDINGS[ended.state]} {ago(when, now)}{error}"))
    since = _utc(success.ended_at) if success is not None and success.ended_at else _utc(schedule.created_at)
    waited = now - since
    last = f"last succeeded {ago(since, now)}" if success is not None else f"has not succeeded since it was set up {ago(since, now)}"
    if waited > interval * MISSED:
        found.append(("red", f"No successful scheduled backup for {duration(waited)}",
                      f"{what} {last}: two runs or more were missed. Check the backup page for the reason."))
    elif waited > interval * LATE:
        found.append(("amber", "Scheduled backup is late", f"{what} {last}; the next one is overdue."))
    return found


def _trial_findings(last, now):
    """Has the newest backup been restored somewhere (a drill, a Verify, a dry run)? A backup that has never
    been restored is unverified; one that failed to restore is the worst news the badge can give. A newest
    backup not tried yet is fine while another backup passed a trial within the drill period."""
    if last is None:
        return []
    newest = trials.latest_trials([last.name]).get(last.name)
    if newest is not None and not newest.ok:
        return [("red", "Restore drill failed",
                 f"The newest backup, {last.name}, did not restore in a scratch store ({newest.kind}, "
                 f"{ago(_utc(newest.checked_at), now)}): {newest.reason}")]
    if newest is not None:
        return []  # verified by a restore: nothing to say
    period = timedelta(days=current_app.config.get("DRILL_EVERY_DAYS") or 7)
    recent = db.session.scalar(db.select(ArchiveTrial).where(ArchiveTrial.ok.is_(True),
                                                             ArchiveTrial.checked_at > _naive(now - period))
                               .order_by(ArchiveTrial.checked_at.desc()).limit(1))
    if recent is not None:
        return [("green", "", f"The newest backup has not been restored yet; {recent.archive_name} was, "
                              f"{ago(_utc(recent.checked_at), now)}.")]
    return [("amber", "Newest backup not verified by a restore",
             f"The newest backup, {last.name}, has not been restored anywhere yet, and no backup was in the last "
             f"{period.days} days: a backup that has never been restored is unverified. Click Verify on it (it is "
             "restored into a scratch store; the live store is not touched), or wait for the weekly drill.")]


def _without_schedule(last, now):
    if last is None or now - retention.made_at(last.name) > NO_SCHEDULE_GRACE:
        made = "No backup was ever made" if last is None else f"The last backup was {ago(retention.made_at(last.name), now)}"
        return ("amber", "No backup schedule",
                f"No backup schedule is set, and there was no backup in the last 7 days. {made}. "
                "Add a schedule on the backup page so that backups happen without anyone clicking.")
    return ("green", "", "No backup schedule is set: backups are made only when someone starts one.")


def _green_headline(last, now):
    if last is None:
        return "No backup yet"
    return f"Last backup {ago(retention.made_at(last.name), now)} ({last.parts}, verified when written)"


def _backup_info(archive, now):
    made = retention.made_at(archive.name)
    return {"name": archive.name, "parts": archive.parts, "at": _iso(made), "ago": ago(made, now),
            "size": archive.size, "safety": archive.safety}


def duration(span):
    """A span in words, rounded down: "45 min", "3 h", "2 days"."""
    seconds = max(int(span.total_seconds()), 0)
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def ago(moment, now):
    """How long ago, in words: "just now", "12 min ago", "3 h ago", "2 days ago"."""
    span = now - _utc(moment)
    return "just now" if span < timedelta(minutes=1) else f"{duration(span)} ago"


def _utc(moment):
    """Database times are naive UTC; make every time aware so they compare."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _naive(moment):
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _iso(moment):
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


__all__ = ["Health", "store_health", "last_backup", "ago", "duration"]
