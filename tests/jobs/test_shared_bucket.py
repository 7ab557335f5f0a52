"""Several hosts, as production runs them with a bucket: a web process and two `rq worker` processes,
each with its own local disk (INSTANCE_DIR, BACKUPS_DIR, uploads), sharing only PostgreSQL, Redis and
the S3 bucket (a real SeaweedFS). What one worker backs up, the web lists and serves, and the other
worker restores from, although its own disk never saw the archive."""
import os
from decimal import Decimal

import pytest
from redis import Redis
from rq.job import Job
from rq.worker import Worker

from app import create_app
from app.extensions import db
from app.models import JobRun, MaintainerNetwork, Product, User
from app.queue import SERIALIZER
from tests.helpers import (
    FAST_HASH, MAINTAINER_IP, client_at, csrf_token_from, dispose, kill_tree, login, rq_worker, wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

KEYS = {"SECRET_KEY": "shared-bucket-secret", "BACKUP_SIGNING_KEY": "shared-bucket-signing"}
HX = {"HX-Request": "true"}


@pytest.fixture
def hosts(tmp_path, redis_url, postgres_database, s3_server):
    """The web app (a test client's app, on "host W") and the environments of two workers (hosts A, B)."""
    Redis.from_url(redis_url).flushdb()
    bucket = s3_server.new_bucket()
    shared = {"ARCHIVE_STORE_URL": f"s3://{bucket}/shop", "S3_ENDPOINT_URL": s3_server.endpoint,
              "S3_ACCESS_KEY_ID": s3_server.access_key, "S3_SECRET_ACCESS_KEY": s3_server.secret_key, **KEYS}
    web = create_app("testing", {
        "SQLALCHEMY_DATABASE_URI": postgres_database, "SQLALCHEMY_BINDS": {"platform": postgres_database},
        "UPLOADS_DIR": str(tmp_path / "W" / "uploads"), "BACKUPS_DIR": str(tmp_path / "W" / "backups"),
        "REDIS_URL": redis_url, **shared})
    with web.app_context():
        db.create_all()
        db.session.add(User(email="super_admin@test.example", role="super_admin", password_hash=FAST_HASH))
        db.session.add(MaintainerNetwork(cidr="198.51.100.0/24", label="Office", added_by="test"))
        for n in range(3):
            db.session.add(Product(sku=f"P-{n}", name=f"Product {n}", price=Decimal("3.00")))
        db.session.commit()
    environments = {}
    for host in ("A", "B"):
        environments[host] = {
            **{k: v for k, v in os.environ.items() if k not in ("UPLOADS_DIR", "BACKUPS_DIR")},
            "INSTANCE_DIR": str(tmp_path / host), "DATABASE_URL": postgres_database,
            "PLATFORM_DATABASE_URL": postgres_database, "REDIS_URL": redis_url, "APP_ENV": "development", **shared}
    yield web, environments, bucket
    dispose(web)


def run_of(app, run_id):
    with app.app_context():
        run = db.session.get(JobRun, run_id)
        db.session.expunge(run)
        return run


def finished(app, run_id):
    run = run_of(app, run_id)
    return run if run.state in ("finished", "failed") else None


def latest(app, kind):
    with app.app_context():
        return db.session.scalars(db.select(JobRun.id).where(JobRun.kind == kind)
                                  .order_by(JobRun.created_at.desc())).first()


def worker_pid(redis_url, run_id):
    """The process id of the worker that ran a run's job."""
    redis = Redis.from_url(redis_url)
    job = Job.fetch(run_id, connection=redis, serializer=SERIALIZER)
    return Worker.find_by_key(f"rq:worker:{job.worker_name}", connection=redis).pid


def files_named(folder, name):
    return [p for p in folder.rglob("*") if p.name == name]


def test_what_one_worker_backs_up_the_web_serves_and_the_other_worker_restores(hosts, redis_url, s3_server,
                                                                             tmp_path):
    web, environments, bucket = hosts
    workers = {host: rq_worker(env) for host, env in environments.items()}
    try:
        client = client_at(web, MAINTAINER_IP)
        assert login(client, "super_admin@test.example").status_code == 302
        token = csrf_token_from(client.get("/admin/tools/backup/"))

        client.post("/admin/tools/backup/backup", data={"parts": "database", "csrf_token": token}, headers=HX)
        backup = wait_for(lambda: finished(web, latest(web, "backup")), timeout=90)
        assert backup.state == "finished", backup.error
        name = backup.archive_name
        maker = next(h for h, p in workers.items() if p.pid == worker_pid(redis_url, backup.id))
        other = "B" if maker == "A" else "A"
        assert files_named(tmp_path, name) == []  # uploaded and removed: on no host's disk

        # The web process (host W) lists it from the bucket and serves it, streamed through the app.
        page = client.get("/admin/tools/backup/")
        assert name.encode() in page.data and b"UNREADABLE" not in page.data
        download = client.get(f"/admin/tools/backup/archives/{name}")
        stored = s3_server.client().get_object(Bucket=bucket, Key=f"shop/{name}")["Body"].read()
        assert download.status_code == 200 and download.get_data() == stored

        # The maker stops; the other worker, whose disk never saw the archive, inspects and restores it.
        workers[maker].terminate()
        workers[maker].wait(timeout=30)
        with web.app_context():
            db.session.execute(db.delete(Product).where(Product.sku == "P-1"))
            db.session.commit()
        client.post("/admin/tools/backup/restore/kept", data={"name": name, "csrf_token": token}, headers=HX)
        inspection = wait_for(lambda: finished(web, latest(web, "inspect")), timeout=90)
        assert inspection.state == "finished", inspection.error
        response = client.post(f"/admin/tools/backup/restore/{inspection.id}/confirm", headers=HX, data={
            "parts": "database", "store_name": "demo-store", "safety": "y", "csrf_token": token,
            "archive_sha256": inspection.result["sha256"]})
        assert response.status_code == 200, response.data
        restore = wait_for(lambda: finished(web, latest(web, "restore")), timeout=90)
        assert restore.state == "finished", restore.error
        for run in (inspection, restore):
            assert worker_pid(redis_url, run.id) == workers[other].pid
        with web.app_context():
            assert db.session.scalars(db.select(Product).where(Product.sku == "P-1")).one()
        # The other worker's fetched copies are gone; its safety backup went to the bucket, like any backup.
        assert files_named(tmp_path, name) == [] and list(tmp_path.rglob("*.zip")) == []
        keys = [item["Key"] for item in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert f"shop/{restore.result['safety_backup']}" in keys
    finally:
        for process in workers.values():
            if process.poll() is None:
                kill_tree(process)
