"""What a restore would change: the archive's summary side by side with the store as it is now."""
import dataclasses
from datetime import datetime
from pathlib import Path

from flask import current_app

from app.extensions import db
from app.models import Order, store_metadata


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
    """Row counts now, and plain sentences about what the store has that the archive does not."""
    tables, file_count = current_counts()
    data = summary_dict(summary)
    losses = []
    created_at = getattr(summary, "created_at", None)
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
