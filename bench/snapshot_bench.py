"""Benchmark the snapshot engine against native tools on the same data (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python -m bench.snapshot_bench [--engine sqlite|postgresql|both] [--size small|large]
                                                          [--rows-mb N --files-mb N --files N]

small: ~50 MB of rows, 100 MB of files in 1,000 files. large: ~1 GB of rows, 2 GB of files in 20,000 files.
Baselines: pg_dump -Fc -Z0 | zstd -1 -T2 and pg_restore (PostgreSQL), the sqlite3 backup API + zstd (SQLite),
tar | zstd for files, COPY TO STDOUT / SELECT * to csv for exports. Each of our operations runs in a child
process, so its peak RSS is its own. Throughput ratio = baseline seconds / our seconds (>1.0: we are faster).
"""
import argparse
import csv
import json
import os
import random
import resource
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
KEY, REVISION = "bench-key", "bench-rev"
SIZES = {"small": (50, 100, 1000), "large": (1024, 2048, 20000)}  # rows MB, files MB, file count
MB = 1e6
sys.path.insert(0, str(ROOT))
from tests.faults.harness import make_engine  # noqa: E402  (the same engine settings as the fault tests)
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua organic cotton linen wool blend hand made small batch shipping returns size colour "
         "medium large extra gift wrapped durable washable recycled packaging warranty").split()


def store_tables():
    from app.models import store_metadata
    from app.snapshot.operations import store_tables as tables

    return store_metadata(), tables(store_metadata())


# ---------------------------------------------------------------- data
def generate_rows(target_bytes, seed=7):
    """(table, tuple) rows whose text (COPY) form totals about ``target_bytes``, in foreign-key order."""
    rng = random.Random(seed)
    now = datetime(2026, 1, 1, 12, 0, 0)
    for i in range(1, 21):
        yield "users", (i, f"user{i}@shop.test", "pbkdf2:sha256:600000$" + secrets.token_hex(32), "vendor", True,
                        secrets.token_hex(16), now)
    products = max(100, int(target_bytes / 25_000))  # ~8% of the bytes: product descriptions
    for i in range(1, products + 1):
        text = " ".join(rng.choices(WORDS, k=rng.randint(150, 450)))
        yield "products", (i, f"SKU-{i:07d}", f"Product {i} {rng.choice(WORDS)}", text,
                           f"{rng.randint(100, 99999) / 100:.2f}", rng.randint(0, 500), True, now)
    for i in range(1, 21):
        yield "settings", (f"setting_{i}", f"value {i} " * 5, i % 4 == 0)
    order, line, cart, cart_line = 0, 0, 0, 0
    while True:
        order += 1
        yield "orders", (order, f"ORD-{order:09d}", f"{rng.choice(WORDS)}.{rng.choice(WORDS)}{order}@example.test",
                         rng.choice(("paid", "shipped", "refunded")), f"{rng.randint(100, 999999) / 100:.2f}",
                         now + timedelta(seconds=order))
        for _ in range(rng.randint(1, 5)):
            line += 1
            yield "order_lines", (line, order, rng.randint(1, products), rng.randint(1, 9),
                                  f"{rng.randint(100, 99999) / 100:.2f}")
        if order % 10 == 0:
            cart += 1
            yield "carts", (cart, secrets.token_hex(16), rng.randint(1, 20), now)
            for _ in range(2):
                cart_line += 1
                yield "cart_lines", (cart_line, cart, rng.randint(1, products), rng.randint(1, 3))


def tsv(values):
    return "\t".join("\\N" if v is None else ("t" if v else "f") if isinstance(v, bool) else str(v)
                     for v in values) + "\n"


def fill_database(engine, target_bytes):
    """Create the store tables and load rows until their COPY text reaches the target; returns (bytes, counts)."""
    metadata, tables = store_tables()
    metadata.create_all(engine)
    columns = {t.name: [c.name for c in t.columns] for t in tables}
    buffers = {t.name: [] for t in tables}
    counts = {t.name: 0 for t in tables}
    total = 0
    pg = engine.dialect.name == "postgresql"
    raw = engine.raw_connection()
    driver = raw.driver_connection
    if not pg:
        driver.execute("PRAGMA synchronous=OFF")

    def flush():
        for name in (t.name for t in tables):  # parents first
            if not buffers[name]:
                continue
            if pg:
                with driver.cursor().copy(f"COPY {name} ({', '.join(columns[name])}) FROM STDIN") as copy:
                    copy.write("".join(tsv(r) for r in buffers[name]))
            else:
                rows = [tuple(int(v) if isinstance(v, bool) else f"{v:%Y-%m-%d %H:%M:%S.%f}"
                              if isinstance(v, datetime) else v for v in r) for r in buffers[name]]
                driver.executemany(f"INSERT INTO {name} ({', '.join(columns[name])}) "
                                   f"VALUES ({', '.join('?' * len(columns[name]))})", rows)
            buffers[name] = []

    for name, row in generate_rows(target_bytes):
        buffers[name].append(row)
        counts[name] += 1
        total += len(tsv(row).encode())
        if counts[name] % 50_000 == 0:
            flush()
        if total >= target_bytes and name == "order_lines":
            break
    flush()
    driver.commit()
    if not pg:
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    return total, {k: v for k, v in counts.items() if v}


def fill_files(uploads, target_bytes, count, seed=11):
    """``count`` incompressible files (like images) of varied sizes totalling ``target_bytes``, in folders."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1) for _ in range(count)]
    scale = target_bytes / sum(weights)
    total = 0
    for i, w in enumerate(weights):
        path = Path(uploads, "products", f"{i % 100:02d}", f"img{i:06d}.jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(max(1, int(w * scale))))
        total += max(1, int(w * scale))
    return total


# ---------------------------------------------------------------- our operations, each in a child process
def peak_rss_mb():
    """This process's peak RSS. Not ru_maxrss: Linux carries that over fork+exec, so a child would report the
    parent's size; VmHWM belongs to the address space the exec created."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(spec):
    """Runs one of our operations; prints seconds and peak RSS (MB) as JSON."""
    from app import snapshot

    metadata, _ = store_tables()
    engine = make_engine(spec["url"])
    idle = peak_rss_mb()
    common = dict(engine=engine, metadata=metadata, signing_key=KEY, schema_revision=REVISION)
    start = time.perf_counter()
    if spec["op"] == "restore":
        snapshot.restore_archive(spec["archive"], uploads_dir=spec["uploads"], parts="both", **common)
        path = spec["archive"]
    else:
        export = spec["op"] == "export"
        path = snapshot.create_archive(
            uploads_dir=spec["uploads"], backups_dir=spec["backups"], store_name="bench",
            kind="export" if export else "backup", parts="database" if export else "both", created_by="bench",
            app_version="bench", redactions=snapshot.STORE_REDACTIONS if export else (), **common)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "idle_mb": idle, "archive": str(path)}))


def ours(op, **spec):
    result = subprocess.run([sys.executable, "-m", "bench.snapshot_bench", "--child", json.dumps({"op": op, **spec})],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"our {op} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- baselines
def sh(command):
    subprocess.run(["bash", "-c", "set -euo pipefail; " + command], check=True)


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def libpq(url):
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def base_backup(url, db_path, uploads, out):
    if db_path is None:
        sh(f"pg_dump -Fc -Z0 -d '{libpq(url)}' | zstd -q -1 -T2 > {out}/db.dump.zst")
    else:
        with sqlite3.connect(db_path) as src, sqlite3.connect(out / "copy.db") as dst:
            src.backup(dst)
        sh(f"zstd -q -1 -T2 --rm {out}/copy.db -o {out}/db.sqlite.zst")
    sh(f"tar -C {uploads} -cf - . | zstd -q -1 -T2 > {out}/files.tar.zst")


def base_restore(url, db_path, out, fresh):
    if db_path is None:
        sh(f"zstd -dc {out}/db.dump.zst | pg_restore --clean --single-transaction -d '{libpq(url)}'")
    else:
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        sh(f"zstd -q -dc {out}/db.sqlite.zst > {db_path}")
    fresh.mkdir()
    sh(f"zstd -dc {out}/files.tar.zst | tar -x -C {fresh}")


def base_export(url, db_path, tables):
    if db_path is None:
        import psycopg

        with psycopg.connect(libpq(url)) as conn, open(os.devnull, "wb") as sink:
            for table in tables:
                with conn.cursor().copy(f"COPY {table.name} TO STDOUT") as copy:
                    for chunk in copy:
                        sink.write(chunk)
    else:
        with sqlite3.connect(db_path) as conn, open(os.devnull, "w", newline="") as sink:
            writer = csv.writer(sink)
            for table in tables:
                writer.writerows(conn.execute(f"SELECT * FROM {table.name}"))


# ---------------------------------------------------------------- one engine
def vacuum(url):
    if url.startswith("postgresql"):
        engine = make_engine(url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM (FREEZE, ANALYZE)")
        engine.dispose()


def bench_engine(name, work, rows_mb, files_mb, nfiles):
    work = work / name
    work.mkdir()
    uploads, backups, out = work / "uploads", work / "backups", work / "baseline"
    out.mkdir()
    db_name = f"bench_{secrets.token_hex(4)}"
    if name == "postgresql":
        admin = make_engine(PG_ADMIN_URL)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql(f"CREATE DATABASE {db_name}")
        url, db_path = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + db_name, None
    else:
        db_path = work / "store.db"
        url = f"sqlite:///{db_path}"
    try:
        t0 = time.perf_counter()
        engine = make_engine(url)
        row_bytes, counts = fill_database(engine, rows_mb * MB)
        engine.dispose()
        file_bytes = fill_files(uploads, files_mb * MB, nfiles)
        vacuum(url)
        print(f"[{name}] data ready in {time.perf_counter() - t0:.0f}s: rows {row_bytes / MB:.1f} MB (COPY text) "
              f"{counts}; files {file_bytes / MB:.1f} MB in {nfiles} files", flush=True)
        _, tables = store_tables()
        results = []
        backup = ours("backup", url=url, uploads=str(uploads), backups=str(backups))
        results.append(("backup", backup, timed(base_backup, url, db_path, uploads, out), row_bytes + file_bytes))
        restore = ours("restore", url=url, uploads=str(uploads), archive=backup["archive"])
        vacuum(url)
        results.append(("restore", restore, timed(base_restore, url, db_path, out, work / "fresh"),
                        row_bytes + file_bytes))
        vacuum(url)
        export = ours("export", url=url, uploads=str(uploads), backups=str(backups))
        results.append(("export", export, timed(base_export, url, db_path, tables), row_bytes))
        archive_mb = Path(backup["archive"]).stat().st_size / MB
        baseline_mb = sum(p.stat().st_size for p in out.iterdir()) / MB
        print(f"[{name}] our backup archive {archive_mb:.1f} MB, baseline output {baseline_mb:.1f} MB", flush=True)
        return [(op, name, r["seconds"], base, n, r["peak_mb"], r["idle_mb"]) for op, r, base, n in results]
    finally:
        if name == "postgresql":
            with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            admin.dispose()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--rows-mb", type=float)
    parser.add_argument("--files-mb", type=float)
    parser.add_argument("--files", type=int)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    rows_mb, files_mb, nfiles = SIZES[args.size]
    rows_mb, files_mb = args.rows_mb or rows_mb, args.files_mb or files_mb
    nfiles = args.files or (nfiles if not (args.rows_mb or args.files_mb) else max(1, int(files_mb * 10)))
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    print(f"Target data: {rows_mb:g} MB of rows, {files_mb:g} MB of files in {nfiles} files; engines {engines}; "
          f"{os.cpu_count()} CPUs", flush=True)
    work = Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir="/tmp"))
    rows = []
    try:
        for name in engines:
            rows += bench_engine(name, work, rows_mb, files_mb, nfiles)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    head = f"{'operation':<9} {'engine':<10} {'ours s':>8} {'base s':>8} {'ours MB/s':>10} {'base MB/s':>10} " \
           f"{'ratio':>6} {'peak RSS MB':>12} {'idle MB':>8}"
    print(head)
    print("-" * len(head))
    for op, name, mine, base, nbytes, peak, idle in rows:
        print(f"{op:<9} {name:<10} {mine:>8.2f} {base:>8.2f} {nbytes / MB / mine:>10.1f} {nbytes / MB / base:>10.1f} "
              f"{base / mine:>5.2f}x {peak:>12.1f} {idle:>8.1f}")
    print("\nratio = baseline s / ours s (>1.0x: ours is faster); MB/s over rows+files bytes (export: rows only);\n"
          "peak RSS = our child process's maximum; idle = the same process after imports, before the operation")


if __name__ == "__main__":
    main()
