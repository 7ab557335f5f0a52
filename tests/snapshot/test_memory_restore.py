"""Reading an archive holds nothing per member: inspecting it and restoring its files take the same memory for
3,000 files as for 30,000 (format 2; format 1 archives are still read in memory, bounded by max_members).

Measured with tracemalloc (Python allocations, deterministic), not RSS, in a fresh Python process: inside a long
test run, allocations that belong to the process's history (~3.7 MB once, after ~180 earlier tests) land in the
measure. Before format 2, reading cost ~1 KB per file (Reader.entries, the manifest's members dict, and the sets
the checks built): ~27 MB more for the larger set.

Run on its own: python -m tests.snapshot.test_memory_restore FOLDER
"""
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMALL, LARGE = 3_000, 30_000
# Generous for fixed costs (64 KiB list and directory blocks, a 256 KiB record block, the schema cache); 27,000
# files at ~1 KB each would add ~27 MB.
ALLOWED_GROWTH = 1_500_000
ROOT = Path(__file__).resolve().parents[2]


def peak(call):
    gc.collect()
    tracemalloc.start()
    try:
        result = call()
        _, top = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return top, result


def measure(folder):
    """{operation: {count: peak bytes}} for inspect, a files restore, and inspect of the same files as format 1."""
    from tests.factories import metadata, new_store
    from tests.snapshot import hostile
    from tests.snapshot.test_memory_backup import make_files

    peaks = {"inspect": {}, "restore": {}, "inspect format 1": {}}
    for count in (SMALL, LARGE):
        store = new_store(f"sqlite:///{folder}/store-{count}.db", Path(folder) / f"store-{count}")
        metadata().create_all(store.engine)
        make_files(store.uploads, count)
        archive = store.create("backup", "files")
        peaks["inspect"][count], summary = peak(lambda: store.inspect(archive))
        assert summary.file_count == count
        peaks["restore"][count], result = peak(lambda: store.restore(archive, "files"))
        assert result.file_count == count
        assert sum(1 for p in store.uploads.rglob("*") if p.is_file()) == count
        members, manifest = hostile.read(archive)
        old = hostile.write(Path(folder) / f"v1-{count}.zip", members, manifest, store.key)
        peaks["inspect format 1"][count], summary = peak(lambda: store.inspect(old))
        assert summary.file_count == count
        store.engine.dispose()
    return peaks


@pytest.fixture(scope="module")
def peaks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory-restore")
    done = subprocess.run([sys.executable, "-m", "tests.snapshot.test_memory_restore", str(folder)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return {op: {int(k): v for k, v in values.items()} for op, values in json.loads(done.stdout).items()}


def growth(values):
    more = values[LARGE] - values[SMALL]
    return more, f"{more / 1e6:.1f} MB more for {LARGE - SMALL:,} more files ({values[SMALL] / 1e6:.1f} -> " \
                 f"{values[LARGE] / 1e6:.1f})"


def test_inspecting_an_archive_does_not_hold_its_members_in_memory(peaks):
    more, message = growth(peaks["inspect"])
    assert more < ALLOWED_GROWTH, message


def test_restoring_the_files_does_not_hold_them_in_memory(peaks):
    more, message = growth(peaks["restore"])
    assert more < ALLOWED_GROWTH, message


def test_a_format_1_archive_is_still_read_in_memory_and_that_is_what_the_tests_above_would_catch(peaks):
    """The same measure on the same files written as format 1 grows with the files: the test can fail."""
    more, message = growth(peaks["inspect format 1"])
    assert more > 10 * ALLOWED_GROWTH, message


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1])))
