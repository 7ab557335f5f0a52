"""Benchmark the snapshot engine against native tools on the same data (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python -m bench.snapshot_bench [--engine sqlite|postgresql|both] [--size small|large]
                                                          [--rows-mb N --files-mb N --files N] [--rounds N]
                                                          [--compare OTHER_CHECKOUT]

small: ~50 MB of rows, 100 MB of files in 1,000 files. large: ~1 GB of rows, 2 GB of files in 20,000 files.
Baselines: pg_dump -Fc -Z0 | zstd -1 -T2 and pg_restore -j2 into a fresh database (PostgreSQL), the sqlite3
backup API + zstd (SQLite), tar | zstd -1 -T2 and zstd -d | tar -x for files (also alone, against our files-only
backup and restore), COPY TO STDOUT / SELECT * to csv for exports. Each of our operations runs in a child
process, so its peak RSS is its own. Throughput ratio = baseline seconds / our seconds (>1.0: we are faster),
per round, reported as min/median over the rounds.
"""
import argparse
import csv
from contextlib import closing, contextmanager
import inspect
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
# A child may run the engine of another checkout (--compare): that checkout comes first on the path.
sys.path.insert(0, os.environ.get("BENCH_ENGINE_ROOT", str(ROOT)))
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
        # A dict: the columns are named, so a column the model gains (slug, unique) is filled or left out by name.
        yield "products", {"id": i, "sku": f"SKU-{i:07d}", "name": f"Product {i} {rng.choice(WORDS)}",
                           "description": text, "price": f"{rng.randint(100, 99999) / 100:.2f}",
                           "stock": rng.randint(0, 500), "active": True, "created_at": now,
                           "slug": f"product-{i}-{rng.choice(WORDS)}"}
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
        if isinstance(row, dict):  # by name, in the table's own column order; unknown names dropped
            row = tuple(row[c] for c in columns[name]) if set(columns[name]) <= set(row) else _missing(name, row, columns)
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


def _missing(name, row, columns):
    missing = sorted(set(columns[name]) - set(row))
    raise SystemExit(f"bench: the model's {name} table has columns the row generator does not fill: {missing}")


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


# Progress phases of a restore from which the store is being changed: "load" (rows removed and loaded),
# "swap" (the uploads folder renamed into place), "commit".
DESTRUCTIVE = ("load", "swap", "commit")


def child(spec):
    """Runs one of our operations; prints seconds, peak RSS (MB) and when each progress phase began, as JSON."""
    from app import snapshot

    metadata, _ = store_tables()
    engine = make_engine(spec["url"])
    idle = peak_rss_mb()
    common = dict(engine=engine, metadata=metadata, signing_key=KEY, schema_revision=REVISION)
    phases = {}  # phase -> [first seen, last seen], seconds from the start of the call
    start = time.perf_counter()

    def progress(event):
        now = time.perf_counter() - start
        phases.setdefault(event.phase, [now, now])[1] = now

    caps = {"max_members": spec["max_members"]} if "max_members" in spec else {}  # a million files + 3 records
    common.update(caps)
    if spec["op"] == "inspect":
        snapshot.inspect_archive(spec["archive"], metadata=metadata, signing_key=KEY, schema_revision=REVISION,
                                 progress=progress, **caps)
        path = spec["archive"]
    elif spec["op"] == "restore":
        if "maintenance" in inspect.signature(snapshot.restore_archive).parameters:
            common["maintenance"] = lambda: _window(phases, start)  # the storefront's maintenance, in the app
        snapshot.restore_archive(spec["archive"], uploads_dir=spec["uploads"], parts=spec["parts"],
                                 progress=progress, **common)
        path = spec["archive"]
    else:
        export = spec["op"] == "export"
        path = snapshot.create_archive(
            uploads_dir=spec["uploads"], backups_dir=spec["backups"], store_name="bench",
            kind="export" if export else "backup", parts=spec["parts"], created_by="bench",
            app_version="bench", redactions=snapshot.STORE_REDACTIONS if export else (), progress=progress, **common)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "idle_mb": idle, "archive": str(path),
                      "phases": phases}))


@contextmanager
def _window(phases, start):
    """Where the app puts the storefront into maintenance during a restore: recorded as the phase
    "maintenance" (its start and end, seconds from the start of the call)."""
    opened = time.perf_counter() - start
    try:
        yield
    finally:
        phases["maintenance"] = [opened, time.perf_counter() - start]


def ours(op, parts, engine_root=None, **spec):
    """One of our operations in a fresh child process; ``engine_root``: another checkout's app/ to run."""
    os.sync()  # the previous operation's dirty pages are written before the clock starts, not during it
    root = str(engine_root or ROOT)
    env = {**os.environ, "PYTHONPATH": root, "BENCH_ENGINE_ROOT": root}
    result = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                             json.dumps({"op": op, "parts": parts, **spec})],
                            cwd=root, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"our {op} ({parts}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def maintenance_seconds(result):
    """How long the storefront is in maintenance during a restore: the engine's maintenance window where it has
    one; for an engine without one (--compare with an older checkout, where the app's window was the whole
    call), from the first destructive progress event to the end of the call."""
    phases = result.get("phases", {})
    if "maintenance" in phases:
        return phases["maintenance"][1] - phases["maintenance"][0]
    starts = [first for phase, (first, _) in phases.items() if phase in DESTRUCTIVE]
    return result["seconds"] - min(starts) if starts else None


# ---------------------------------------------------------------- baselines
def sh(command):
    subprocess.run(["bash", "-c", "set -euo pipefail; " + command], check=True)


def timed(fn, *args):
    os.sync()
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def libpq(url):
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def base_files_backup(uploads, out):
    sh(f"tar -C {uploads} -cf - . | zstd -q -1 -T2 > {out}/files.tar.zst")


def base_files_restore(out, fresh):
    fresh.mkdir()
    sh(f"zstd -q -dc {out}/files.tar.zst | tar -x -C {fresh}")


def base_backup(url, db_path, uploads, out):
    if db_path is None:
        sh(f"pg_dump -Fc -Z0 -d '{libpq(url)}' | zstd -q -1 -T2 > {out}/db.dump.zst")
    else:
        # Closed (not just committed, which is all sqlite3's "with" does) before zstd reads the copy: the copy is
        # in WAL mode like its source, and pages still in copy.db-wal would be missing from the compressed file.
        with closing(sqlite3.connect(db_path)) as src, closing(sqlite3.connect(out / "copy.db")) as dst:
            src.backup(dst)
        sh(f"zstd -q -1 -T2 --rm {out}/copy.db -o {out}/db.sqlite.zst")
    base_files_backup(uploads, out)


def base_restore(fresh_url, db_path, out, fresh):
    """PostgreSQL: pg_restore -j2 (needs a file, so the dump is decompressed first, timed) into a fresh,
    empty database created before the clock starts; SQLite: the database file back in place."""
    if db_path is None:
        sh(f"zstd -q -dc {out}/db.dump.zst > {out}/db.dump && pg_restore -j2 -d '{libpq(fresh_url)}' {out}/db.dump")
    else:
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        sh(f"zstd -q -dc {out}/db.sqlite.zst > {db_path}")
    base_files_restore(out, fresh)


def base_export(url, db_path, tables):
    if db_path is None:
        import psycopg

        with psycopg.connect(libpq(url)) as conn, open(os.devnull, "wb") as sink:
            for table in tables:
                with conn.cursor().copy(f"COPY {table.name} TO STDOUT") as copy:
                    for chunk in copy:
                        sink.write(chunk)
    else:
        with closing(sqlite3.connect(db_path)) as conn, open(os.devnull, "w", newline="") as sink:
            writer = csv.writer(sink)
            for table in tables:
                writer.writerows(conn.execute(f"SELECT * FROM {table.name}"))


# ---------------------------------------------------------------- one engine
def admin_sql(statement):
    admin = make_engine(PG_ADMIN_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql(statement)
    admin.dispose()


def vacuum(url):
    if url.startswith("postgresql"):
        engine = make_engine(url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM (FREEZE, ANALYZE)")
        engine.dispose()


def run_round(name, work, url, db_path, uploads, backups, tables, sizes, variants, number):
    """One round: every operation of ours (for each variant) and its baseline, side by side."""
    row_bytes, file_bytes = sizes
    variants = variants if number % 2 == 0 else variants[::-1]  # neither variant always goes first
    out = work / f"baseline-{number}"
    out.mkdir()
    results = []  # (operation, variant, our result, baseline seconds, bytes)
    pg = db_path is None

    def cleanup(*paths):
        for path in paths:
            shutil.rmtree(path, ignore_errors=True) if Path(path).is_dir() else Path(path).unlink(missing_ok=True)

    for op, parts, nbytes in (("backup", "both", row_bytes + file_bytes), ("files backup", "files", file_bytes)):
        archives = {}
        for variant, root in variants:
            archives[variant] = ours("backup", parts, root, url=url, uploads=str(uploads), backups=str(backups))
        base = timed(base_backup, url, db_path, uploads, out) if parts == "both" else \
            timed(base_files_backup, uploads, out)
        for variant, _ in variants:
            results.append((op, variant, archives[variant], base, nbytes))
        restore_op = "restore" if parts == "both" else "files restore"
        restored = {}
        for variant, root in variants:
            restored[variant] = ours("restore", parts, root, url=url, uploads=str(uploads),
                                     archive=archives[variant]["archive"])
            vacuum(url)
        fresh_db = f"bench_fresh_{secrets.token_hex(4)}"
        if parts == "both" and pg:
            admin_sql(f"CREATE DATABASE {fresh_db}")
        try:
            fresh_url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + fresh_db
            base = timed(base_restore, fresh_url, db_path, out, work / "fresh") if parts == "both" else \
                timed(base_files_restore, out, work / "fresh")
        finally:
            if parts == "both" and pg:
                admin_sql(f"DROP DATABASE IF EXISTS {fresh_db} WITH (FORCE)")
        cleanup(work / "fresh", out / "db.dump")
        vacuum(url)
        for variant, _ in variants:
            results.append((restore_op, variant, restored[variant], base, nbytes))
            cleanup(archives[variant]["archive"])
    exported = {}
    for variant, root in variants:
        exported[variant] = ours("export", "database", root, url=url, uploads=str(uploads), backups=str(backups))
        cleanup(exported[variant]["archive"])
    base = timed(base_export, url, db_path, tables)
    for variant, _ in variants:
        results.append(("export", variant, exported[variant], base, row_bytes))
    cleanup(out)
    return results


def bench_engine(name, work, rows_mb, files_mb, nfiles, rounds, variants):
    work = work / name
    work.mkdir()
    uploads, backups = work / "uploads", work / "backups"
    db_name = f"bench_{secrets.token_hex(4)}"
    if name == "postgresql":
        admin_sql(f"CREATE DATABASE {db_name}")
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
        rows = []
        for number in range(rounds):
            t0 = time.perf_counter()
            rows += [(name, number, *r) for r in run_round(name, work, url, db_path, uploads, backups, tables,
                                                            (row_bytes, file_bytes), variants, number)]
            print(f"[{name}] round {number + 1}/{rounds} in {time.perf_counter() - t0:.0f}s", flush=True)
        return rows
    finally:
        if name == "postgresql":
            admin_sql(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def phase_profile(result):
    """Seconds from each phase's first event to the next phase's first event (the last one to the end)."""
    starts = sorted((first, phase) for phase, (first, _) in result.get("phases", {}).items())
    ends = [s for s, _ in starts[1:]] + [result["seconds"]]
    return " ".join(f"{phase} {end - start:.2f}" for (start, phase), end in zip(starts, ends))


def report(rows, rounds):
    """One line per operation, engine and variant: medians over the rounds, ratios per round (min/median)."""
    groups = {}
    for name, number, op, variant, result, base, nbytes in rows:
        groups.setdefault((op, name, variant), []).append((result, base, nbytes))
    head = (f"{'operation':<14} {'engine':<10} {'variant':<7} {'ours s':>7} {'base s':>7} {'ours MB/s':>9} "
            f"{'base MB/s':>9} {'ratio min/med':>13} {'peak MB':>8} {'idle MB':>8} {'maint. s':>9}")
    print(head)
    print("-" * len(head))
    profiles = []
    for (op, name, variant), runs in groups.items():
        mine = median([r["seconds"] for r, _, _ in runs])
        base = median([b for _, b, _ in runs])
        ratios = [b / r["seconds"] for r, b, _ in runs]
        nbytes = runs[0][2]
        peak = max(r["peak_mb"] for r, _, _ in runs)
        idle = min(r["idle_mb"] for r, _, _ in runs)
        maintenance = [m for m in (maintenance_seconds(r) for r, _, _ in runs) if m is not None]
        maint = f"{median(maintenance):>9.2f}" if maintenance else f"{'':>9}"
        print(f"{op:<14} {name:<10} {variant:<7} {mine:>7.2f} {base:>7.2f} {nbytes / MB / mine:>9.1f} "
              f"{nbytes / MB / base:>9.1f} {min(ratios):>5.2f}/{median(ratios):.2f}x {peak:>8.1f} {idle:>8.1f} {maint}")
        for number, (r, b, _) in enumerate(runs):
            profiles.append(f"{op:<14} {name:<10} {variant:<7} round {number + 1}: ours {r['seconds']:.2f} s "
                            f"base {b:.2f} s | {phase_profile(r)}")
    print(f"\n{rounds} round(s). ratio = baseline s / ours s per round (>1.0x: ours is faster), min and median over\n"
          "the rounds; s = medians; MB/s over rows+files bytes (files ops: files only; export: rows only);\n"
          "peak = our child's maximum VmHWM, idle = the same process after imports, before the operation;\n"
          "maint. = seconds the storefront is in maintenance during a restore (the engine's maintenance window: load,\n"
          "swap, commit; checks and file staging come before it, deleting the old files after it).\n\nPhases (seconds from each "
          "phase's first progress event to the next phase's):")
    print("\n".join(profiles))


def memory_profile(counts, ops=("backup", "inspect", "restore"), file_bytes=100):
    """Peak RSS of a files-only backup, an inspection and a files-only restore, for each number of small files
    (an empty SQLite store): what each member costs in memory, whatever its size."""
    work = Path(tempfile.mkdtemp(prefix="snapshot-memory-", dir="/tmp"))
    lines = []
    try:
        url = f"sqlite:///{work}/store.db"
        engine = make_engine(url)
        store_tables()[0].create_all(engine)
        engine.dispose()
        for count in counts:
            uploads, backups = work / f"uploads-{count}", work / "backups"
            t0 = time.perf_counter()
            payload = os.urandom(file_bytes)
            for i in range(count):
                folder = uploads / f"{i // 1000:04d}"
                if i % 1000 == 0:
                    folder.mkdir(parents=True)
                (folder / f"f{i:07d}.txt").write_bytes(payload)
            print(f"{count:,} files of {file_bytes} bytes made in {time.perf_counter() - t0:.0f}s", flush=True)
            results = {"backup": ours("backup", "files", url=url, uploads=str(uploads), backups=str(backups))}
            backup = results["backup"]
            for op in ("inspect", "restore"):
                if op in ops:
                    results[op] = ours(op, "files", url=url, uploads=str(uploads), archive=backup["archive"],
                                       max_members=count + 10)
            for op, result in results.items():
                lines.append(f"{count:>10,} {op:<8} {result['seconds']:>8.2f} {result['peak_mb']:>9.1f} "
                             f"{result['idle_mb']:>8.1f} {(result['peak_mb'] - result['idle_mb']) * 1e6 / count:>10.0f}")
                print(lines[-1], flush=True)
            Path(backup["archive"]).unlink()
            shutil.rmtree(uploads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'files':>10} {'op':<8} {'seconds':>8} {'peak MB':>9} {'idle MB':>8} {'B/file*':>10}")
    print("\n".join(lines))
    print("* (peak - idle) / files: what the operation adds per file, fixed costs included")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--rows-mb", type=float)
    parser.add_argument("--files-mb", type=float)
    parser.add_argument("--files", type=int)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", metavar="ROOT",
                        help="also run our operations with the engine of another checkout (e.g. a copy of the tree "
                             "before a change), side by side, as variant 'other'")
    parser.add_argument("--memory", metavar="COUNTS",
                        help="instead: peak RSS of files-only backup, inspect and restore for these numbers of small "
                             "files, e.g. 1000,10000,100000")
    parser.add_argument("--memory-ops", default="backup,inspect,restore",
                        help="with --memory: which operations (the backup always runs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.memory:
        return memory_profile([int(n) for n in args.memory.split(",")], args.memory_ops.split(","))
    rows_mb, files_mb, nfiles = SIZES[args.size]
    rows_mb, files_mb = args.rows_mb or rows_mb, args.files_mb or files_mb
    nfiles = args.files or (nfiles if not (args.rows_mb or args.files_mb) else max(1, int(files_mb * 10)))
    engines = ("sqlite", "postgresql") if args.engine == "both" else (args.engine,)
    variants = [("this", None)] + ([("other", Path(args.compare).resolve())] if args.compare else [])
    print(f"Target data: {rows_mb:g} MB of rows, {files_mb:g} MB of files in {nfiles} files; engines {engines}; "
          f"{args.rounds} round(s); {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="snapshot-bench-", dir="/tmp"))
    rows = []
    try:
        for name in engines:
            rows += bench_engine(name, work, rows_mb, files_mb, nfiles, args.rounds, variants)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    report(rows, args.rounds)


if __name__ == "__main__":
    main()
