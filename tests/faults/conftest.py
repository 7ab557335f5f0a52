"""Fault fixtures: an app whose configuration a real `rq worker` process rebuilds from the environment,
and a real, small filesystem to fill up."""
import subprocess

import pytest
from redis import Redis

from tests.helpers import dispose, make_worker_app, required


@pytest.fixture
def worker_app(tmp_path, redis_url):
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()
    app = make_worker_app(tmp_path, redis_url)
    yield app
    dispose(app)


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
