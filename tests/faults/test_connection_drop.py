"""The database connection drops in the middle of a database restore: rolled back, store untouched."""
import pytest
import sqlalchemy as sa

from app.snapshot import RestoreFailed
from tests.helpers import POSTGRES_ADMIN_URL
from tests.faults.harness import damage

pytestmark = pytest.mark.slow


def terminate_others(admin, database):
    """Cut every connection to the store's database but the admin's, from the server's side."""
    with admin.connect() as c:
        return c.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalars().all()


@pytest.mark.parametrize("parts", ["database", "both"])
@pytest.mark.parametrize("moment", ["load", "swap"])
def test_connection_killed_by_the_server_mid_load(pg_store, parts, moment, monkeypatch):  # noqa: F811
    """``load``: the rows stream in (beside the live tables) when the server cuts every connection, after
    the first block of table data; ``swap``: the cut comes inside maintenance, as the swap begins."""
    from app.snapshot import operations

    archive = pg_store.create("backup", "both")
    damage(pg_store.engine, pg_store.uploads)
    before = pg_store.state()
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    database = pg_store.engine.url.database
    killed = []
    chunks = operations._table_chunks

    def cut_after_the_first_block(*args, **kwargs):
        for number, chunk in enumerate(chunks(*args, **kwargs)):
            yield chunk
            if number == 0 and not killed:
                killed.extend(terminate_others(admin, database))

    def cut_as_the_swap_begins(event):
        if event.phase == "swap" and not killed:
            killed.extend(terminate_others(admin, database))

    if moment == "load":
        monkeypatch.setattr(operations, "_table_chunks", cut_after_the_first_block)
    try:
        with pytest.raises(RestoreFailed, match="rolled back") as refused:
            pg_store.restore(archive, parts, progress=cut_as_the_swap_begins if moment == "swap" else None)
    finally:
        admin.dispose()
    assert any(killed)  # the restore's connections really were cut (one may have been closing already)
    assert "\n" not in str(refused.value)
    assert pg_store.state() == before  # a new connection sees the store as it was, rows and files
    assert not [p for p in pg_store.uploads.parent.iterdir() if p.name.startswith(".uploads")]
