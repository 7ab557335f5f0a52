"""Off-site copies: destinations the platform team configures, and each backup copied to them, read
back and compared with our SHA-256, optionally encrypted to an age public key and locked against deletion.

A destination's secret is never shown back, audited or logged. A failed copy never touches the local
archive: it is recorded with its reason and tried again later, doubling the wait each time. Fetching
a copy back (decrypted with an identity given for that call only) feeds the normal inspect → restore flow.
"""
import hashlib
import io
import logging
import os
import re
import secrets
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pyrage
from botocore.exceptions import BotoCoreError, ClientError
from flask import current_app
from pyrage import x25519
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from app import audit
from app.extensions import db
from app.models import ArchiveCopy, Destination
from app.models.store import utcnow
from app.operations import archives, incoming
from app.snapshot import ProgressEvent, SnapshotError
from app.snapshot.progress import Reporter
from app.snapshot.container import NAME_PATTERN
from app.storage import ObjectMissing, S3Bucket, StorageError

ENCRYPTED_SUFFIX = ".age"
# A copy whose row has not moved for this long is taken to be dead (its process was killed).
STALE_COPY = timedelta(minutes=15)
PROGRESS_SECONDS = 1.0
CHUNK = 1024 * 1024
NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
BUCKET_RULE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION_RULE = re.compile(r"^[a-z0-9-]{1,64}$")
ENV_RULE = re.compile(r"^[A-Z][A-Z0-9_]{0,50}$")
MAX_LOCK_DAYS = 36500
log = logging.getLogger(__name__)


class OffsiteError(SnapshotError):
    """Something about off-site copies that was refused or failed (the store and its archives were left as
    they were); the message says why, for a person."""


class DestinationError(OffsiteError, ValueError):
    """A destination that cannot be added or changed as asked."""


# -- destinations (platform operators only: the callers check) ------------------------------------------

def list_destinations():
    """Every destination, described without its secret."""
    return [describe(d) for d in db.session.scalars(select(Destination).order_by(Destination.name))]


def describe(destination):
    """What may be shown of a destination: everything but the keys."""
    return {
        "id": destination.id, "name": destination.name, "endpoint_url": destination.endpoint_url or "AWS S3",
        "bucket": destination.bucket, "prefix": destination.prefix, "region": destination.region,
        "credentials": _credentials_text(destination), "checksums": destination.checksums,
        "encrypted": bool(destination.age_recipient), "age_recipient": destination.age_recipient,
        "object_lock_days": destination.object_lock_days, "enabled": destination.enabled,
        "created_by": destination.created_by, "created_at": destination.created_at,
    }


def _credentials_text(destination):
    if destination.credentials_env:
        prefix = destination.credentials_env
        return f"from the environment ({prefix}_ACCESS_KEY_ID, {prefix}_SECRET_ACCESS_KEY)"
    return "stored in the platform database"


def get_destination(destination):
    """A Destination (or its name) as a row; unknown names are refused with the known ones."""
    if isinstance(destination, Destination):
        return destination
    found = db.session.scalar(select(Destination).where(Destination.name == destination))
    if found is None:
        known = ", ".join(d["name"] for d in list_destinations()) or "none configured"
        raise OffsiteError(f"There is no off-site destination called {destination!r} (known: {known}).")
    return found


def add_destination(name, *, endpoint_url, bucket, caller, prefix="", region="us-east-1", credentials_env=None,
                    access_key_id=None, secret_access_key=None, checksums=True, age_recipient=None,
                    object_lock_days=0, enabled=True):
    """Add a destination after checking every field; audited without its keys."""
    name, endpoint_url, bucket = (name or "").strip(), (endpoint_url or "").strip(), (bucket or "").strip()
    prefix, region = (prefix or "").strip().strip("/"), (region or "us-east-1").strip()
    age_recipient = (age_recipient or "").strip() or None
    if not NAME_RULE.match(name):
        raise DestinationError("A destination's name is lowercase letters, digits, '-' and '_' (at most 64).")
    if db.session.scalar(select(Destination.id).where(Destination.name == name)) is not None:
        raise DestinationError(f"There is already a destination called {name!r}.")
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise DestinationError("The endpoint is an http(s) address such as https://s3.example.com, with no "
                                   "credentials in it (leave it out for AWS S3).")
    if not BUCKET_RULE.match(bucket):
        raise DestinationError(f"{bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.' and '-').")
    if ".." in prefix.split("/") or any(ord(c) < 32 for c in prefix) or len(prefix) > 400:
        raise DestinationError("The prefix is a plain folder path inside the bucket, such as backups/shop.")
    if not REGION_RULE.match(region):
        raise DestinationError(f"{region!r} is not a region name (e.g. us-east-1).")
    access_key_id, secret_access_key = (access_key_id or "").strip() or None, secret_access_key or None
    if credentials_env:
        credentials_env = credentials_env.strip()
        if access_key_id or secret_access_key:
            raise DestinationError("Give the credentials either from the environment or as keys, not both.")
        if not ENV_RULE.match(credentials_env):
            raise DestinationError("The environment prefix is upper-case letters, digits and '_', such as OFFSITE_MAIN "
                                   "(for OFFSITE_MAIN_ACCESS_KEY_ID and OFFSITE_MAIN_SECRET_ACCESS_KEY).")
    elif not (access_key_id and secret_access_key):
        raise DestinationError("Give the destination's credentials: an environment prefix, or both the access key "
                               "id and the secret access key.")
    if age_recipient is not None:
        _recipient(age_recipient)
    if not isinstance(object_lock_days, int) or not 0 <= object_lock_days <= MAX_LOCK_DAYS:
        raise DestinationError(f"Object lock days are a whole number from 0 (off) to {MAX_LOCK_DAYS}.")
    destination = Destination(
        name=name, endpoint_url=endpoint_url, bucket=bucket, prefix=prefix, region=region,
        credentials_env=credentials_env or None, access_key_id=access_key_id, secret_access_key=secret_access_key,
        checksums=bool(checksums), age_recipient=age_recipient, object_lock_days=object_lock_days,
        enabled=bool(enabled), created_by=caller.actor)
    db.session.add(destination)
    db.session.commit()
    audit.record("platform.destination.add", target=name, detail=_audit_text(destination), actor=caller.actor,
                 client_ip=caller.client_ip)
    return destination


def _audit_text(destination):
    d = describe(destination)
    where = f"{d['endpoint_url']} bucket {d['bucket']}" + (f" prefix {d['prefix']}" if d["prefix"] else "")
    return "; ".join([where, f"credentials {d['credentials']}",
                      f"encrypted to {d['age_recipient']}" if d["encrypted"] else "not encrypted",
                      f"object lock {d['object_lock_days']} days" if d["object_lock_days"] else "no object lock",
                      "checksums on" if d["checksums"] else "checksums off",
                      "enabled" if d["enabled"] else "disabled"])


def _recipient(text):
    try:
        return x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise DestinationError(f"{text[:80]!r} is not an age public key (it starts with age1).") from None


def move_endpoint(destination, endpoint_url, caller):
    """Point a destination at another address of the same server (the demo's S3 server gets new ports
    at each start); audited."""
    destination = get_destination(destination)
    if destination.endpoint_url != endpoint_url:
        destination.endpoint_url = endpoint_url
        db.session.commit()
        audit.record("platform.destination.endpoint", target=destination.name, detail=endpoint_url,
                     actor=caller.actor, client_ip=caller.client_ip)
    return destination


def remove_destination(destination, caller):
    """Forget a destination and its copy records (the copies already in its bucket stay there)."""
    destination = get_destination(destination)
    name = destination.name
    db.session.execute(db.delete(ArchiveCopy).where(ArchiveCopy.destination_id == destination.id))
    db.session.delete(destination)
    db.session.commit()
    audit.record("platform.destination.remove", target=name, actor=caller.actor, client_ip=caller.client_ip,
                 detail="its copies stay in the bucket; they are no longer tracked")


def set_enabled(destination, enabled, caller):
    """Turn a destination on or off; a disabled one receives no copies and protects no archive."""
    destination = get_destination(destination)
    destination.enabled = bool(enabled)
    db.session.commit()
    audit.record("platform.destination.enable" if enabled else "platform.destination.disable",
                 target=destination.name, actor=caller.actor, client_ip=caller.client_ip)
    return destination


def _enabled():
    return db.session.scalars(select(Destination).where(Destination.enabled.is_(True))
                              .order_by(Destination.name)).all()


def _bucket(destination):
    """The destination's bucket, its keys read now (from the environment when it says so)."""
    key_id, secret = destination.access_key_id, destination.secret_access_key
    if destination.credentials_env:
        prefix = destination.credentials_env
        key_id, secret = os.environ.get(f"{prefix}_ACCESS_KEY_ID"), os.environ.get(f"{prefix}_SECRET_ACCESS_KEY")
        if not key_id or not secret:
            raise OffsiteError(f"The credentials of {destination.name} come from the environment, but {prefix}_"
                               f"ACCESS_KEY_ID and {prefix}_SECRET_ACCESS_KEY are not both set in this process "
                               "(the web server and every worker need them).")
    return S3Bucket(destination.endpoint_url or None, destination.bucket, destination.prefix, key_id, secret,
                    destination.region, destination.checksums)


# -- copies -------------------------------------------------------------------------------------------------

def object_name(archive_name, destination):
    return archive_name + (ENCRYPTED_SUFFIX if destination.age_recipient else "")


def _find_row(name, destination):
    return db.session.scalar(select(ArchiveCopy).where(ArchiveCopy.archive_name == name,
                                                       ArchiveCopy.destination_id == destination.id))


def _copy_row(name, destination):
    """The (archive, destination) row, created pending when there is none."""
    row = _find_row(name, destination)
    if row is None:
        row = ArchiveCopy(archive_name=name, destination_id=destination.id, state="pending", attempts=0,
                          bytes_done=0, encrypted=bool(destination.age_recipient),
                          object_name=object_name(name, destination), updated_at=utcnow())
        db.session.add(row)
        try:
            db.session.commit()
        except IntegrityError:  # another process made it first
            db.session.rollback()
            row = _find_row(name, destination)
    return row


def plan_copies(name):
    """Right after a backup: a pending copy for every enabled destination (it protects the archive from
    retention until verified); returns how many."""
    destinations = _enabled()
    for destination in destinations:
        _copy_row(name, destination)
    return len(destinations)


def has_unfinished(name):
    """Does the archive wait for a copy to an enabled destination?"""
    return bool(db.session.scalar(
        select(ArchiveCopy.id).join(Destination, Destination.id == ArchiveCopy.destination_id)
        .where(ArchiveCopy.archive_name == name, ArchiveCopy.state != "verified", Destination.enabled.is_(True))
        .limit(1)))


def unverified():
    """{archive name: reason} of archives whose copy to an enabled destination is not verified yet."""
    names = db.session.scalars(
        select(ArchiveCopy.archive_name).join(Destination, Destination.id == ArchiveCopy.destination_id)
        .where(ArchiveCopy.state != "verified", Destination.enabled.is_(True)))
    return {name: "its off-site copy is not verified yet" for name in names}


def _claim(row, now):
    """pending / verified / failed / dead copying → copying, for one process at a time."""
    claimed = db.session.execute(
        update(ArchiveCopy).where(ArchiveCopy.id == row.id,
                                  or_(ArchiveCopy.state != "copying", ArchiveCopy.updated_at < now - STALE_COPY))
        .values(state="copying", attempts=ArchiveCopy.attempts + 1, bytes_done=0, error=None, next_attempt_at=None,
                updated_at=now)).rowcount
    db.session.commit()
    db.session.refresh(row)
    return bool(claimed)


def copy_archive(name, destination, progress=None, caller=None):
    """Copy a kept archive to one destination, read it back and compare; returns the copy's row
    (verified, or failed with the reason and when it is tried next). Never raises for a failed copy."""
    destination = get_destination(destination)
    try:
        archives.check_kept(name)
    except SnapshotError:
        row = _find_row(name, destination)
        if row is None:
            raise  # nothing to copy, and nothing recorded
        if row.state != "verified":  # it can never be copied now: no more retries
            row.state, row.error, row.next_attempt_at = "failed", "the archive is no longer kept here", None
            db.session.commit()
        return row
    row = _copy_row(name, destination)
    if not _claim(row, utcnow()):
        return row  # another process is copying it right now
    row.encrypted, row.object_name = bool(destination.age_recipient), object_name(name, destination)
    db.session.commit()
    try:
        sent = _send(name, destination, row, _Reporter(row, destination, progress))
    except Exception as error:  # every failure is the copy's, never the archive's or the caller's
        return _failed(row, destination, _reason(error), caller)
    row.state, row.verified_at, row.error, row.next_attempt_at, row.attempts = "verified", utcnow(), None, None, 0
    row.sha256, row.archive_sha256, row.size, row.bytes_done = sent["sha256"], sent["archive_sha256"], sent["size"], \
        sent["size"]
    row.locked_until, row.updated_at = sent["locked_until"], utcnow()
    db.session.commit()
    detail = f"to {destination.name}: verified, {row.size} bytes" + (", encrypted" if row.encrypted else "") + \
        (f", locked until {row.locked_until:%Y-%m-%d}" if row.locked_until else "")
    _audit("archive.copy", name, "success", detail, caller)
    return row


def _send(name, destination, row, reporter):
    """Upload the archive (through age when the destination has a recipient), lock it when the destination
    says so, then read it back: {sha256 sent, archive_sha256, size, locked_until}."""
    bucket = _bucket(destination)
    expected = archives.archive_sha256(name)
    # Kept with the object, so that a copy can be checked even by a server that lost our records.
    metadata = {"archive-sha256": expected}
    with archives.open_archive(name) as source:
        plain = _Hashing(source)
        if destination.age_recipient:
            with _Encrypted(io.BufferedReader(plain, CHUNK), _recipient(destination.age_recipient)) as stream:
                sent = bucket.upload(stream, row.object_name, progress=reporter.upload, extra_metadata=metadata)
                size = stream.done
        else:
            sent = bucket.upload(plain, row.object_name, progress=reporter.upload, extra_metadata=metadata)
            size = plain.done
    if plain.sha.hexdigest() != expected:
        raise OffsiteError(f"{name} changed or was cut short while it was being copied")
    locked_until = _lock(bucket, destination, row.object_name) if destination.object_lock_days else None
    reporter.phase("verify", size)
    remote = bucket.download(row.object_name, _Sink(), progress=reporter.verify)
    if remote != sent:
        raise OffsiteError(f"the copy in {destination.name} does not match the archive (checksum differs)")
    return {"sha256": sent, "archive_sha256": expected, "size": size, "locked_until": locked_until}


def _lock(bucket, destination, name):
    """COMPLIANCE object lock on the copy just written: no one can delete it before its time."""
    until = datetime.now(timezone.utc) + timedelta(days=destination.object_lock_days)
    try:
        bucket.client.put_object_retention(Bucket=bucket.bucket, Key=bucket.key(name),
                                           Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
    except (BotoCoreError, ClientError) as error:
        code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
        raise OffsiteError(f"the copy could not be locked for {destination.object_lock_days} days "
                           f"({code or type(error).__name__}): is object lock enabled on the bucket "
                           f"{destination.bucket}? It must be created with object lock; otherwise set the "
                           "destination's object lock days to 0") from None
    return until.replace(tzinfo=None)


def _failed(row, destination, reason, caller, action="archive.copy"):
    """The copy failed: say why, and when it is tried again (OFFSITE_RETRY_SECONDS, doubling, at most
    OFFSITE_RETRIES times); the local archive is not touched."""
    config, now = current_app.config, utcnow()
    db.session.rollback()
    db.session.refresh(row)
    next_attempt = None
    if row.attempts <= config["OFFSITE_RETRIES"]:
        next_attempt = now + timedelta(seconds=config["OFFSITE_RETRY_SECONDS"] * 2 ** max(row.attempts - 1, 0))
    else:
        reason += f" (tried {row.attempts} times; no more automatic retries: copy it again by hand)"
    row.state, row.error, row.next_attempt_at, row.updated_at = "failed", reason[:2000], next_attempt, now
    db.session.commit()
    _audit(action, row.archive_name, "failure", f"to {destination.name}: {reason}", caller)
    return row


def _reason(error):
    """One line for the page: our own and the storage's messages as they are, anything else by its kind."""
    if isinstance(error, (OffsiteError, StorageError, SnapshotError)):
        return str(error)
    if isinstance(error, FileNotFoundError):
        return "the archive is no longer kept here"
    if isinstance(error, OSError):
        return f"could not read the archive ({error.strerror or type(error).__name__})"
    if isinstance(error, pyrage.EncryptError):
        return f"the archive could not be encrypted ({error})"
    log.exception("Off-site copy failed unexpectedly")
    return f"unexpected error ({type(error).__name__}); the details are in the log"


def _audit(action, target, outcome, detail, caller):
    audit.record(action, target=target, outcome=outcome, detail=detail,
                 actor=caller.actor if caller else "system", client_ip=caller.client_ip if caller else None)


def copy_to_all(name, progress=None, caller=None):
    """Copy an archive to every enabled destination that has no verified copy of it; returns the rows.
    A failure is recorded on its row and never deletes or hides the local archive."""
    done = []
    for destination in _enabled():
        row = _copy_row(name, destination)
        if row.state == "verified":
            done.append(row)
            continue
        done.append(copy_archive(name, destination, progress=progress, caller=caller))
    return done


def due_copies(now=None):
    """[(archive, destination name)] to try now: failed ones whose time came, pending ones nobody took up
    (their copy run was lost), and copying ones whose process died."""
    now = _naive(now)
    wait = timedelta(seconds=current_app.config["OFFSITE_RETRY_SECONDS"])
    rows = db.session.execute(
        select(ArchiveCopy.archive_name, Destination.name)
        .join(Destination, Destination.id == ArchiveCopy.destination_id)
        .where(Destination.enabled.is_(True), or_(
            (ArchiveCopy.state == "failed") & (ArchiveCopy.next_attempt_at <= now),
            (ArchiveCopy.state == "pending") & (ArchiveCopy.updated_at <= now - wait),
            (ArchiveCopy.state == "copying") & (ArchiveCopy.updated_at <= now - STALE_COPY)))
        .order_by(ArchiveCopy.archive_name, Destination.name)).all()
    return [tuple(row) for row in rows]


def retry_due(now=None, caller=None):
    """Try again every copy that is due (for the scheduler's tick or the command line); returns the rows."""
    return [copy_archive(name, destination, caller=caller) for name, destination in due_copies(now)]


def _naive(moment):
    if moment is None:
        return utcnow()
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def verify(name=None, caller=None):
    """Read verified copies back (one archive's, or all) and compare with what was sent. A copy that
    differs or is gone becomes failed and is copied again; one that cannot be reached right now stays as
    it was. Returns [{archive, destination, state, message}]."""
    query = (select(ArchiveCopy, Destination).join(Destination, Destination.id == ArchiveCopy.destination_id)
             .where(ArchiveCopy.state == "verified", Destination.enabled.is_(True))
             .order_by(ArchiveCopy.archive_name, Destination.name))
    if name is not None:
        query = query.where(ArchiveCopy.archive_name == name)
    results = []
    for row, destination in db.session.execute(query).all():
        results.append(_verify_one(row, destination, caller))
    return results


def _verify_one(row, destination, caller):
    result = {"archive": row.archive_name, "destination": destination.name}
    try:
        remote = _bucket(destination).sha256_of(row.object_name)
    except ObjectMissing:
        problem = f"the copy in {destination.name} is missing"
    except (StorageError, OffsiteError) as error:
        return {**result, "state": "unchecked", "message": f"could not be checked: {error}"}
    else:
        if remote == row.sha256:
            row.verified_at = row.updated_at = utcnow()
            db.session.commit()
            _audit("archive.verify", row.archive_name, "success", f"copy in {destination.name} matches", caller)
            return {**result, "state": "verified", "message": f"verified at {row.verified_at:%Y-%m-%d %H:%M} UTC"}
        problem = f"the copy in {destination.name} does not match the archive (checksum differs)"
    row.attempts = 0  # copied again after the first retry's wait
    db.session.commit()
    _failed(row, destination, problem, caller, action="archive.verify")
    return {**result, "state": "failed", "message": problem}


def describe_copy(row, destination=None):
    """What the page and the command line show of one copy."""
    destination = destination or db.session.get(Destination, row.destination_id)
    return {
        "archive": row.archive_name, "destination": destination.name, "enabled": destination.enabled,
        "state": row.state, "bytes_done": row.bytes_done, "size": row.size, "verified_at": row.verified_at,
        "error": row.error, "attempts": row.attempts, "next_attempt_at": row.next_attempt_at,
        "encrypted": row.encrypted, "locked_until": row.locked_until,
    }


def copies_of(names):
    """{archive name: [copy, ...]} for the page: each archive's copies (describe_copy), by destination."""
    found = {name: [] for name in names}
    if not found:
        return found
    rows = db.session.execute(
        select(ArchiveCopy, Destination).join(Destination, Destination.id == ArchiveCopy.destination_id)
        .where(ArchiveCopy.archive_name.in_(list(found))).order_by(Destination.name)).all()
    for row, destination in rows:
        found[row.archive_name].append(describe_copy(row, destination))
    return found


def check_destination(destination):
    """None when the destination's bucket answers with its credentials (and has object lock when the
    destination asks for it), else what is wrong, in one line."""
    destination = get_destination(destination)
    try:
        bucket = _bucket(destination)
        bucket.check()
        if destination.object_lock_days:
            answer = bucket.client.get_object_lock_configuration(Bucket=destination.bucket)
            if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
                return f"object lock is not enabled on the bucket {destination.bucket}"
    except (OffsiteError, StorageError) as error:
        return str(error).rstrip(".")
    except (BotoCoreError, ClientError) as error:
        code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
        return f"object lock is not enabled on the bucket {destination.bucket} ({code or type(error).__name__})"
    return None


# -- restoring from off-site ------------------------------------------------------------------------------

def list_remote(destination):
    """The archives in a destination, newest first: [{name, size, modified, encrypted, state}] (state is
    our record's, None for a copy this server did not make)."""
    destination = get_destination(destination)
    try:
        objects = _bucket(destination).list()
    except StorageError as error:
        raise OffsiteError(str(error)) from None
    records = {row.object_name: row for row in db.session.scalars(
        select(ArchiveCopy).where(ArchiveCopy.destination_id == destination.id))}
    found = []
    for object_name_, size, modified in objects:
        encrypted = object_name_.endswith(ENCRYPTED_SUFFIX)
        name = object_name_[:-len(ENCRYPTED_SUFFIX)] if encrypted else object_name_
        match = NAME_PATTERN.match(name)
        if match is None:
            continue
        record = records.get(object_name_)
        found.append({"name": name, "object": object_name_, "size": size, "modified": modified,
                      "encrypted": encrypted, "state": record.state if record else None, "stamp": match["stamp"]})
    found.sort(key=lambda item: item["stamp"], reverse=True)
    return found


def _locate(bucket, destination, name):
    """(object name, its head, our record or None) of an archive's copy in the destination."""
    if not NAME_PATTERN.match(name or ""):
        raise OffsiteError(f"{name!r} is not an archive name.")
    record = _find_row(name, destination)
    if record is not None and record.state != "verified":
        record = None  # a copy that was never verified is checked against what is stored with it
    candidates = [record.object_name] if record is not None else [name + ENCRYPTED_SUFFIX, name]
    for candidate in candidates:
        head = bucket.head(candidate)
        if head is not None:
            return candidate, head, record
    raise OffsiteError(f"There is no copy of {name} in {destination.name}.")


def fetch(destination, name, target_path, identity=None, progress=None, caller=None):
    """Stream a copy down to ``target_path`` (which must not exist), decrypting it with ``identity`` (an
    age secret key, used for this call only) when it is encrypted, and check its SHA-256 against our record
    (or, for a copy this server did not make, the checksum stored with the object). Nothing is left behind
    on failure. Returns {path, size, sha256, checked_against}."""
    destination = get_destination(destination)
    target = Path(target_path)
    if target.exists():
        raise OffsiteError(f"{target} exists already; nothing was overwritten.")
    if not target.parent.is_dir():
        raise OffsiteError(f"There is no folder {target.parent} to fetch into.")
    try:
        bucket = _bucket(destination)
        object_name_, head, record = _locate(bucket, destination, name)
    except StorageError as error:
        raise OffsiteError(str(error)) from None
    encrypted = object_name_.endswith(ENCRYPTED_SUFFIX)
    secret = _identity(identity, name, destination) if encrypted else None
    free = shutil.disk_usage(target.parent).free
    if head["size"] > free:
        raise OffsiteError(f"{name} takes {head['size']} bytes and only {free} are free in {target.parent}; "
                           "nothing was fetched.")
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    reporter = Reporter(progress)
    message = f"Fetching {name} from {destination.name}"

    def report(done):
        reporter("fetch", done, head["size"], "bytes", message)

    try:
        with open(partial, "xb") as out:
            os.chmod(partial, 0o600)
            sent_sha, plain_sha = _download(bucket, object_name_, out, secret, report)
        checked = _check_fetched(name, destination, record, head, sent_sha, plain_sha)
        os.replace(partial, target)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, (OffsiteError, KeyboardInterrupt, SystemExit)):
            raise
        raise OffsiteError(_fetch_reason(error, name, destination)) from None
    audit_detail = f"from {destination.name}" + (", decrypted" if encrypted else "") + f", checked against {checked}"
    _audit("archive.fetch", name, "success", audit_detail, caller)
    return {"path": target, "size": target.stat().st_size, "sha256": plain_sha, "checked_against": checked}


def _identity(identity, name, destination):
    if not identity:
        raise OffsiteError(f"The copy of {name} in {destination.name} is encrypted: give the age identity (the "
                           "secret key, AGE-SECRET-KEY-1...) that belongs to the destination's public key.")
    lines = [line.strip() for line in str(identity).splitlines() if line.strip().startswith("AGE-SECRET-KEY-")]
    try:
        return x25519.Identity.from_str(lines[0] if lines else str(identity).strip())
    except pyrage.IdentityError:
        raise OffsiteError("That is not an age identity (a secret key starts with AGE-SECRET-KEY-1); "
                           "nothing was fetched.") from None


def _download(bucket, object_name_, out, identity, report):
    """(SHA-256 of the object, SHA-256 of what was written): decrypted on the way when ``identity``."""
    written = _HashingWriter(out)
    with bucket.open(object_name_) as body:
        received = _Hashing(body, report)
        if identity is None:
            shutil.copyfileobj(received, written, CHUNK)
            return received.sha.hexdigest(), written.sha.hexdigest()
        try:
            pyrage.decrypt_io(io.BufferedReader(received, CHUNK), written, [identity])
        except pyrage.DecryptError as error:
            if "No matching keys" in str(error):
                raise OffsiteError("This identity does not open the copy: it is encrypted to another age public "
                                   "key. Nothing was fetched.") from None
            raise OffsiteError(f"The copy could not be decrypted ({error}): it is damaged or cut short. "
                               "Nothing was fetched.") from None
        while received.read(CHUNK):  # age stops at its last chunk; hash anything after it too
            pass
    return received.sha.hexdigest(), written.sha.hexdigest()


def _check_fetched(name, destination, record, head, sent_sha, plain_sha):
    """What the fetched bytes were checked against (our record, else the checksums stored with the object);
    raises when they differ."""
    if record is not None:
        against, checks = "our record", [(record.sha256, sent_sha), (record.archive_sha256, plain_sha)]
    else:
        metadata = head.get("metadata") or {}
        against = "the checksums stored with the copy"
        checks = [(metadata.get("sha256"), sent_sha), (metadata.get("archive-sha256"), plain_sha)]
    checks = [(expected, actual) for expected, actual in checks if expected]
    if not checks:
        return "nothing (no checksum is known; the archive's signature and checksums are checked next)"
    if any(expected != actual for expected, actual in checks):
        raise OffsiteError(f"The copy of {name} in {destination.name} does not match the archive (checksum "
                           "differs); nothing was fetched. Fetch another backup.")
    return against


def _fetch_reason(error, name, destination):
    if isinstance(error, StorageError):
        return f"{error} Nothing was fetched."
    if isinstance(error, OSError) and error.errno == 28:
        return f"The disk filled up while fetching {name}; the partial file was removed. Free some space and try again."
    if isinstance(error, OSError):
        return f"Could not write {name} ({error.strerror or type(error).__name__}); nothing was fetched."
    log.exception("Fetching %s from %s failed unexpectedly", name, destination.name)
    return f"Fetching {name} failed unexpectedly ({type(error).__name__}); nothing was fetched."


def fetch_for_restore(destination, name, identity=None, progress=None, caller=None):
    """Fetch a copy into the uploads waiting for a check, as if it had been uploaded: returns the options
    of the inspect run (start_run("inspect", caller, options=...)) that starts the review → restore flow."""
    destination = get_destination(destination)
    token = f"{secrets.token_hex(12)}.zip"  # our own name, like incoming.store_upload
    folder = incoming.incoming_dir()
    try:
        head = _locate(_bucket(destination), destination, name)[1]
    except StorageError as error:
        raise OffsiteError(str(error)) from None
    if not incoming.has_room_for(head["size"]):
        raise OffsiteError(f"There is not enough free disk space to fetch {name} ({head['size']} bytes); nothing "
                           "was fetched. Free some space (e.g. delete old backups) and try again.")
    fetch(destination, name, folder / token, identity=identity, progress=progress, caller=caller)
    return {"source": "upload", "name": token, "original_name": name, "offsite": destination.name}


# -- streams ------------------------------------------------------------------------------------------------

class _Hashing(io.RawIOBase):
    """A stream read through: what passes is counted and hashed (and the count reported, if asked)."""

    def __init__(self, stream, report=None):
        self._stream, self._report, self.sha, self.done = stream, report, hashlib.sha256(), 0

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._stream.read(len(buffer))
        buffer[:len(data)] = data
        self.sha.update(data)
        self.done += len(data)
        if self._report is not None:
            self._report(self.done)
        return len(data)


class _HashingWriter:
    def __init__(self, out):
        self._out, self.sha = out, hashlib.sha256()

    def write(self, data):
        self.sha.update(data)
        return self._out.write(data)

    def flush(self):
        self._out.flush()


class _Sink:
    """Where a read-back goes: nowhere (only its hash is kept)."""

    def write(self, data):
        return len(data)


class _Encrypted(io.RawIOBase):
    """``source`` encrypted to an age recipient, as a stream to read: pyrage encrypts in a thread into a
    pipe, so memory stays at a few chunks whatever the archive's size. If the encryption fails, reading
    raises instead of ending, so a cut-short copy is never completed as an object."""

    def __init__(self, source, recipient):
        read_end, write_end = os.pipe()
        self._pipe = open(read_end, "rb", buffering=0)
        self._failure, self.done = None, 0
        self._thread = threading.Thread(target=self._encrypt, args=(source, recipient, write_end),
                                        name="age-encrypt", daemon=True)
        self._thread.start()

    def _encrypt(self, source, recipient, write_end):
        try:
            with open(write_end, "wb") as sink:
                pyrage.encrypt_io(source, sink, [recipient])
        except BaseException as error:  # handed to the reader, which raises it
            self._failure = error

    def readable(self):
        return True

    def readinto(self, buffer):
        count = self._pipe.readinto(buffer)
        if not count:
            self._thread.join()
            if self._failure is not None:
                raise OffsiteError(f"the archive could not be read or encrypted ({_reason(self._failure)})")
        self.done += count or 0
        return count

    def close(self):
        if not self.closed:
            self._pipe.close()  # a writer still going gets a broken pipe and stops
            self._thread.join()
        super().close()


class _Reporter:
    """A copy's progress: into its row (at most once a second, for the page) and the caller's callback."""

    def __init__(self, row, destination, progress):
        self.row_id, self.destination, self.progress = row.id, destination, progress
        self.last, self.phase_name, self.total = 0.0, "copy", None

    def phase(self, name, total):
        self.phase_name, self.total, self.last = name, total, 0.0

    def upload(self, done):
        self._report(done, f"Copying to {self.destination.name}")

    def verify(self, done):
        self._report(done, f"Reading the copy in {self.destination.name} back")

    def _report(self, done, message):
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        values = {"updated_at": utcnow()}
        if self.phase_name == "copy":
            values["bytes_done"] = done
        db.session.execute(update(ArchiveCopy).where(ArchiveCopy.id == self.row_id).values(**values))
        db.session.commit()
        if self.progress is not None:
            self.progress(ProgressEvent(self.phase_name, done, self.total, "bytes", message))


__all__ = ["OffsiteError", "DestinationError", "list_destinations", "describe", "get_destination", "add_destination",
           "remove_destination", "set_enabled", "check_destination", "object_name", "plan_copies", "has_unfinished",
           "unverified", "copy_archive", "copy_to_all", "due_copies", "retry_due", "verify", "describe_copy",
           "copies_of", "list_remote", "fetch", "fetch_for_restore"]
