"""SIGKILL a restore at named points: after recovery the store is the old one or the archive's, never a mix."""
import pytest

from tests.helpers import POSTGRES_ADMIN_URL, required
from tests.faults.harness import Scenario, postgres_urls, sqlite_urls

pytestmark = pytest.mark.slow

EXPECTED = {
    "staging:1": "before",       # while files are written into the staging folder
    "load:1": "before",          # at the first rows (or page, of a SQLite file) of the database load
    "load:half": "before",       # in the middle of the database load
    "commit": "before",          # files swapped in, rows loaded, not committed
    "rename:1": "before",        # between the two renames of the swap
    "rename:2": "before",        # at the second rename of the swap
    "after-commit": "after",     # committed, old files not yet deleted
}


@pytest.fixture(scope="module", params=["database file", "rows"])
def scenario(tmp_path_factory, request):
    """A SQLite store's own backup (its database file, copied back page by page), and an archive of rows (as
    from PostgreSQL) restored into a SQLite store."""
    workdir = tmp_path_factory.mktemp("faults")
    return Scenario(workdir, sqlite_urls(workdir), database_file=request.param == "database file")


@pytest.mark.parametrize("point", list(EXPECTED))
def test_sqlite_store_is_before_or_after(scenario, point):
    assert scenario.kill_at(point) == EXPECTED[point]


@pytest.fixture(scope="module")
def pg_scenario(tmp_path_factory):
    import sqlalchemy as sa

    try:
        sa.create_engine(POSTGRES_ADMIN_URL, poolclass=sa.pool.NullPool).connect().close()
    except sa.exc.OperationalError as error:
        if required("REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {error}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}")
    urls = postgres_urls(POSTGRES_ADMIN_URL)
    try:
        yield Scenario(tmp_path_factory.mktemp("pg-faults"), urls)
    finally:
        urls.drop()


@pytest.mark.parametrize("point", list(EXPECTED))
def test_postgresql_store_is_before_or_after(pg_scenario, point):
    """Also proves the constraints set aside during the load come back: the schema is part of the state."""
    assert pg_scenario.kill_at(point) == EXPECTED[point]
