"""Reading an archive holds nothing per member: inspecting it and restoring its files take the same memory for
3,000 files as for 30,000 (format 2; format 1 archives are still read in memory, bounded by max_members).

Measured with tracemalloc (Python allocations, deterministic), not RSS. Before format 2, reading cost ~1 KB per
file (Reader.entries, the manifest's members dict, and the sets the checks built): ~27 MB more for the larger set.
"""
import tracemalloc

import pytest

from app import snapshot
from tests.factories import metadata, new_store
from tests.snapshot.test_memory_backup import make_files

pytestmark = pytest.mark.slow

SMALL, LARGE = 3_000, 30_000
# Generous for fixed costs (a 1 MiB read block, a 256 KiB record block, the schema cache); 27,000 files at
# ~1 KB each would add ~27 MB.
ALLOWED_GROWTH = 1_500_000


@pytest.fixture
def archives(tmp_path):
    """A files-only backup of SMALL and of LARGE files, and a store to restore them into."""
    made = {}
    for count in (SMALL, LARGE):
        store = new_store(f"sqlite:///{tmp_path}/store-{count}.db", tmp_path / f"store-{count}")
        metadata().create_all(store.engine)
        make_files(store.uploads, count)
        made[count] = (store, store.create("backup", "files"))
    yield made
    for store, _ in made.values():
        store.engine.dispose()


def peak(call):
    tracemalloc.start()
    try:
        result = call()
        _, top = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return top, result


def test_inspecting_an_archive_does_not_hold_its_members_in_memory(archives):
    peaks = {}
    for count, (store, archive) in archives.items():
        peaks[count], summary = peak(lambda: store.inspect(archive))
        assert summary.file_count == count
    growth = peaks[LARGE] - peaks[SMALL]
    assert growth < ALLOWED_GROWTH, \
        f"{growth / 1e6:.1f} MB more for {LARGE - SMALL:,} more files ({peaks[SMALL] / 1e6:.1f} -> {peaks[LARGE] / 1e6:.1f})"


def test_restoring_the_files_does_not_hold_them_in_memory(archives):
    peaks = {}
    for count, (store, archive) in archives.items():
        peaks[count], result = peak(lambda: store.restore(archive, "files"))
        assert result.file_count == count
        assert sum(1 for p in store.uploads.rglob("*") if p.is_file()) == count
    growth = peaks[LARGE] - peaks[SMALL]
    assert growth < ALLOWED_GROWTH, \
        f"{growth / 1e6:.1f} MB more for {LARGE - SMALL:,} more files ({peaks[SMALL] / 1e6:.1f} -> {peaks[LARGE] / 1e6:.1f})"


def test_a_format_1_archive_is_still_read_in_memory_and_that_is_what_the_tests_above_would_catch(archives, tmp_path):
    """The same measure on the same files written as format 1 grows with the files: the test can fail."""
    from tests.snapshot import hostile

    peaks = {}
    for count, (store, archive) in archives.items():
        members, manifest = hostile.read(archive)
        old = hostile.write(tmp_path / f"v1-{count}.zip", members, manifest, store.key)
        peaks[count], summary = peak(lambda: store.inspect(old))
        assert summary.file_count == count
    assert peaks[LARGE] - peaks[SMALL] > 10 * ALLOWED_GROWTH
