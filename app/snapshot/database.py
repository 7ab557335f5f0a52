"""Dump store tables to the portable row format and load them back, per engine.

PostgreSQL moves rows with COPY in both directions; other engines stream rows through a
DBAPI cursor in large batches. Loading happens inside a transaction the caller owns.
"""
import re
from dataclasses import dataclass

import sqlalchemy as sa

from app.snapshot import tablecodec
from app.snapshot.errors import RestoreFailed, SnapshotError

FIRST_BATCH_ROWS = 1000
MAX_BATCH_ROWS = 50_000
DELETE_CHUNK = 20_000
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Redaction:
    """Replace a column's value in exports: always, or only where the boolean column ``when_true`` is true."""

    table: str
    column: str
    value: str
    when_true: str | None = None


def table_columns(table):
    return [{"name": c.name, "type": tablecodec.type_tag(c.type)} for c in table.columns]


def _selected_columns(table, redactions):
    """The SELECT list of a dump: each column, or its redacted replacement."""
    rules = {r.column: r for r in redactions if r.table == table.name}
    selected = []
    for column in table.columns:
        rule = rules.get(column.name)
        if rule is None:
            selected.append(column)
        elif rule.when_true:
            selected.append(sa.case((table.c[rule.when_true].is_(True), sa.literal(rule.value)),
                                    else_=column).label(column.name))
        else:
            selected.append(sa.literal(rule.value, type_=column.type).label(column.name))
    return selected


def dump_table(connection, table, write, redactions=(), on_rows=None, pages=None):
    """Write every row of ``table`` in the portable format through ``write(bytes)``; return the row count.

    ``pages`` (PostgreSQL): ``(first, end)``, only the rows stored in that range of the table's pages (``end``
    None: to the last page, however many there are by the time it is read). The ranges of ``split_pages`` hold
    every row visible to the snapshot exactly once, whichever connection reads them."""
    query = sa.select(*_selected_columns(table, redactions))
    if pages is not None:
        query = query.where(*_page_range(*pages))
    # Literal binds: only our own redaction constants, quoted by SQLAlchemy; COPY takes no parameters.
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.driver_connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            return _dump_copy(cursor, sql, write, on_rows)
        return _dump_cursor(cursor, sql, table, write, on_rows)
    finally:
        cursor.close()


def _page_range(first, end):
    # A TID range scan (PostgreSQL 14+) reads only these pages; each row version lives at one ctid.
    conditions = [sa.text(f"ctid >= '({int(first)},0)'::tid")] if first else []
    if end is not None:
        conditions.append(sa.text(f"ctid < '({int(end)},0)'::tid"))
    return conditions or [sa.true()]


def export_snapshot(connection):
    """PostgreSQL: the snapshot of the caller's REPEATABLE READ transaction, for ``share_snapshot`` on another
    connection (what pg_dump -j does); it stays valid while that transaction is open."""
    return connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar()


def share_snapshot(connection, snapshot):
    """Start the connection's transaction on ``snapshot`` (before any query in it): it sees what the
    exporting transaction sees, row for row."""
    if not isinstance(snapshot, str) or not snapshot.replace("-", "").isalnum():
        raise SnapshotError("An invalid snapshot identifier was given; no archive was kept.")
    connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")


def table_pages(connection, tables):
    """PostgreSQL: each table's size in pages now (not transactional; rows appended later are past the end)."""
    if connection.dialect.name != "postgresql" or connection.dialect.server_version_info < (14,):
        return {}
    return dict(connection.execute(sa.text(
        "SELECT c.relname, pg_relation_size(c.oid) / current_setting('block_size')::int FROM pg_class c "
        "WHERE c.relname = ANY(:names) AND c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"),
        {"names": [t.name for t in tables]}).all())


def split_pages(pages, parts):
    """``parts`` page ranges ``(first, end)`` covering a table of ``pages`` pages and every page added after
    (the last range is open-ended)."""
    bounds = [pages * k // parts for k in range(parts)] + [None]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def _dump_copy(cursor, sql, write, on_rows):
    """COPY TO through libpq directly: the server sends one message per row, and psycopg's Python-level
    iterator costs more per message than the server does. Messages are gathered into ~1 MiB writes."""
    from psycopg import pq  # the PostgreSQL driver, imported only on the path that uses it

    pgconn = cursor.connection.pgconn
    pgconn.send_query(f"COPY ({sql}) TO STDOUT".encode())
    result = pgconn.get_result()
    if result.status != pq.ExecStatus.COPY_OUT:
        _drain(pgconn)
        raise SnapshotError(f"Reading the table failed: {_pq_message(result)}; no archive was kept.")
    rows, block = 0, bytearray()

    def flush():
        nonlocal rows
        write(block)
        rows += block.count(b"\n")
        block.clear()
        if on_rows:
            on_rows(rows)

    get = pgconn.get_copy_data
    try:
        while True:
            nbytes, data = get(0)
            if nbytes < 0:
                break
            block += data  # copied at once: holding a million small message objects would cost far more
            if len(block) >= CHUNK:
                flush()
        if block:
            flush()
    except BaseException:
        _abandon_copy(pgconn)
        raise
    result = pgconn.get_result()
    _drain(pgconn)
    if result is None or result.status != pq.ExecStatus.COMMAND_OK:
        raise SnapshotError(f"Reading the table failed: {_pq_message(result)}; no archive was kept.")
    return rows


def _abandon_copy(pgconn):
    """The dump stopped in the middle of a COPY (it failed, or was told to stop): cancel it on the server and read
    what is still in flight, so the connection can roll back and the error that stopped it is the one raised."""
    for step in (lambda: pgconn.get_cancel().cancel(), lambda: _read_to_end(pgconn), lambda: _drain(pgconn)):
        try:
            step()
        except Exception:  # the COPY already ended, or the connection is gone (nothing to roll back then)
            pass


def _read_to_end(pgconn):
    while pgconn.get_copy_data(0)[0] >= 0:
        pass


def _pq_message(result):
    text = (result.error_message or b"").decode(errors="replace").strip() if result is not None else ""
    return text or "the COPY ended abnormally"


def _drain(pgconn):
    while pgconn.get_result() is not None:
        pass


def _dump_cursor(cursor, sql, table, write, on_rows):
    """Raw DBAPI rows in batches of about CHUNK bytes (sized from the rows seen so far, so wide rows
    do not make big batches): SQLAlchemy's result processing would only be undone by rendering."""
    renderers = [tablecodec.renderer(tablecodec.type_tag(c.type)) for c in table.columns]
    render_row = tablecodec.render_row
    rows, size = 0, FIRST_BATCH_ROWS
    cursor.execute(sql)
    while batch := cursor.fetchmany(size):
        data = b"".join(render_row(values, renderers) for values in batch)
        write(data)
        rows += len(batch)
        size = max(100, min(MAX_BATCH_ROWS, CHUNK * len(batch) // max(len(data), 1)))
        if on_rows:
            on_rows(rows)
    return rows


def delete_all(connection, tables):
    """Empty the store's tables inside the caller's transaction (children first)."""
    if connection.dialect.name == "postgresql":
        names = ", ".join(connection.dialect.identifier_preparer.format_table(t) for t in tables)
        connection.exec_driver_sql(f"TRUNCATE {names}")
        return
    delete = _delete_in_chunks if connection.dialect.name == "sqlite" else lambda c, t: c.execute(t.delete())
    for table in reversed(tables):
        delete(connection, table)


def _delete_in_chunks(connection, table, chunk=DELETE_CHUNK):
    """SQLite with foreign keys on deletes row by row and first collects every rowid of a DELETE:
    memory that grows with the table. Deleting a bounded chunk at a time keeps it flat."""
    name = connection.dialect.identifier_preparer.format_table(table)
    while connection.exec_driver_sql(
            f"DELETE FROM {name} WHERE rowid IN (SELECT rowid FROM {name} LIMIT {int(chunk)})").rowcount:
        pass


def set_aside_constraints(connection, tables):
    """PostgreSQL: drop the tables' foreign keys, unique constraints and plain indexes inside the
    caller's transaction, and return the statements that put them back.

    Loading into bare tables and then building each index and checking each foreign key once,
    in bulk, is how pg_restore loads; checking every row as it arrives is several times slower.
    The definitions come from the server's own catalog, never from an archive; if putting them
    back fails (a duplicate, a dangling reference), the whole transaction rolls back.
    """
    if connection.dialect.name != "postgresql":
        return []
    preparer = connection.dialect.identifier_preparer
    found, indexes = _keys_in_catalog(connection, tables, ("f", "u"))
    restore = []
    for row in sorted(found, key=lambda r: r.contype == "u"):  # foreign keys go first, unique ones after
        connection.exec_driver_sql(f"ALTER TABLE {row.tbl} DROP CONSTRAINT {preparer.quote(row.conname)}")
    for row in sorted(found, key=lambda r: r.contype == "f"):  # unique ones come back first, keys after
        restore.append(f"ALTER TABLE {row.tbl} ADD CONSTRAINT {preparer.quote(row.conname)} {row.definition}")
    for row in indexes:
        connection.exec_driver_sql(f"DROP INDEX {row.idx}")
        restore.append(row.definition)
    return restore


def _keys_in_catalog(connection, tables, kinds):
    """The tables' constraints of ``kinds`` (contype letters) and their indexes that belong to no constraint (so no
    primary key's), from the server's own catalog, never from an archive."""
    names = [t.name for t in tables]
    found = connection.execute(sa.text(
        "SELECT r.relname AS name, c.conrelid::regclass::text AS tbl, c.conname, c.contype, "
        "pg_get_constraintdef(c.oid) AS definition, f.relname AS referenced, c.condeferrable, "
        "CASE WHEN c.contype IN ('p', 'u') THEN pg_get_indexdef(c.conindid) END AS index_definition "
        "FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid LEFT JOIN pg_class f ON f.oid = c.confrelid "
        "WHERE r.relname = ANY(:names) AND r.relnamespace = current_schema()::regnamespace "
        "AND c.contype = ANY(:kinds) ORDER BY c.conname"), {"names": names, "kinds": list(kinds)}).all()
    indexes = connection.execute(sa.text(
        "SELECT r.relname AS name, i.indexrelid::regclass::text AS idx, pg_get_indexdef(i.indexrelid) AS definition "
        "FROM pg_index i JOIN pg_class r ON r.oid = i.indrelid "
        "WHERE r.relname = ANY(:names) AND r.relnamespace = current_schema()::regnamespace "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "ORDER BY 1, 2"), {"names": names}).all()
    return found, indexes


_PLAIN_KEY = re.compile(r"(PRIMARY KEY|UNIQUE) \([^()]*\)")


def set_aside_keys(connection, tables):
    """PostgreSQL, for tables that are about to be filled from empty: like ``set_aside_constraints``, and the
    primary keys too (pg_restore adds them after the data), so rows go into bare heaps and every index is
    built once, sorted. Returns ``({table name: [(statement, exclusive)]}, [(table name, referenced table name,
    statement that adds a foreign key back)])``: the statements that rebuild a table's primary key, unique
    constraints and indexes, in order; those not ``exclusive`` (index builds) may run at the same time as each
    other, an ``exclusive`` one only alone, after those before it. A table's statements need only its rows, a
    foreign key also the keys of the table it refers to."""
    preparer = connection.dialect.identifier_preparer
    names = [t.name for t in tables]
    found, indexes = _keys_in_catalog(connection, tables, ("f", "u", "p"))
    rank = {"f": 0, "u": 1, "p": 2}
    for row in sorted(found, key=lambda r: rank[r.contype]):  # foreign keys first: they use the others' indexes
        connection.exec_driver_sql(f"ALTER TABLE {row.tbl} DROP CONSTRAINT {preparer.quote(row.conname)}")
    keys, foreign, attach = {name: [] for name in names}, [], {name: [] for name in names}
    for row in sorted(found, key=lambda r: -rank[r.contype]):  # primary keys first, unique ones next
        name = preparer.quote(row.conname)
        statement = f"ALTER TABLE {row.tbl} ADD CONSTRAINT {name} {row.definition}"
        if row.contype == "f":
            foreign.append((row.name, row.referenced, statement))
        elif not row.condeferrable and _PLAIN_KEY.fullmatch(row.definition) and row.index_definition:
            # The index alone first (it only shares the table with other index builds), then the constraint
            # made from it, which locks the table for a moment: as a plain ADD CONSTRAINT it would be locked
            # for the whole build, and the table's other indexes would wait.
            keys[row.name].append((row.index_definition, False))
            kind = "PRIMARY KEY" if row.contype == "p" else "UNIQUE"
            attach[row.name].append((f"ALTER TABLE {row.tbl} ADD CONSTRAINT {name} {kind} USING INDEX {name}", True))
        else:
            keys[row.name].append((statement, True))
    for row in indexes:
        connection.exec_driver_sql(f"DROP INDEX {row.idx}")
        keys[row.name].append((row.definition, False))
    return {name: sorted(keys[name], key=lambda k: not k[1]) + attach[name] for name in names}, foreign


def put_back_constraints(connection, statements):
    for statement in statements:
        connection.exec_driver_sql(statement)


def load_table(connection, table, columns, chunks, expected_rows, on_rows=None):
    """Load one table from a stream of portable-format bytes; the row count must match the manifest."""
    if connection.dialect.name == "postgresql":
        rows = _load_copy(connection, table, columns, chunks, on_rows)
    else:
        rows = _load_cursor(connection, table, columns, chunks, on_rows)
    if rows != expected_rows:
        raise RestoreFailed(f"Table {table.name}: the archive declares {expected_rows} rows but holds {rows}; "
                            "the restore was rolled back and the store is unchanged.")
    return rows


def load_rows(connection, table, columns, chunks, on_rows=None):
    """PostgreSQL: COPY a stream of whole rows into ``table``, return how many; the caller checks the count
    (when several connections load one table's rows between them, only their sum can be checked)."""
    return _load_copy(connection, table, columns, chunks, on_rows)


def _load_copy(connection, table, columns, chunks, on_rows):
    preparer = connection.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    cursor = connection.connection.driver_connection.cursor()
    rows = 0
    with cursor.copy(f"COPY {preparer.format_table(table)} ({names}) FROM STDIN") as copy:
        for chunk in chunks:
            copy.write(chunk)
            rows += chunk.count(b"\n")
            if on_rows:
                on_rows(rows)
    return rows


def _load_cursor(connection, table, columns, chunks, on_rows):
    dialect = connection.dialect
    parsers, binds = [], []
    for name in columns:
        column = table.c[name]
        parsers.append(tablecodec.parser(tablecodec.type_tag(column.type)))
        binds.append(column.type.dialect_impl(dialect).bind_processor(dialect))
    converters = [(i, bind) for i, bind in enumerate(binds) if bind is not None]
    cursor = connection.connection.driver_connection.cursor()
    sql = _positional_insert(dialect, table, columns)
    rows, batch = 0, []
    for lines in split_lines(chunks, table.name):
        for line in lines:
            values = tablecodec.parse_line(line, parsers)
            for i, bind in converters:
                if values[i] is not None:
                    values[i] = bind(values[i])
            batch.append(values)
        if batch:  # one chunk (about CHUNK bytes of rows) per executemany: memory stays flat
            cursor.executemany(sql, batch)
            rows += len(batch)
            batch = []
            if on_rows:
                on_rows(rows)
    if batch:
        cursor.executemany(sql, batch)
        rows += len(batch)
        if on_rows:
            on_rows(rows)
    cursor.close()
    return rows


def split_lines(chunks, table_name):
    """The complete lines of a stream of chunks, a list per chunk that ends one or more.

    An unfinished line is kept as a list of its pieces and joined once, when its end arrives: gluing each
    new chunk onto a growing remainder would copy a long row once per chunk (quadratic in its length).
    """
    pending = []
    for chunk in chunks:
        if b"\n" not in chunk:
            pending.append(chunk)
            continue
        if pending:
            pending.append(chunk)
            chunk, pending = b"".join(pending), []
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            pending.append(rest)
        yield lines
    if pending:
        raise RestoreFailed(f"Table {table_name}: the data ends in the middle of a row; the restore was rolled back "
                            "and the store is unchanged.")


def _positional_insert(dialect, table, columns):
    """INSERT text built from our own schema's names (never the archive's), for a positional DBAPI."""
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)
    if marker is None:
        raise RestoreFailed(f"The {dialect.name} driver's parameter style {dialect.paramstyle!r} is not supported.")
    preparer = dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    return f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES ({', '.join([marker] * len(columns))})"


def reset_sequences(connection, tables):
    """Make the next generated ids follow the restored rows."""
    if connection.dialect.name == "postgresql":
        for table in tables:
            for column in table.primary_key.columns:
                if not isinstance(column.type, sa.Integer):
                    continue
                sequence = connection.scalar(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                             {"t": table.name, "c": column.name})
                if sequence:
                    connection.execute(sa.select(sa.func.setval(
                        sa.literal(sequence), sa.func.coalesce(sa.select(sa.func.max(column)).scalar_subquery(), 1),
                        sa.select(sa.func.max(column)).scalar_subquery().is_not(None))))
    elif connection.dialect.name == "sqlite":
        has_sequence = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_sequence'").first()
        if has_sequence:
            for table in tables:
                pk = list(table.primary_key.columns)
                if len(pk) == 1 and isinstance(pk[0].type, sa.Integer):
                    top = connection.scalar(sa.select(sa.func.max(pk[0])))
                    connection.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table.name,))
                    if top is not None:
                        connection.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)",
                                                   (table.name, top))


def count_rows(connection, tables, estimate=False):
    """Rows per table, for progress totals. ``estimate``: on PostgreSQL, the planner's estimate
    (pg_class.reltuples) of each table that has statistics, instead of a COUNT(*) that reads every table
    (seconds on a large store); a table never analyzed is counted."""
    estimates = {}
    if estimate and connection.dialect.name == "postgresql":
        estimates = dict(connection.execute(sa.text(
            "SELECT c.relname, c.reltuples FROM pg_class c WHERE c.relname = ANY(:names) AND c.relkind = 'r' "
            "AND c.relnamespace = current_schema()::regnamespace"), {"names": [t.name for t in tables]}).all())
    return {t.name: int(estimates[t.name]) if estimates.get(t.name, -1) >= 0
            else connection.scalar(sa.select(sa.func.count()).select_from(t)) for t in tables}


# --- PostgreSQL: a restore loaded beside the live tables, then swapped in ---------------------------------------
# Schemas a restore makes in the store's database: the new tables while they load ("restore_new_"), the old ones
# after the swap until they are dropped ("restore_old_"). Whatever carries these prefixes when no restore runs is
# left over by a process that died, and ``drop_restore_schemas`` removes it.
NEW_SCHEMA, OLD_SCHEMA = "restore_new_", "restore_old_"
SWAP_LOCK_TIMEOUT = "30s"


def with_search_path(url, schema):
    """The store's URL, with a search path that names only ``schema`` (an engine on it sees only that schema)."""
    return url.update_query_dict({"options": f"-csearch_path={schema}"})


def live_schema(connection):
    return connection.exec_driver_sql("SELECT current_schema()").scalar()


def swap_tables(connection, tables, new_schema, old_schema):
    """Inside the caller's transaction: move the live tables into ``old_schema`` and the restored ones (with
    their indexes, constraints and sequences) into their place. Foreign keys point at the tables they were
    made with, so the set moves as a whole; queries of other sessions find the new tables by name."""
    preparer = connection.dialect.identifier_preparer
    live = preparer.quote(live_schema(connection))
    old, new = preparer.quote(old_schema), preparer.quote(new_schema)
    names = [preparer.quote(t.name) for t in tables]
    connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
    connection.exec_driver_sql(f"CREATE SCHEMA {old}")
    connection.exec_driver_sql(f"LOCK TABLE {', '.join(f'{live}.{n}' for n in names)} IN ACCESS EXCLUSIVE MODE")
    for name in names:
        connection.exec_driver_sql(f"ALTER TABLE {live}.{name} SET SCHEMA {old}")
    for name in names:
        connection.exec_driver_sql(f"ALTER TABLE {new}.{name} SET SCHEMA {live}")


def drop_restore_schemas(engine, only=None):
    """Drop the schemas a restore made (``only``: those names; else every one a dead process left)."""
    with engine.begin() as connection:
        found = connection.execute(sa.text(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE :new OR nspname LIKE :old"),
            {"new": NEW_SCHEMA + "%", "old": OLD_SCHEMA + "%"}).scalars().all()
        for name in found:
            if only is None or name in only:
                connection.exec_driver_sql(f"DROP SCHEMA {connection.dialect.identifier_preparer.quote(name)} CASCADE")
    return found
