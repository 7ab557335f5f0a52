"""An archive's signed summary: what the list shows, kept beside an archive in a bucket.

Listing a bucket must never download archives, so each archive gets a small sidecar object,
"<name>.manifest.json", holding the fields of its signed manifest the page shows, plus its size and
our SHA-256. The sidecar is signed with the same key as the manifest (under its own tag, so neither
signature can stand in for the other): whoever can write to the bucket but lacks the key can neither
forge a summary nor move one to another archive (the name, size and SHA-256 are in what is signed).
"""
import hmac
import json

from app.snapshot.container import KINDS, NAME_PATTERN, PARTS, sign

SUFFIX = ".manifest.json"
MAX_BYTES = 64 * 1024
_TAG = b"store-backup archive summary v1\n"
# The manifest's fields a listing, a retention plan or a restore's first refusals need.
FIELDS = ("store", "kind", "parts", "created_at", "created_by", "label", "safety", "schema_revision",
          "app_version", "format_version")


class SummaryInvalid(Exception):
    """The sidecar is not one we wrote for this archive; the message says so for the list."""


def sidecar_name(name):
    return name + SUFFIX


def make(name, manifest, size, sha256, signing_key):
    """The sidecar's bytes for the archive `name` whose signed manifest is `manifest`."""
    fields = {key: manifest[key] for key in FIELDS}
    body = json.dumps({"name": name, "size": size, "sha256": sha256, **fields}, sort_keys=True)
    return json.dumps({"summary": body, "signature": _signature(body, signing_key)}).encode()


def read(name, data, signing_key):
    """The summary of `name` from its sidecar's bytes, once its signature and contents check out."""
    if len(data) > MAX_BYTES:
        raise SummaryInvalid(f"The summary of {name} is too large to be ours; it was not read.")
    try:
        outer = json.loads(data)
        body, signature = outer["summary"], outer["signature"]
        if not isinstance(body, str) or not isinstance(signature, str):
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):
        raise SummaryInvalid(f"The summary of {name} in the bucket is unreadable; it may be damaged.") from None
    if not hmac.compare_digest(signature, _signature(body, signing_key)):
        raise SummaryInvalid(f"The summary of {name} is not signed with this store's key (tampered with, or "
                             "made with another BACKUP_SIGNING_KEY); it was not trusted.")
    summary = json.loads(body)
    match = NAME_PATTERN.match(name)
    if (summary.get("name") != name or summary.get("kind") not in KINDS or summary.get("parts") not in PARTS
            or not match or (match["kind"], match["parts"]) != (summary["kind"], summary["parts"])):
        raise SummaryInvalid(f"The summary stored for {name} belongs to another archive; it was not trusted.")
    return summary


def listing_fields(summary):
    """The ArchiveInfo fields the list shows, exactly as a local listing gives them."""
    return {"created_at": summary["created_at"].replace("T", " ").rstrip("Z"), "created_by": summary["created_by"],
            "label": summary["label"], "safety": summary["safety"], "kind": summary["kind"],
            "parts": summary["parts"]}


def _signature(body, signing_key):
    return sign(_TAG + body.encode(), signing_key)
