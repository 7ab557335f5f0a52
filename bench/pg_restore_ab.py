"""A/B of the PostgreSQL database restore alone (no files, no baseline): two checkouts, alternating, on one archive.

    PYTHONPATH=. .venv/bin/python -m bench.pg_restore_ab --compare OTHER_CHECKOUT [--rows-mb 150] [--rounds 4]

The archive (database only) is made once by this checkout; each round restores it with this checkout's engine and
then the other's (each in a child process, as bench.snapshot_bench runs them), so both see the same load on a
shared machine. Prints every time and the ratio other/this per round (>1.0: this checkout is faster).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.snapshot_bench import KEY, PG_ADMIN_URL, REVISION, ROOT, admin_sql, fill_database, make_engine, median, \
    store_tables, vacuum


def child(spec):
    from app import snapshot

    metadata, _ = store_tables()
    engine = make_engine(spec["url"])
    start = time.perf_counter()
    snapshot.restore_archive(spec["archive"], engine=engine, metadata=metadata, uploads_dir=spec["uploads"],
                             signing_key=KEY, schema_revision=REVISION, parts="database")
    print(json.dumps({"seconds": time.perf_counter() - start}))


def run(root, **spec):
    os.sync()
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_ENGINE_ROOT": str(root)}
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                            cwd=root, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", required=False)
    parser.add_argument("--rows-mb", type=float, default=150)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    other = Path(args.compare).resolve()
    work = Path(tempfile.mkdtemp(prefix="pg-restore-ab-", dir="/tmp"))
    name = f"bench_ab_{os.getpid()}"
    admin_sql(f"CREATE DATABASE {name}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        engine = make_engine(url)
        fill_database(engine, args.rows_mb * 1e6)
        metadata, _ = store_tables()
        from app import snapshot

        (work / "uploads").mkdir()
        archive = snapshot.create_archive(engine=engine, metadata=metadata, uploads_dir=work / "uploads",
                                          backups_dir=work / "backups", signing_key=KEY, store_name="bench",
                                          kind="backup", parts="database", created_by="bench",
                                          schema_revision=REVISION, app_version="bench")
        engine.dispose()
        vacuum(url)
        print(f"{args.rows_mb:g} MB of rows; load average {os.getloadavg()[0]:.2f}", flush=True)
        ratios = []
        for number in range(args.rounds):
            times = {}
            for variant, root in (("this", ROOT), ("other", other))[::1 if number % 2 == 0 else -1]:
                times[variant] = run(root, url=url, archive=str(archive), uploads=str(work / "uploads"))
                vacuum(url)
            ratios.append(times["other"] / times["this"])
            print(f"round {number + 1}: this {times['this']:.2f} s, other {times['other']:.2f} s, "
                  f"other/this {ratios[-1]:.2f}", flush=True)
        print(f"other/this min {min(ratios):.2f} median {median(ratios):.2f} (>1.0: this checkout is faster)")
    finally:
        admin_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
