"""A SQLite store's backup holds its database file: copied back page for page, read as rows elsewhere, and
refused, changing nothing, when the file is hostile (every case below is validly signed)."""
import ast
import hashlib
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa
import zstandard

from app.snapshot import ArchiveInvalid, IncompatibleArchive, UnsafeArchive, database, operations, sqlitefile
from tests.faults.harness import damage, metadata
from tests.snapshot import hostile
from tests.snapshot.test_hostile import Case, assert_refused


def database_file(members):
    member = next(m for m in members if m.name == sqlitefile.MEMBER)
    return member, zstandard.ZstdDecompressor().decompressobj().decompress(member.data)


def with_file(store, archive, tmp_path, change, name="hostile", manifest_change=None):
    """The archive with its database file changed by ``change(path)`` (an open sqlite3 file, or bytes)."""
    members, manifest = hostile.read(archive)
    member, data = database_file(members)
    path = tmp_path / f"{name}.db"
    path.write_bytes(data)
    result = change(path)
    data = result if isinstance(result, bytes) else path.read_bytes()
    member.data = zstandard.ZstdCompressor().compress(data)
    manifest["database"]["raw_bytes"] = len(data)
    hostile.listed(manifest, member)
    if manifest_change:
        manifest_change(manifest)
    return hostile.write(tmp_path / f"{name}.zip", members, manifest, store.key)


def sql(*statements):
    def change(path):
        with sqlite3.connect(path) as c:
            for statement in statements:
                c.execute(statement)
        c.close()
    return change


@pytest.fixture
def valid(sqlite_store):
    archive = sqlite_store.create("backup", "both")
    damage(sqlite_store.engine, sqlite_store.uploads)  # the store now differs from the archive
    return archive


def test_a_sqlite_backup_holds_the_database_file_and_restores_it_page_for_page(sqlite_store, monkeypatch):
    before = sqlite_store.state()
    archive = sqlite_store.create("backup", "both")
    members, manifest = hostile.read(archive)
    assert [m.name for m in members if m.name.startswith("database/")] == [sqlitefile.MEMBER]
    assert manifest["database"]["format"] == "sqlite" and manifest["database"]["page_size"] >= 512
    assert all("member" not in t for t in manifest["tables"])
    assert {t["name"]: t["rows"] for t in manifest["tables"]} == {k: len(v) for k, v in before[0].items()}
    damage(sqlite_store.engine, sqlite_store.uploads)

    def no_rows(*args, **kwargs):
        raise AssertionError("rows were loaded one by one")

    monkeypatch.setattr(database, "load_table", no_rows)
    result = sqlite_store.restore(archive, "both")
    assert sqlite_store.state() == before
    assert result.row_counts == {k: len(v) for k, v in before[0].items()}
    assert not list(sqlite_store.backups.glob(f".*{sqlitefile.CHECKED_SUFFIX}"))  # the checked copy is gone


def test_the_store_keeps_its_own_migration_revision(sqlite_store):
    """The file's alembic_version (the head when it was made) never replaces the store's: the manifest's schema
    revision is what decides compatibility, and migrations of the platform database move the head alone."""
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        c.exec_driver_sql("INSERT INTO alembic_version VALUES ('aaaaaaaaaaaa')")
    archive = sqlite_store.create("backup", "database")
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = 'bbbbbbbbbbbb'")
    before = sqlite_store.state()
    damage(sqlite_store.engine, sqlite_store.uploads)
    sqlite_store.restore(archive, "database")
    assert sqlite_store.state()[0] == before[0]
    with sqlite_store.engine.connect() as c:
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("bbbbbbbbbbbb",)]


def test_other_connections_see_the_restored_store(sqlite_store, tmp_path):
    """The pages are copied into the live file in one transaction: a connection another process (or pool) holds
    stays valid and reads the restored rows (a rename would leave it on the old, unlinked file)."""
    before = sqlite_store.state()
    archive = sqlite_store.create("backup", "database")
    other = sa.create_engine(sqlite_store.engine.url)
    orders = metadata().tables["orders"]
    with other.connect() as held:
        assert held.scalar(sa.select(sa.func.count()).select_from(orders)) == len(before[0]["orders"])
        damage(sqlite_store.engine, sqlite_store.uploads)
        assert held.scalar(sa.select(sa.func.count()).select_from(orders)) == 2000
        held.rollback()
        sqlite_store.restore(archive, "database")
        assert held.scalar(sa.select(sa.func.count()).select_from(orders)) == len(before[0]["orders"])
        held.rollback()
        with held.begin():  # and it can still write
            held.execute(orders.update().where(orders.c.id == 1).values(status="refunded"))
    other.dispose()
    with sqlite_store.engine.connect() as c:
        assert c.scalar(sa.select(orders.c.status).where(orders.c.id == 1)) == "refunded"


def test_a_process_reading_during_the_restore_never_sees_a_mix(sqlite_store, monkeypatch):
    """Another process counts orders and order lines in one read transaction, in a loop, while the pages are
    copied one per step: it sees the old store, then the restored one, never anything between."""
    monkeypatch.setattr(sqlitefile, "STEP_PAGES", 1)
    archive = sqlite_store.create("backup", "database")
    full = sqlite_store.state()[0]
    damage(sqlite_store.engine, sqlite_store.uploads)
    damaged = sqlite_store.state()[0]
    watcher = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, time
        c = sqlite3.connect({str(sqlite_store.engine.url.database)!r}, timeout=30, isolation_level=None)
        seen = []
        end = time.monotonic() + 60
        while time.monotonic() < end and len(set(seen)) < 2:
            c.execute("BEGIN")
            seen.append(c.execute("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_lines)").fetchone())
            c.execute("COMMIT")
            if len(seen) == 1:
                print("ready", flush=True)
        print(sorted(set(seen)), flush=True)
    """)], stdout=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().strip() == "ready"
    sqlite_store.restore(archive, "database")
    out, _ = watcher.communicate(timeout=90)
    old = (len(damaged["orders"]), len(damaged["order_lines"]))
    new = (len(full["orders"]), len(full["order_lines"]))
    assert set(ast.literal_eval(out.strip())) == {old, new}  # both seen, and nothing else


def test_a_store_of_another_schema_gets_the_rows(sqlite_store, monkeypatch):
    """Not the same schema (here: an index the archive does not have): the rows are read out of the file and
    loaded, as from any archive."""
    before = sqlite_store.state()
    archive = sqlite_store.create("backup", "both")
    damage(sqlite_store.engine, sqlite_store.uploads)
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("CREATE INDEX orders_by_status ON orders (status)")
    loaded = []
    real = database.load_table
    monkeypatch.setattr(database, "load_table", lambda *a, **k: loaded.append(a[1].name) or real(*a, **k))
    sqlite_store.restore(archive, "both")
    assert sqlite_store.state() == before
    assert "order_lines" in loaded


def test_kept_accounts_take_the_row_path(sqlite_store):
    archive = sqlite_store.create("backup", "database")
    with sqlite_store.engine.begin() as c:
        c.exec_driver_sql("UPDATE users SET email = 'today@x.test' WHERE id = 1")
    damage(sqlite_store.engine, sqlite_store.uploads)
    sqlite_store.restore(archive, "database", keep_tables=("users",))
    with sqlite_store.engine.connect() as c:
        assert c.exec_driver_sql("SELECT email FROM users WHERE id = 1").scalar() == "today@x.test"
        assert c.exec_driver_sql("SELECT count(*) FROM orders").scalar() == 3000


def test_read_table_and_csv_read_the_file(sqlite_store, tmp_path, monkeypatch):
    """Reading a table for a person (the review's accounts, the CSV download) checks the file's checksum, header
    and schema, not every page and row again (the inspection did)."""
    import zipfile

    archive = sqlite_store.create("backup", "database")

    def too_slow(*args):
        raise AssertionError("every page checked again")

    monkeypatch.setattr(sqlitefile, "_check_contents", too_slow)
    users = operations.read_table(archive, signing_key=sqlite_store.key, metadata=sqlite_store.metadata,
                                  table="users")
    assert users and {"id", "email"} <= set(users[0])
    counts = operations.archive_to_csv(archive, tmp_path / "tables.zip", signing_key=sqlite_store.key,
                                       metadata=sqlite_store.metadata)
    assert counts["orders"] == 3000
    with zipfile.ZipFile(tmp_path / "tables.zip") as z:
        assert z.read("orders.csv").decode().count("\n") == 3001


HOSTILE = {
    "trigger": (sql("CREATE TRIGGER t AFTER UPDATE ON orders BEGIN DELETE FROM users; END"), UnsafeArchive,
                "holds a trigger 't'"),
    "view": (sql("CREATE VIEW v AS SELECT * FROM orders"), UnsafeArchive, "holds a view 'v'"),
    "view_named_like_a_table": (sql("DROP TABLE cart_lines", "CREATE VIEW cart_lines AS SELECT * FROM orders"),
                                UnsafeArchive, "holds a view 'cart_lines'"),
    "virtual_table": (sql("DROP TABLE cart_lines", "CREATE VIRTUAL TABLE cart_lines USING fts5(id, cart_id)"),
                      UnsafeArchive, "virtual or unusual table 'cart_lines'"),
    "extra_table": (sql("CREATE TABLE evil (x)"), UnsafeArchive, "holds a table 'evil'"),
    "statistics": (sql("ANALYZE"), UnsafeArchive, "holds a table 'sqlite_stat1'"),
    "index_on_extra_table": (sql("CREATE TABLE evil (x)", "CREATE INDEX evil_x ON evil (x)"), UnsafeArchive,
                             "holds a"),
    "extra_column": (sql("ALTER TABLE orders ADD COLUMN note TEXT"), UnsafeArchive, "other columns"),
    "generated_column": (sql("ALTER TABLE orders ADD COLUMN g INTEGER GENERATED ALWAYS AS (id * 2) VIRTUAL"),
                         UnsafeArchive, "generated or hidden column"),
    "table_missing": (sql("DROP TABLE cart_lines"), ArchiveInvalid, "lacks table 'cart_lines'"),
    "dangling_foreign_key": (sql("PRAGMA foreign_keys = OFF", "UPDATE order_lines SET order_id = 999999 "
                                 "WHERE id = 5"), ArchiveInvalid,
                             "Table order_lines, the row with id 5: order_id 999999 refers to no row of orders"),
    "row_count_lies": (sql("DELETE FROM cart_lines WHERE id = 1"), ArchiveInvalid,
                       "Table cart_lines: the archive declares"),
    "wrong_storage_class": (sql("UPDATE orders SET placed_at = 12345 WHERE id = 3"), UnsafeArchive,
                            "value of the wrong type"),
    "not_a_timestamp": (sql("UPDATE orders SET placed_at = 'yesterday' WHERE id = 3"), UnsafeArchive,
                        "value of the wrong type"),
    "sequence_table_not_sqlites": (sql("CREATE TABLE seqx (name, seq, note)", "PRAGMA writable_schema = ON",
                                       "UPDATE sqlite_master SET name = 'sqlite_sequence', tbl_name = 'sqlite_sequence' "
                                       "WHERE name = 'seqx'"),
                                   (UnsafeArchive, ArchiveInvalid), "is not SQLite.s own|cannot be read|damaged"),
    "wal_header": (lambda p: p.read_bytes()[:18] + b"\x02\x02" + p.read_bytes()[20:], UnsafeArchive,
                   "rollback-journal form"),
    "not_sqlite": (lambda p: b"#!/bin/sh\nrm -rf /\n" * 100, ArchiveInvalid, "not a SQLite database file"),
    "utf16": (None, UnsafeArchive, "not UTF-8"),
}


def _utf16(path):
    """The same store, in a new file with UTF-16 text (made with the backup API's counterpart: a dump)."""
    source = sqlite3.connect(path)
    script = "\n".join(source.iterdump())
    source.close()
    path.unlink()
    target = sqlite3.connect(path)
    target.execute("PRAGMA encoding = 'UTF-16le'")
    target.executescript(script)
    target.execute("PRAGMA journal_mode = DELETE")
    target.close()


HOSTILE["utf16"] = (_utf16, UnsafeArchive, "not UTF-8")


def _corrupt(path):
    """Bytes in the middle of the file (a table's pages) overwritten; the header stays valid."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    middle = (len(data) // page // 2) * page
    data[middle + 8: middle + 200] = bytes(range(192))
    return bytes(data)


HOSTILE["corrupt_pages"] = (_corrupt, ArchiveInvalid, "damaged|cannot be read")


def _index_out_of_step(path):
    """An index whose entries no longer match its table: its statement says product_id, its b-tree holds
    order_id (written with the schema's sanity checks off, as a hand-made file could be)."""
    c = sqlite3.connect(path)
    c.execute("PRAGMA writable_schema = ON")
    c.execute("UPDATE sqlite_master SET sql = replace(sql, '(order_id)', '(product_id)') "
              "WHERE name = 'ix_order_lines_order_id'")
    c.commit()
    c.close()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_file_is_refused_and_changes_nothing(sqlite_store, valid, tmp_path, name):
    change, error, match = HOSTILE[name]
    path = with_file(sqlite_store, valid, tmp_path, change, name)
    assert_refused(sqlite_store, path, Case(error, match, "inspect"))
    assert not list(tmp_path.glob(f".*{sqlitefile.CHECKED_SUFFIX}"))  # the copy made for the checks is removed


def test_a_file_with_64_kib_pages_passes_its_checks(tmp_path):
    """SQLite writes a page size of 65536 as 1 in the header."""
    path = tmp_path / "big-pages.db"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA page_size = 65536")
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        c.execute("DROP TABLE t")
    c.close()
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA page_size").fetchone()[0] == 65536
    c.close()
    sqlitefile._check_shape(path, {"page_size": 65536}, [], None)  # no error
    with pytest.raises(UnsafeArchive, match="pages of 65536 bytes"):
        sqlitefile._check_shape(path, {"page_size": 4096}, [], None)


@pytest.mark.parametrize("case, error, match", [
    ("declared_smaller", UnsafeArchive, "larger than declared"),
    ("declared_larger", ArchiveInvalid, "shorter than declared"),
    ("bomb_declared", UnsafeArchive, "implausible size"),
    ("page_size", UnsafeArchive, "pages of"),
    ("table_member", UnsafeArchive, "names a data member of its own"),
    ("member_elsewhere", ArchiveInvalid, "not where its manifest says"),
    ("column_type", IncompatibleArchive, "column types"),
])
def test_a_manifest_that_lies_about_the_file_is_refused(sqlite_store, valid, tmp_path, case, error, match):
    def lie(manifest):
        info = manifest["database"]
        if case == "declared_smaller":
            info["raw_bytes"] -= 4096
        elif case == "declared_larger":
            info["raw_bytes"] += 4096
        elif case == "bomb_declared":
            info["raw_bytes"] = 10 ** 12
        elif case == "page_size":
            info["page_size"] = 1024 if info["page_size"] != 1024 else 2048
        elif case == "table_member":
            manifest["tables"][0]["member"] = sqlitefile.MEMBER
        elif case == "member_elsewhere":
            info["member"] = "database/other.sqlite.zst"
        elif case == "column_type":
            table = next(t for t in manifest["tables"] if t["name"] == "orders")
            table["columns"][0]["type"] = "text"
    path = with_file(sqlite_store, valid, tmp_path, lambda p: None, case, manifest_change=lie)
    assert_refused(sqlite_store, path, Case(error, match, "inspect"))


def test_an_index_out_of_step_with_its_table_is_refused(sqlite_store, valid, tmp_path):
    path = with_file(sqlite_store, valid, tmp_path, _index_out_of_step, "index")
    assert_refused(sqlite_store, path, Case(ArchiveInvalid, "damaged", "inspect"))


def test_a_checksum_break_in_the_file_is_refused(sqlite_store, valid, tmp_path):
    members, manifest = hostile.read(valid)
    member, _ = database_file(members)
    member.data = member.data[:-10] + bytes(10)
    path = hostile.write(tmp_path / "flipped.zip", members, manifest, sqlite_store.key)
    assert_refused(sqlite_store, path, Case(ArchiveInvalid, "checksum|corrupt", "inspect"))
    assert hashlib.sha256(member.data).hexdigest() != manifest["members"][sqlitefile.MEMBER]["sha256"]


def test_a_database_file_in_a_format_1_manifest_is_refused(sqlite_store, valid, tmp_path):
    """Format 1 never held a database file: such a manifest is not one this application wrote."""
    import json

    from app.snapshot.container import sign

    members, manifest = hostile.read(valid)  # format 1's shape, with the database object
    data = json.dumps(manifest, indent=1, sort_keys=True).encode()
    path = hostile.write(tmp_path / "v1.zip", members, manifest, sqlite_store.key,
                         signature=sign(data, sqlite_store.key))
    assert_refused(sqlite_store, path, Case(ArchiveInvalid, "database is not a known field", "inspect"))
