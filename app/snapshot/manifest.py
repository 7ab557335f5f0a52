"""The manifest's shape: one strict JSON Schema (Draft 2020-12), checked right after the signature.

The format and its version are read first, so that a manifest of another format or version is
reported as such (not as a schema error). Two versions are read: in version 1 (archives made up to
2026-11-26) ``members`` maps every member's name to its size and SHA-256; in version 2 (written now) it
refers to a member list, ``members.tsv``, by its line count, size and SHA-256, so that the manifest stays
small and the list is read as a stream (docs/archive-format.md). What a schema cannot say (tables and
columns are the application's, the member list equals the ZIP's, dates are real dates, ...) is checked
in ``container`` and ``operations``.
"""
import copy
from collections import OrderedDict

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from app.snapshot.errors import ArchiveInvalid, IncompatibleArchive

FORMAT = "store-snapshot"
FORMAT_VERSION = 2            # what create_archive writes
READ_VERSIONS = (1, 2)        # what this code reads
MEMBER_LIST = "members.tsv"
KINDS = ("export", "backup")
PARTS = ("database", "files", "both")

_TEXT = {"type": "string", "maxLength": 1000}
_COUNT = {"type": "integer", "minimum": 0}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://store-backup.invalid/manifest-v1.schema.json",
    "title": "store-snapshot manifest, format version 1",
    "type": "object",
    "required": ["format", "format_version", "app_version", "schema_revision", "store", "kind", "parts",
                 "created_at", "created_by", "label", "safety", "source_engine", "tables", "files", "members"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "format_version": {"const": FORMAT_VERSION},
        "app_version": _TEXT,
        "schema_revision": _TEXT,
        "store": _TEXT,
        "kind": {"enum": list(KINDS)},
        "parts": {"enum": list(PARTS)},
        "created_at": {"type": "string", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"},
        "created_by": _TEXT,
        "label": {"type": ["string", "null"], "maxLength": 1000},
        "safety": {"type": "boolean"},
        "source_engine": {"type": "string", "maxLength": 100},
        "tables": {
            "type": "array",
            "items": {
                "type": "object",
                # member and raw_bytes: each table's own data member (absent when "database" holds the file)
                "required": ["name", "rows", "columns"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 255},
                    "member": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "rows": _COUNT,
                    "raw_bytes": _COUNT,
                    "columns": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "type"],
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255},
                                           "type": {"type": "string", "minLength": 1, "maxLength": 100}},
                        },
                    },
                },
            },
        },
        "database": {  # optional: the database part as one SQLite database file (app/snapshot/sqlitefile.py)
            "type": "object",
            "required": ["format", "member", "raw_bytes", "page_size"],
            "additionalProperties": False,
            "properties": {"format": {"const": "sqlite"},
                           "member": {"type": "string", "minLength": 1, "maxLength": 1024},
                           "raw_bytes": _COUNT,
                           "page_size": {"enum": [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]}},
        },
        "files": {
            "type": "object",
            "required": ["count", "bytes", "skipped"],
            "additionalProperties": False,
            "properties": {"count": _COUNT, "bytes": _COUNT,
                           "skipped": {"type": "array", "items": {"type": "string"}}},
        },
        "members": {  # version 1: every member; version 2 replaces this (SCHEMA_V2 below)
            "type": "object",
            "propertyNames": {"minLength": 1, "maxLength": 1024},
            "additionalProperties": {
                "type": "object",
                "required": ["size", "sha256"],
                "additionalProperties": False,
                "properties": {"size": _COUNT, "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
            },
        },
    },
}

# Version 2: the same manifest, but ``members`` only refers to the member list (one line per member:
# ``<sha256>\t<size>\t<name>\n``, in archive order); the list itself is checked by the reader.
SCHEMA_V2 = copy.deepcopy(SCHEMA)
SCHEMA_V2["$id"] = "https://store-backup.invalid/manifest-v2.schema.json"
SCHEMA_V2["title"] = "store-snapshot manifest, format version 2"
SCHEMA_V2["properties"]["format_version"] = {"const": 2}
SCHEMA_V2["properties"]["members"] = {
    "type": "object",
    "required": ["list", "count", "bytes", "sha256"],
    "additionalProperties": False,
    "properties": {"list": {"const": MEMBER_LIST}, "count": _COUNT, "bytes": _COUNT,
                   "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
}
SCHEMA_V1 = copy.deepcopy(SCHEMA)
SCHEMA_V1["properties"]["format_version"] = {"const": 1}
# Version 1 never held a database file: every table had its own data member.
del SCHEMA_V1["properties"]["database"]
SCHEMA_V1["properties"]["tables"]["items"]["required"] = ["name", "member", "rows", "raw_bytes", "columns"]
SCHEMA = SCHEMA_V2  # the version written
VALIDATORS = {1: Draft202012Validator(SCHEMA_V1), 2: Draft202012Validator(SCHEMA_V2)}
VALIDATOR = VALIDATORS[FORMAT_VERSION]


# Signatures (HMACs under our key, so one per manifest content) of manifests this process found valid: the
# schema costs ~50 us per member, so an archive is validated once per process, not on every listing.
_VALID_SIGNATURES = OrderedDict()
_REMEMBERED = 1024


def check(archive, manifest, signature=None):
    """Refuse a manifest of another format or version, or one that is not exactly the schema's shape.

    ``signature``: the manifest's verified HMAC, to skip a validation this process has already done."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveInvalid(f"{archive} is not a store snapshot archive; nothing was changed.")
    version = manifest.get("format_version")
    if version not in READ_VERSIONS or isinstance(version, bool):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > max(READ_VERSIONS)
        raise IncompatibleArchive(
            f"{archive} uses archive format {_short(version)}; this version of the application reads formats "
            f"{' and '.join(map(str, READ_VERSIONS))}. "
            + ("Upgrade the application first." if newer else "It cannot be restored here."))
    if signature is not None and signature in _VALID_SIGNATURES:
        return
    error = best_match(VALIDATORS[version].iter_errors(manifest))
    if error is not None:
        raise ArchiveInvalid(f"{archive} has an invalid manifest: {problem(error)}; nothing was changed.")
    if signature is not None:
        _VALID_SIGNATURES[signature] = True
        while len(_VALID_SIGNATURES) > _REMEMBERED:
            _VALID_SIGNATURES.popitem(last=False)


def problem(error):
    """One line naming the field (its path in the manifest) and what is wrong with it."""
    where = "/".join(str(part) for part in error.absolute_path)
    if error.validator == "required":
        missing = next((k for k in error.validator_value if k not in error.instance), "?")
        where, what = "/".join(filter(None, [where, str(missing)])), "is missing"
    elif error.validator == "additionalProperties":
        extra = sorted(k for k in error.instance if k not in error.schema.get("properties", {}))
        where, what = "/".join(filter(None, [where, str(extra[0]) if extra else "?"])), "is not a known field"
    elif error.validator == "type":
        what = f"should be {_kind(error.validator_value)}, not {_kind(_json_type(error.instance))}"
    elif error.validator in ("enum", "const"):
        allowed = error.validator_value if error.validator == "enum" else [error.validator_value]
        what = f"is {_short(error.instance)}, not one of {', '.join(_short(v) for v in allowed)}"
    elif error.validator == "pattern":
        what = f"is {_short(error.instance)}, which is not in the expected format"
    elif error.validator == "minimum":
        what = f"is {_short(error.instance)}, below {error.validator_value}"
    elif error.validator in ("maxLength", "minLength"):
        what = "is too long" if error.validator == "maxLength" else "is empty"
    else:
        what = _short(error.message, 120)
    return f"{_short(where or '(the whole manifest)', 120, quote=False)} {what}"


def _json_type(value):
    for name, kinds in (("null", type(None)), ("boolean", bool), ("integer", int), ("number", float),
                        ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kinds):
            return name
    return type(value).__name__


def _kind(value):
    names = value if isinstance(value, list) else [value]
    return " or ".join(f"{'an' if n[0] in 'aeiou' else 'a'} {n}" for n in names)


def _short(value, limit=60, quote=True):
    """A value for a one-line message: repr'd (so control characters show escaped), and cut short."""
    text = repr(value) if quote else str(value).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"
