"""URL helpers."""
from urllib.parse import urlsplit


def safe_next(target):
    """A local path to go back to after login; anything pointing elsewhere is dropped."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
