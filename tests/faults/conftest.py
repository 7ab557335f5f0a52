"""Fault fixtures: an app whose configuration a real `rq worker` process rebuilds from the environment."""
import pytest
from redis import Redis

from tests.helpers import dispose, make_worker_app


@pytest.fixture
def worker_app(tmp_path, redis_url):
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()
    app = make_worker_app(tmp_path, redis_url)
    yield app
    dispose(app)


