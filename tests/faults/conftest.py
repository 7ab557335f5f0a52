"""Fault fixtures: a real, small filesystem to fill up (worker_app is in the root conftest)."""
import subprocess

import pytest

from tests.helpers import required


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 3 MB filesystem (tmpfs), mounted for the test (root, as in CI; skipped elsewhere)."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        if required("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {result.stderr.strip()}")
        pytest.skip(f"mounting a tmpfs needs root here: {result.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)
