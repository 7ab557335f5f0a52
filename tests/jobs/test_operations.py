"""Export, backup, inspect and restore as real RQ jobs: progress, results, failures, lost jobs, the lock."""
import io
import threading
import zipfile
from datetime import timedelta
from decimal import Decimal

import pytest
from redis import Redis
from rq.job import Job

from app.extensions import db
from app.models import AuditEvent, JobRun, Product, ProductImage, StoreStatus
from app.queue import SERIALIZER
from tests.helpers import csrf_token_from, is_checked


@pytest.fixture
def store(app, tmp_path):
    """A few products with image files in the uploads folder."""
    with app.app_context():
        for n in range(3):
            product = Product(sku=f"P-{n}", name=f"Product {n}", price=Decimal("1.50") * (n + 1))
            product.images.append(ProductImage(path=f"products/{n}.png", alt=f"Product {n}"))
            db.session.add(product)
            image = tmp_path / "uploads" / "products" / f"{n}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(bytes([n]) * 2048)
        db.session.commit()
    return tmp_path



def post(client, url, data=None, headers=None, **kwargs):
    """A POST as the wizard's HTMX sends it."""
    headers = {"HX-Request": "true", **(headers or {})}
    return client.post(url, data={**(data or {}), "csrf_token": client.csrf}, headers=headers, **kwargs)


def status(client, run_id):
    return client.get(f"/admin/tools/backup/runs/{run_id}", headers={"Accept": "application/json"}).get_json()


def latest_run(app, kind):
    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == kind).order_by(JobRun.created_at.desc())).first()
        if run is not None:
            db.session.expunge(run)
        return run


def test_export_runs_and_offers_a_download(app, admin, store, run_worker):
    response = post(admin, "/admin/tools/backup/export")
    assert response.status_code == 200 and b'data-job-state="queued"' in response.data
    assert b'hx-trigger="every 1s"' in response.data
    run = latest_run(app, "export")
    assert status(admin, run.id)["state"] == "queued"

    run_worker()

    state = status(admin, run.id)
    assert state["state"] == "finished" and state["percent"] == 100
    assert state["download_url"].endswith(".zip")
    final = admin.get(f"/admin/tools/backup/runs/{run.id}", headers={"HX-Request": "true"})
    assert final.status_code == 286 and b"hx-trigger" not in final.data and b"Download" in final.data
    download = admin.get(state["download_url"])
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(download.data)) as archive:
        assert "manifest.json" in archive.namelist()
    download.close()
    with app.app_context():
        actions = set(db.session.scalars(db.select(AuditEvent.action)))
    assert {"export.start", "export.finish", "archive.download"} <= actions


def test_progress_is_written_into_job_meta(app, admin, store, run_worker, redis_url):
    post(admin, "/admin/tools/backup/backup", {"parts": "both"})
    run = latest_run(app, "backup")
    run_worker()
    job = Job.fetch(run.id, connection=Redis.from_url(redis_url), serializer=SERIALIZER)
    assert job.meta.get("phase") and "done" in job.meta and "unit" in job.meta
    assert status(admin, run.id)["state"] == "finished"


def test_progress_writes_are_rate_limited(app, redis_url):
    from types import SimpleNamespace

    from app.queue import get_queue
    from jobs.functions import META_INTERVAL, Progress

    with app.app_context():
        job = get_queue(app).enqueue("jobs.functions.export_store", "no-such-run")
    now = [1000.0]
    progress = Progress(job, clock=lambda: now[0])

    def report(done, phase="database"):
        progress(SimpleNamespace(phase=phase, done=done, total=100, unit="rows", message=""))
        return Job.fetch(job.id, connection=Redis.from_url(redis_url), serializer=SERIALIZER).meta

    assert report(1)["done"] == 1            # the first report is written
    now[0] += META_INTERVAL / 2
    assert report(2)["done"] == 1            # within the interval: skipped
    assert report(3, phase="files")["phase"] == "files"  # a new phase always goes through
    now[0] += META_INTERVAL
    assert report(4, phase="files")["done"] == 4         # the interval passed: written


def test_a_failing_job_is_recorded_as_failed_with_its_message(app, admin, store, run_worker):
    garbage = (io.BytesIO(b"this is not a backup" * 100), "backup.zip")
    response = post(admin, "/admin/tools/backup/restore/upload", {"archive": garbage},
                    content_type="multipart/form-data")
    assert response.status_code == 200
    run = latest_run(app, "inspect")
    run_worker()
    state = status(admin, run.id)
    assert state["state"] == "failed"
    assert state["message"] and "Traceback" not in state["message"]
    with app.app_context():
        event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "inspect.finish")).one()
        assert event.outcome == "failure"


def test_a_job_redis_no_longer_knows_is_lost_not_done(app, admin, store, redis_url):
    post(admin, "/admin/tools/backup/backup", {"parts": "database"})
    run = latest_run(app, "backup")
    Job.fetch(run.id, connection=Redis.from_url(redis_url), serializer=SERIALIZER).delete()
    with app.app_context():  # a minute later (a run younger than that may still be on its way to Redis)
        row = db.session.get(JobRun, run.id)
        row.created_at -= timedelta(minutes=1)
        db.session.commit()
    state = status(admin, run.id)
    assert state["state"] == "lost" and state["download_url"] is None
    # ...and its lock does not block the next backup.
    assert post(admin, "/admin/tools/backup/backup", {"parts": "database"}).status_code == 200


def test_a_started_job_without_heartbeat_is_lost(app, admin, store, redis_url):
    from datetime import datetime, timedelta, timezone

    post(admin, "/admin/tools/backup/backup", {"parts": "database"})
    run = latest_run(app, "backup")
    job = Job.fetch(run.id, connection=Redis.from_url(redis_url), serializer=SERIALIZER)
    job.set_status("started")
    job.started_at = datetime.now(timezone.utc) - timedelta(minutes=5)
    job.save()
    with app.app_context():
        db.session.execute(db.update(JobRun).where(JobRun.id == run.id).values(state="started"))
        db.session.commit()
    assert status(admin, run.id)["state"] == "lost"


def test_second_backup_is_refused_while_one_is_running(app, admin, store):
    assert post(admin, "/admin/tools/backup/backup", {"parts": "both"}).status_code == 200
    refused = post(admin, "/admin/tools/backup/backup", {"parts": "files"})
    assert refused.status_code == 409 and b"still running" in refused.data
    assert post(admin, "/admin/tools/backup/export").status_code == 200  # exports run alongside


def test_simultaneous_starts_have_one_winner(app, store):
    from tests.helpers import client_at, login

    clients = []
    for _ in range(6):
        c = client_at(app, "198.51.100.10")
        login(c, "super_admin@test.example")
        c.csrf = csrf_token_from(c.get("/admin/tools/backup/"))
        clients.append(c)
    barrier = threading.Barrier(len(clients))
    codes = []

    def start(c):
        barrier.wait()
        codes.append(post(c, "/admin/tools/backup/backup", {"parts": "database"}).status_code)

    threads = [threading.Thread(target=start, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200] + [409] * 5
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(JobRun)) == 1


def test_restore_flow_brings_the_store_back(app, admin, store, run_worker):
    post(admin, "/admin/tools/backup/backup", {"parts": "both"})
    backup = latest_run(app, "backup")
    run_worker()
    name = status(admin, backup.id)["download_url"].rsplit("/", 1)[-1]

    with app.app_context():  # damage the store
        db.session.delete(db.session.scalars(db.select(Product).where(Product.sku == "P-1")).one())
        db.session.commit()
    (store / "uploads" / "products" / "1.png").unlink()

    post(admin, "/admin/tools/backup/restore/kept", {"name": name})
    inspection = latest_run(app, "inspect")
    run_worker()
    review = admin.get(f"/admin/tools/backup/runs/{inspection.id}")
    assert b'data-review' in review.data and b"Type <code>demo-store</code>" in review.data

    sha = latest_run(app, "inspect").result["sha256"]  # the row as the worker finished it
    wrong = post(admin, f"/admin/tools/backup/restore/{inspection.id}/confirm",
                 {"parts": "both", "store_name": "not-the-store", "safety": "y", "archive_sha256": sha})
    # A typo keeps the review and its form on screen, with the problem above the form.
    assert wrong.status_code == 422 and latest_run(app, "restore") is None
    assert b"data-form-error" in wrong.data and b"Type the store&#39;s name, demo-store" in wrong.data
    assert b"data-review" in wrong.data and b'name="store_name"' in wrong.data
    # ... and keeps what the user chose: a reset to other parts or a re-ticked box could surprise them.
    narrower = post(admin, f"/admin/tools/backup/restore/{inspection.id}/confirm",
                    {"parts": "database", "store_name": "typo", "archive_sha256": sha})
    assert narrower.status_code == 422
    assert is_checked(narrower.data, "parts", "database")
    assert not is_checked(narrower.data, "parts", "both")
    assert not is_checked(narrower.data, "safety", "y")
    no_js = admin.post(f"/admin/tools/backup/restore/{inspection.id}/confirm",
                       data={"parts": "both", "store_name": "", "csrf_token": admin.csrf, "archive_sha256": sha})
    assert no_js.status_code == 400 and latest_run(app, "restore") is None
    response = post(admin, f"/admin/tools/backup/restore/{inspection.id}/confirm",
                    {"parts": "both", "store_name": "demo-store", "safety": "y", "archive_sha256": sha})
    assert response.status_code == 200
    restore = latest_run(app, "restore")
    with app.app_context():
        epoch = StoreStatus.get().session_epoch
    run_worker()

    with app.app_context():
        restored = db.session.get(JobRun, restore.id)
        assert restored.state == "finished", restored.error
        assert restored.result["safety_backup"]
        assert db.session.scalars(db.select(Product).where(Product.sku == "P-1")).one()
        assert StoreStatus.get().session_epoch == epoch + 1
        assert StoreStatus.get().maintenance is False
    assert (store / "uploads" / "products" / "1.png").read_bytes() == bytes([1]) * 2048
    # Every session ended: the next poll sends the user to the login page.
    after = admin.get(f"/admin/tools/backup/runs/{restore.id}", headers={"HX-Request": "true"})
    assert after.status_code == 401 and after.headers["HX-Redirect"].startswith("/login")


def test_without_javascript_a_start_returns_to_the_page_showing_the_run(app, admin, store):
    response = admin.post("/admin/tools/backup/backup", data={"parts": "both", "csrf_token": admin.csrf})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/tools/backup/"
    page = admin.get("/admin/tools/backup/")
    run = latest_run(app, "backup")
    assert f"/admin/tools/backup/runs/{run.id}".encode() in page.data


def test_a_job_redis_forgot_while_its_worker_still_beats_is_not_lost(app, admin, store, redis_url):
    """After Redis restarts empty, a running job's next heartbeat says it is alive: not lost, not replaceable."""
    from app.queue import heartbeat_key

    post(admin, "/admin/tools/backup/backup", {"parts": "database"})
    run = latest_run(app, "backup")
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    with app.app_context():
        row = db.session.get(JobRun, run.id)
        row.state, row.created_at = "started", row.created_at - timedelta(minutes=1)
        db.session.commit()
    redis.set(heartbeat_key(run.id), "1", ex=30)  # the worker's heartbeat, and with it the lock, come back
    redis.set(f"store:{app.config['STORE_NAME']}:operation", run.id)
    assert status(admin, run.id)["state"] == "started"
    refused = post(admin, "/admin/tools/backup/backup", {"parts": "database"})
    assert b"is still running" in refused.data
    redis.delete(heartbeat_key(run.id))  # the worker dies too
    assert status(admin, run.id)["state"] == "started"  # it gets one TTL to beat again...
    missed = f"run:{run.id}:missed-since"
    redis.set(missed, float(redis.get(missed)) - app.config["JOB_HEARTBEAT_TTL"])  # ...which passes silently
    assert status(admin, run.id)["state"] == "lost"
