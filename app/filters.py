"""Jinja filters for sizes, durations and times a person can read."""
from datetime import timezone
from zoneinfo import ZoneInfo


def filesize(value):
    size = float(value or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def duration(seconds):
    if (seconds or 0) < 1:
        return "under a second"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def store_time(moment, zone_name):
    """An instant (aware, or naive UTC) in the store's time zone, with UTC beside it when they differ:
    "Sun 29 Nov 2026 03:30 Europe/Paris (02:30 UTC)"."""
    if moment is None:
        return ""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    local, utc = moment.astimezone(ZoneInfo(zone_name)), moment.astimezone(timezone.utc)
    text = local.strftime("%a %d %b %Y %H:%M")
    if local.utcoffset() == utc.utcoffset() and zone_name in ("UTC", "Etc/UTC"):
        return f"{text} UTC"
    return f"{text} {zone_name} ({utc.strftime('%H:%M')} UTC)"


def register(app):
    app.add_template_filter(filesize)
    app.add_template_filter(duration)
    app.add_template_filter(store_time)
