"""Retention: the plan against a hand-computed list, the rules it never breaks, and the store's use of it."""
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from app.extensions import db
from app.models import AuditEvent
from app.operations.retention import Generation, Policy, plan

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # a Monday


def daily(first, last, hour=3):
    """One backup a day at ``hour``:00 UTC, named by its day."""
    day, found = first, []
    while day <= last:
        found.append(Generation(day.isoformat(), datetime(day.year, day.month, day.day, hour, tzinfo=UTC), 100))
        day += timedelta(days=1)
    return found


def kept(generations, deletions):
    deleted = {name for name, _ in deletions}
    return sorted(g.name for g in generations if g.name not in deleted)


def test_the_default_policy_keeps_exactly_the_hand_computed_generations():
    """Daily backups from 2025-01-01 to 2026-06-15, policy 7 / 16 days / 8 weeks / 4 months / 2 years:
    - all of the last 7 days (after 06-08 12:00): 06-09 .. 06-15;
    - one a day for 16 days (after 05-23 12:00): 05-24 .. 06-08;
    - the newest of each ISO week for 8 weeks (after 03-28 12:00): 03-29 (week of Mon 03-23), then the
      Sundays 04-05 .. 05-17, and 05-23 (the newest of the week of Mon 05-18 inside the period);
    - the newest of each month for 4 months (after 2025-11-28 12:00): 11-30, 12-31, 01-31, 02-28, 03-28;
    - the newest of each year for 2 years: 2025-11-28;
    - nothing older remains (38 in all)."""
    generations = daily(date(2025, 1, 1), date(2026, 6, 15))
    expected = sorted(
        [f"2026-06-{d:02d}" for d in range(9, 16)]
        + [f"2026-05-{d:02d}" for d in range(24, 32)] + [f"2026-06-{d:02d}" for d in range(1, 9)]
        + ["2026-03-29", "2026-04-05", "2026-04-12", "2026-04-19", "2026-04-26", "2026-05-03", "2026-05-10",
           "2026-05-17", "2026-05-23"]
        + ["2025-11-30", "2025-12-31", "2026-01-31", "2026-02-28", "2026-03-28"]
        + ["2025-11-28"])
    deletions = plan(generations, NOW, Policy())
    assert kept(generations, deletions) == expected and len(expected) == 38
    reasons = dict(deletions)
    assert reasons["2025-01-01"] == "a newer backup of the same year is kept"
    assert reasons["2026-02-27"] == "a newer backup of the same month is kept"
    assert reasons["2026-05-22"] == "a newer backup of the same week is kept"


def test_retention_run_every_day_for_400_days_never_deletes_the_newest_or_anything_under_a_day():
    """A backup every day at 03:00 from 2025-01-01 to 2026-02-04, retention applied 5 minutes after each.
    What is left on 2026-02-04 03:05, worked out by hand (deletions are final, so this differs from one
    plan over all 400 backups):
    - all of the last 7 days: 01-29 .. 02-04; one a day for 16 days: 01-13 .. 01-28;
    - weekly period [2025-11-17 03:05, 2026-01-12 03:05): a day older than the daily period is deleted as
      soon as a newer day of its ISO week joins it, so the newest day of each week is left: 11-23 (its
      Monday 11-17 fell out of the period), the Sundays 11-30 .. 01-11, and Monday 01-12;
    - so only Sundays reach the monthly period [2025-07-17 03:05, 2025-11-17 03:05), which keeps the
      newest of each month: 07-27, 08-31, 09-28, 10-26, 11-16;
    - and only each month's last Sunday reaches the yearly period, which keeps the newest of 2025 there:
      06-29 (July's 07-06 and 07-13 were deleted in the monthly period when 07-20 and 07-27 joined it)."""
    policy, alive = Policy(), []
    for generation in daily(date(2025, 1, 1), date(2026, 2, 4)):
        alive.append(generation)
        now = generation.made + timedelta(minutes=5)
        deleted = {name for name, _ in plan(alive, now, policy)}
        assert generation.name not in deleted
        assert not any(now - g.made < timedelta(days=1) for g in alive if g.name in deleted)
        alive = [g for g in alive if g.name not in deleted]
    expected = (["2025-06-29", "2025-07-27", "2025-08-31", "2025-09-28", "2025-10-26", "2025-11-16"]
                + ["2025-11-23", "2025-11-30", "2025-12-07", "2025-12-14", "2025-12-21", "2025-12-28", "2026-01-04",
                   "2026-01-11", "2026-01-12"]
                + [f"2026-01-{d:02d}" for d in range(13, 32)] + [f"2026-02-{d:02d}" for d in range(1, 5)])
    assert sorted(g.name for g in alive) == expected and len(expected) == 38


def test_the_size_cap_deletes_oldest_first_but_never_a_protected_backup():
    generations = daily(date(2026, 6, 10), date(2026, 6, 15))  # all within 7 days: kept by the periods
    deletions = plan(generations, NOW, Policy(max_bytes=250), protected={"2026-06-10": "pinned"})
    # 600 bytes; 06-10 (pinned) and 06-15 (newest, under a day) stay: 06-11 .. 06-14 go, leaving 200.
    assert [name for name, _ in deletions] == ["2026-06-11", "2026-06-12", "2026-06-13", "2026-06-14"]
    assert all("more than" in rule for _, rule in deletions)


def test_a_single_old_backup_is_never_deleted():
    only = [Generation("old", datetime(2020, 1, 1, tzinfo=UTC), 10**12)]
    assert plan(only, NOW, Policy(max_bytes=1)) == []


def renamed(path, when):
    """The same archive as if made at ``when`` (retention reads the time from the name)."""
    from app.snapshot import container

    stamp = when.strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(container.NAME_PATTERN.sub(
        lambda m: f"{m['store']}-{m['kind']}-{m['parts']}-{stamp}-{m['nonce']}.zip", path.name))
    path.rename(target)
    return target


def last_line(result):
    return result.output.strip().splitlines()[-1]


def test_backups_prune_follows_the_policy_audits_each_deletion_and_spares_exports(app, runner):
    """Through the store: two backups of the same old day; the older one goes, with its rule audited."""
    made = [Path(last_line(runner.invoke(args=["backup", "create", "--parts", "database"]))) for _ in range(3)]
    export = Path(last_line(runner.invoke(args=["backup", "export"])))
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).replace(hour=3, minute=0, second=0, microsecond=0)
    older = renamed(made[0], ten_days_ago)  # in the daily period: one a day is kept, the newest
    newer = renamed(made[1], ten_days_ago + timedelta(hours=1))
    folder = older.parent
    preview = runner.invoke(args=["backup", "prune", "--dry-run"])
    assert preview.exit_code == 0 and f"would delete {older.name}" in preview.output and older.exists()
    done = runner.invoke(args=["backup", "prune"])
    assert done.exit_code == 0 and f"deleted {older.name}" in done.output
    assert sorted(p.name for p in folder.glob("*.zip")) == sorted([newer.name, made[2].name, export.name])
    with app.app_context():
        event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "archive.retention")).one()
        assert event.target == older.name and event.detail == "a newer backup of the same day is kept"


def test_retention_after_a_backup_keeps_the_last_restores_safety_backup_under_the_size_cap(app, runner):
    app.config["RETENTION_MAX_BYTES"] = 1  # every backup over the cap: only protected ones stay
    first = Path(last_line(runner.invoke(args=["backup", "create", "--parts", "database"])))
    restored = runner.invoke(args=["backup", "restore", str(first), "--parts", "database", "--yes"])
    safety = first.parent / restored.output.split("Safety backup of the store as it was: ")[1].split()[0]
    three_days_ago = datetime.now(UTC) - timedelta(days=3)
    plain = renamed(first, three_days_ago)
    kept_safety = renamed(safety, three_days_ago + timedelta(hours=1))
    newest = Path(last_line(runner.invoke(args=["backup", "create", "--parts", "database"])))
    assert sorted(p.name for p in newest.parent.glob("*.zip")) == sorted([kept_safety.name, newest.name])
    assert not plain.exists()


def test_the_page_says_what_the_next_backup_will_delete(app, runner, client, as_role):
    made = [Path(last_line(runner.invoke(args=["backup", "create", "--parts", "database"]))) for _ in range(2)]
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).replace(hour=3, minute=0, second=0, microsecond=0)
    older = renamed(made[0], ten_days_ago)
    renamed(made[1], ten_days_ago + timedelta(hours=1))
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    assert b"data-retention-plan" in page.data and older.name.encode() in page.data
    assert b"a newer backup of the same day is kept" in page.data
    assert b"Backups folder: 2 archives" in page.data


def test_the_page_shows_the_folder_usage_even_before_the_backups_folder_exists(app, client, as_role, tmp_path):
    app.config["BACKUPS_DIR"] = str(tmp_path / "not" / "yet")
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    assert page.status_code == 200 and b"Backups folder: 0 archives" in page.data
