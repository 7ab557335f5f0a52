"""What a restore would change: the archive's summary side by side with the store as it is now."""
import dataclasses
from datetime import datetime
from pathlib import Path

from flask import current_app

from app.extensions import db
from app.models import ROLES, Order, User, store_metadata


def summary_dict(summary):
    """The engine's summary as JSON-able data for the run's result."""
    data = dataclasses.asdict(summary) if dataclasses.is_dataclass(summary) else dict(summary)
    return {key: (value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else
                  str(value) if isinstance(value, Path) else value) for key, value in data.items()}


def current_counts():
    tables = {}
    with db.engine.connect() as connection:
        for table in store_metadata().sorted_tables:
            tables[table.name] = connection.scalar(db.select(db.func.count()).select_from(table))
    uploads = Path(current_app.config["UPLOADS_DIR"])
    files = [p for p in uploads.rglob("*") if p.is_file() and not p.is_symlink()] if uploads.is_dir() else []
    return tables, len(files)


def compare_with_store(summary):
    """Row counts now, and plain sentences about what the store has that the archive does not. The summary
    is the engine's, or the data a review stored (summary_dict), to compute it again at confirmation."""
    tables, file_count = current_counts()
    data = summary_dict(summary)
    losses = []
    created_at = getattr(summary, "created_at", None)
    if isinstance(data.get("created_at"), str) and created_at is None:  # a stored review: the summary as data
        created_at = datetime.strptime(data["created_at"], "%Y-%m-%d %H:%M:%S")
    if data.get("parts") in ("database", "both"):
        if isinstance(created_at, datetime):
            naive = created_at.replace(tzinfo=None)
            newer = db.session.scalar(db.select(db.func.count()).select_from(Order).where(Order.placed_at > naive))
            if newer:
                losses.append(f"{newer} order{'s' if newer != 1 else ''} placed after this backup will be lost.")
        for table, count in tables.items():
            archived = (data.get("row_counts") or {}).get(table, 0)
            if count > archived and table != "orders":
                losses.append(f"The store has {count - archived} more {table.replace('_', ' ')} rows than the archive; "
                              "they will be lost.")
    if data.get("parts") in ("files", "both") and file_count > (data.get("file_count") or 0):
        extra = file_count - (data.get("file_count") or 0)
        losses.append(f"The store has {extra} more uploaded file{'s' if extra != 1 else ''} than the archive; "
                      "they will be removed.")
    return {"tables": tables, "files": file_count, "losses": losses}


PRIVILEGED_ROLES = ("admin", "super_admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def privilege_changes(archived_accounts, restorer=None):
    """Who would gain or regain power if the archive's accounts replaced today's, by name: accounts that
    would become admin or super-admin, accounts that would reappear, password hashes that would change,
    and whether the person restoring (an email, or None from the command line) stays a super-admin."""
    today = {user.email.lower(): user for user in db.session.scalars(db.select(User))}
    rises, returns, passwords = [], [], []
    restorer_row = None
    for row in archived_accounts:
        email, role, active = str(row["email"]).lower(), str(row["role"]), bool(row["active"])
        now = today.get(email)
        if restorer is not None and email == restorer.lower():
            restorer_row = row
        powerful = active and role in PRIVILEGED_ROLES
        if now is None:
            returns.append(f"{email} ({role}{'' if active else ', deactivated'})")
            if powerful:
                rises.append(f"{email} would be {_label(role)} (no such account today)")
            continue
        if powerful and (not now.active or _RANK.get(role, -1) > _RANK.get(now.role, -1)):
            today_is = f"{now.role}, deactivated" if not now.active else now.role
            rises.append(f"{email} would become {_label(role)} (today: {today_is})")
        if row["password_hash"] != now.password_hash:
            passwords.append(email)
    stays = None
    if restorer is not None:
        stays = restorer_row is not None and restorer_row["role"] == "super_admin" and bool(restorer_row["active"])
    return {"rises": rises, "returns": returns, "password_changes": passwords, "restorer": restorer,
            "restorer_stays_super_admin": stays}


def _label(role):
    return role.replace("_", "-")
