"""Kill a restore with SIGKILL at a chosen point, recover, and compare the store with before and after.

As a script it kills at N random points: python -m tests.faults.harness --points 12 [--engine postgresql]
"""
import argparse
import hashlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
KEY = "fault-test-key"
REVISION = "fault-rev"
# Named points; "load:N" and "staging:N" take a count, "rename:K" the K-th rename of the swap.
FIXED_POINTS = ["staging:1", "load:1", "load:2500", "commit", "rename:1", "rename:2", "after-commit"]


def make_engine(url):
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA foreign_keys=ON")
    return engine


def metadata():
    sys.path.insert(0, str(ROOT))
    from app.models import store_metadata

    return store_metadata()


def fill(engine, uploads, orders=3000, files=40, seed=1, file_size=20_000):
    """A store with enough rows and files that a restore takes a few hundred milliseconds."""
    from datetime import datetime, timedelta

    md = metadata()
    md.create_all(engine)
    t = md.tables
    rng = random.Random(seed)
    now = datetime(2026, 1, 1, 12, 0, 0)
    with engine.begin() as c:
        c.execute(t["users"].insert(), [{"id": i, "email": f"u{i}@x.test", "password_hash": f"h{i}", "role": "admin",
                                         "active": True, "session_token": f"s{i}", "created_at": now}
                                        for i in range(1, 6)])
        c.execute(t["products"].insert(), [{"id": i, "sku": f"S{i}", "name": f"Product {i}", "slug": f"product-{i}",
                                            "description": "d\tx\n",
                                            "price": Decimal("9.99"), "stock": i, "active": True, "created_at": now}
                                           for i in range(1, 101)])
        c.execute(t["product_images"].insert(), [{"id": i, "product_id": i, "path": f"p/{i}.bin", "alt": "",
                                                  "position": 0} for i in range(1, files + 1)])
        c.execute(t["orders"].insert(), [{"id": i, "number": f"O{i}", "customer_email": "c@x.test", "status": "paid",
                                          "total": Decimal("19.98"), "placed_at": now + timedelta(seconds=i)}
                                         for i in range(1, orders + 1)])
        c.execute(t["order_lines"].insert(), [{"id": i, "order_id": i, "product_id": 1 + i % 100, "quantity": 2,
                                               "unit_price": Decimal("9.99")} for i in range(1, orders + 1)])
        c.execute(t["settings"].insert(), [{"key": "k", "value": "v", "is_secret": False}])
    for i in range(1, files + 1):
        path = Path(uploads, "p", f"{i}.bin")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(file_size))


def damage(engine, uploads):
    """Make the store differ from the backup in rows and in files."""
    t = metadata().tables
    with engine.begin() as c:
        c.execute(t["order_lines"].delete().where(t["order_lines"].c.order_id > 2000))
        c.execute(t["orders"].delete().where(t["orders"].c.id > 2000))
        c.execute(t["products"].update().values(name="Renamed"))
    Path(uploads, "p", "1.bin").unlink()
    Path(uploads, "p", "2.bin").write_bytes(b"changed")
    Path(uploads, "new.txt").write_text("added after the backup")


def state(engine, uploads):
    """Every row of every store table and every file's checksum: what 'the store' is."""
    md = metadata()
    rows = {}
    with engine.connect() as c:
        for table in md.sorted_tables:
            rows[table.name] = [tuple(r) for r in c.execute(sa.select(table).order_by(*table.primary_key.columns))]
    files = {p.relative_to(uploads).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(Path(uploads).rglob("*")) if p.is_file()} if Path(uploads).exists() else {}
    return rows, files


def schema(engine):
    """PostgreSQL: every constraint and index of the store (a restore sets some aside while it loads)."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as c:
        return c.execute(sa.text(
            "SELECT * FROM (SELECT r.relname AS relname, c.conname AS name, pg_get_constraintdef(c.oid) AS def "
            "FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid "
            "WHERE r.relnamespace = current_schema()::regnamespace "
            "UNION ALL SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()) x "
            "WHERE x.relname <> 'snapshot_restore_marker' ORDER BY 1, 2, 3")).all()


CHILD = r"""
import os, signal, sys, shutil
sys.path.insert(0, {root!r})
point, arg = {point!r}.partition(":")[0], {point!r}.partition(":")[2]
from app.snapshot import progress, files as files_mod, restore_archive, sqlitefile
sqlitefile.STEP_PAGES = 1  # a database file is copied back one page per step: "load:N" is the N-th page
from tests.faults.harness import make_engine, metadata, KEY, REVISION
progress.Reporter.__init__.__defaults__ = (None, 0.0)  # every event, so a point is hit exactly

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def on_progress(event):
    if point in ("staging", "load") and event.phase == point and event.done >= int(arg):
        die()
    if point == "commit" and event.phase == "commit":
        die()

if point == "rename":
    real_rename, calls = os.rename, [0]
    def rename(src, dst):
        calls[0] += 1
        if calls[0] == int(arg):
            die()
        return real_rename(src, dst)
    files_mod.os.rename = rename
if point == "after-commit":
    files_mod.StagedFiles.commit = lambda self: die()

restore_archive({archive!r}, engine=make_engine({url!r}), metadata=metadata(), uploads_dir={uploads!r},
                signing_key=KEY, schema_revision=REVISION, parts="both", progress=on_progress)
print("completed")
"""


def run_point(point, url, uploads, archive):
    """Restore in a child process killed at ``point``; returns the child's exit code."""
    code = CHILD.format(root=str(ROOT), point=point, url=url, uploads=str(uploads), archive=str(archive))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if result.returncode not in (0, -signal.SIGKILL):
        raise RuntimeError(f"restore child failed at {point}: {result.stderr[-2000:]}")
    return result.returncode


class Scenario:
    """One store, its backup, and the damaged store a restore starts from, copied fresh per kill."""

    def __init__(self, workdir, url_factory, database_file=True):
        from app.snapshot import create_archive
        from app.snapshot.container import Reader

        self.workdir, self.url_factory = Path(workdir), url_factory
        self.master_url, master_uploads = url_factory("master"), self.workdir / "master-uploads"
        engine = make_engine(self.master_url)
        fill(engine, master_uploads)
        self.archive = create_archive(
            engine=engine, metadata=metadata(), uploads_dir=master_uploads, backups_dir=self.workdir / "backups",
            signing_key=KEY, store_name="fault", kind="backup", parts="both", created_by="test",
            schema_revision=REVISION, app_version="test", database_file=database_file)
        with Reader(self.archive, KEY) as reader:  # what "load:N" counts: rows, or pages of a database file
            info = reader.manifest.get("database")
            self.units = info["raw_bytes"] // info["page_size"] if info else \
                sum(t["rows"] for t in reader.manifest["tables"])
        self.after = state(engine, master_uploads)
        damage(engine, master_uploads)
        self.before = state(engine, master_uploads)
        self.schema = schema(engine)
        engine.dispose()
        self.master_uploads = master_uploads
        self.count = 0

    def kill_at(self, point):
        """Returns 'before', 'after' or 'MIXED' for the store once recovery has run."""
        from app.snapshot import journal

        self.count += 1
        if point == "load:half":
            point = f"load:{self.units // 2}"
        url = self.url_factory(f"copy{self.count}", template="master")
        uploads = self.workdir / f"copy{self.count}" / "uploads"
        shutil.copytree(self.master_uploads, uploads)
        if run_point(point, url, uploads, self.archive) == 0:
            return "NOT KILLED"  # the point was never reached: the test would prove nothing
        engine = make_engine(url)
        journal.recover(uploads, engine)
        now = state(engine, uploads)
        same_schema = schema(engine) == self.schema
        leftovers = [p.name for p in uploads.parent.iterdir() if p.name != "uploads"]
        engine.dispose()
        if leftovers:
            return f"LEFTOVERS {leftovers}"
        if not same_schema:
            return "SCHEMA CHANGED"
        return "before" if now == self.before else "after" if now == self.after else "MIXED"


def sqlite_urls(workdir):
    workdir = Path(workdir)

    def url(name, template=None):
        if template:
            source = make_engine(f"sqlite:///{workdir / (template + '.db')}")
            with source.connect() as c:  # a consistent copy, WAL included
                c.exec_driver_sql(f"VACUUM INTO '{workdir / (name + '.db')}'")
            source.dispose()
        return f"sqlite:///{workdir / (name + '.db')}"

    return url


def postgres_urls(admin_url):
    """Databases on a PostgreSQL server, copies made with CREATE DATABASE ... TEMPLATE; ``drop()`` removes them."""
    import uuid

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    prefix, created = f"fault_{uuid.uuid4().hex[:8]}", []

    def url(name, template=None):
        database = f"{prefix}_{name}"
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{database}"' + (f' TEMPLATE "{prefix}_{template}"' if template else ""))
        created.append(database)
        return admin.url.set(database=database).render_as_string(hide_password=False)

    def drop():
        with admin.connect() as c:
            for database in created:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()

    url.drop = drop
    return url


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=12, help="how many random kill points")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rows", action="store_true", help="SQLite: an archive of rows, not the database file")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as workdir:
        urls = sqlite_urls(workdir) if args.engine == "sqlite" else postgres_urls(args.postgres_url)
        try:
            scenario = Scenario(workdir, urls, database_file=not args.rows)
            points = [rng.choice([f"load:{rng.randrange(1, scenario.units)}", f"staging:{rng.randrange(1, 800_000)}",
                                  "commit", f"rename:{rng.randrange(1, 3)}", "after-commit"])
                      for _ in range(args.points)]
            outcomes = [(point, scenario.kill_at(point)) for point in points]
        finally:
            if hasattr(urls, "drop"):
                urls.drop()
    for point, outcome in outcomes:
        print(f"{point:>16}  {outcome}")
    good = sum(outcome in ("before", "after") for _, outcome in outcomes)
    print(f"SIGKILL at {len(outcomes)} points: {good}/{len(outcomes)} store equal to before or after")
    sys.exit(0 if good == len(outcomes) else 1)


if __name__ == "__main__":
    main()
