"""SIGKILL a restore at named points: after recovery the store is the old one or the archive's, never a mix."""
import pytest

from tests.faults.harness import Scenario, sqlite_urls

pytestmark = pytest.mark.slow

EXPECTED = {
    "staging:1": "before",       # while files are written into the staging folder
    "load:1": "before",          # at the first rows of the database load
    "load:2500": "before",       # in the middle of the database load
    "commit": "before",          # files swapped in, rows loaded, not committed
    "rename:1": "before",        # between the two renames of the swap
    "rename:2": "before",        # at the second rename of the swap
    "after-commit": "after",     # committed, old files not yet deleted
}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults")
    return Scenario(workdir, sqlite_urls(workdir))


@pytest.mark.parametrize("point", list(EXPECTED))
def test_sqlite_store_is_before_or_after(scenario, point):
    assert scenario.kill_at(point) == EXPECTED[point]
