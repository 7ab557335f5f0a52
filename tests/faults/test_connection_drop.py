"""The database connection drops in the middle of a database restore: rolled back, store untouched."""
import pytest
import sqlalchemy as sa

from app.snapshot import RestoreFailed
from tests.helpers import POSTGRES_ADMIN_URL
from tests.faults.harness import damage

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("parts", ["database", "both"])
def test_connection_killed_by_the_server_mid_load(pg_store, parts, monkeypatch):  # noqa: F811
    from app.snapshot import progress

    monkeypatch.setattr(progress.Reporter.__init__, "__defaults__", (None, 0.0))  # every event, not 5 a second
    archive = pg_store.create("backup", "both")
    damage(pg_store.engine, pg_store.uploads)
    before = pg_store.state()
    database = pg_store.engine.url.database
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    killed = []

    def terminate_mid_load(event):
        if event.phase == "load" and event.done > 1000 and not killed:  # in the middle of the COPY
            with admin.connect() as c:
                killed.extend(c.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"), {"db": database}).scalars())

    try:
        with pytest.raises(RestoreFailed, match="rolled back") as refused:
            pg_store.restore(archive, parts, progress=terminate_mid_load)
    finally:
        admin.dispose()
    assert killed and all(killed)  # the restore's own connection really was cut
    assert "\n" not in str(refused.value)
    assert pg_store.state() == before  # a new connection sees the store as it was, rows and files
    assert not [p for p in pg_store.uploads.parent.iterdir() if p.name.startswith(".uploads")]
