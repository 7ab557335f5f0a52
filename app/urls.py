"""URL helpers."""
import unicodedata
from urllib.parse import urlsplit


def _has_control_characters(text):
    # C0/C1 controls and DEL (Cc), and the Unicode line/paragraph separators. Browsers silently
    # drop tabs and line breaks from URLs ("/\t/evil.example" becomes "//evil.example"), and a
    # line break in a Location header is refused by the server (a 500): either way, drop it.
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


def safe_next(target):
    """A local path to go back to after login; anything pointing elsewhere is dropped."""
    if not target or not isinstance(target, str) or _has_control_characters(target):
        return None
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target
