"""CSRF on every state-changing route, security headers, no inline script, cookies, and the
worker's refusal to run anything but the jobs package."""
import re
from pathlib import Path

import pytest

from app.extensions import db
from app.operations import Caller
from app.models import AuditEvent, JobRun, MaintainerNetwork
from tests.helpers import client_at, csrf_token_from, login

ROOT_DIR = Path(__file__).resolve().parents[2]

SAMPLE = {"run_id": "0" * 32, "name": "test-store-backup-both-20260101T000000000000Z-abcdef.zip", "network_id": "1",
          "schedule_id": "1", "on": "1", "destination_id": "1", "action": "check"}


def post_endpoints(app):
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods:
            yield rule.endpoint, re.sub(r"<(?:[^:>]+:)?(\w+)>", lambda m: SAMPLE[m.group(1)], rule.rule)


def signed_in_for(app, endpoint):
    """A client allowed past the gate of this endpoint, so that only CSRF can stop it."""
    client = client_at(app, "198.51.100.10")
    if endpoint.startswith("platform.") and endpoint != "platform.login":
        assert login(client, "operator@test.example", path="/platform/login").status_code == 302
    elif endpoint not in ("auth.login", "platform.login"):
        assert login(client, "super_admin@test.example").status_code == 302
    return client


def snapshot(app):
    with app.app_context():
        return (db.session.scalar(db.select(db.func.count()).select_from(JobRun)),
                [n.cidr for n in db.session.scalars(db.select(MaintainerNetwork))])


@pytest.mark.parametrize("token", ["missing", "wrong"])
def test_every_state_changing_route_needs_the_csrf_token(app, token):
    endpoints = list(post_endpoints(app))
    assert {"backup.start_backup", "backup.confirm_restore", "platform.add_maintainer", "auth.logout"} <= \
        {e for e, _ in endpoints}
    for endpoint, url in endpoints:
        client = signed_in_for(app, endpoint)
        before = snapshot(app)
        data = {"parts": "both", "cidr": "0.0.0.0/0", "label": "all", "email": "super_admin@test.example",
                "password": "correct horse battery", "store_name": app.config["STORE_NAME"]}
        if token == "wrong":
            data["csrf_token"] = "not-the-token"
        for headers in ({}, {"HX-Request": "true"}):
            response = client.post(url, data=data, headers=headers)
            assert response.status_code == 400, (endpoint, response.status_code)
            assert b"security token" in response.data and b"Traceback" not in response.data
        assert snapshot(app) == before, endpoint
        if endpoint == "auth.logout":
            assert client.get("/admin/tools/backup/").status_code == 200  # still signed in


def test_htmx_requests_send_the_token_in_a_header(app, client, as_role):
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    header = re.search(rb'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page.data)
    assert header, "the page does not give htmx the token header"
    response = client.post("/admin/tools/backup/export",
                           headers={"HX-Request": "true", "X-CSRFToken": header.group(1).decode()})
    assert response.status_code == 200 and b'data-job-state="queued"' in response.data


PAGES = ["/login", "/platform/login", "/", "/admin/tools/backup/", "/admin/tools/backup/audit"]


def test_security_headers_on_every_page(app, client, as_role):
    as_role("super_admin")
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 200, url
        csp = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'", url
        assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'self'"
        assert "unsafe" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"


def test_pages_showing_archives_are_not_cached(app, client, as_role, runner):
    made = runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1]
    as_role("super_admin")
    with app.test_request_context():
        from app.operations.runs import start_run

        run = start_run("backup", Caller("user:super_admin@test.example", "198.51.100.10"), parts="database")
    for url in ["/admin/tools/backup/", f"/admin/tools/backup/runs/{run.id}",
                f"/admin/tools/backup/archives/{Path(made).name}", "/admin/tools/backup/audit"]:
        response = client.get(url)
        response.close()
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "no-store", url


def test_templates_hold_no_inline_script_or_style():
    """The CSP forbids them; one would silently stop working in the browser."""
    for template in Path(ROOT_DIR, "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert not re.search(r"\sstyle\s*=|<style", text), template
        assert "hx-on" not in text and "js:" not in text, template


def test_htmx_is_configured_without_eval(app, client):
    page = client.get("/login").data
    config = re.search(rb'<meta name="htmx-config" content=\'([^\']+)\'', page)
    import json

    settings = json.loads(config.group(1))
    assert settings["allowEval"] is False and settings["allowScriptTags"] is False and settings["selfRequestsOnly"]


def test_session_cookie_flags(app, client):
    page = client.get("/login")
    response = client.post("/login", data={"email": "super_admin@test.example", "password": "correct horse battery",
                                           "csrf_token": csrf_token_from(page)})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_production_cookies_are_secure():
    from config import ProductionConfig

    assert ProductionConfig.SESSION_COOKIE_SECURE is True and ProductionConfig.REMEMBER_COOKIE_SECURE is True


def test_production_refuses_to_start_without_its_keys(monkeypatch):
    from app import create_app

    for variable in ("SECRET_KEY", "BACKUP_SIGNING_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(Exception, match="SECRET_KEY|BACKUP_SIGNING_KEY"):
        create_app("production")


@pytest.mark.parametrize("name, args, kwargs, options", [
    ("os.system", ["touch {marker}"], {}, {}),
    ("jobs.context.os.system", ["touch {marker}"], {}, {}),  # passed the old "jobs." prefix check
    ("jobs.functions.os.system", ["touch {marker}"], {}, {}),
    ("jobs.worker.recover_after_crash", [], {}, {}),
    ("jobs.functions.backup_store", ["run-id"], {"extra": "touch {marker}"}, {}),
    ("jobs.functions.backup_store", ["run-id", "touch {marker}"], {}, {}),
    ("jobs.functions.backup_store", ["run-id"], {}, {"on_failure": "os.system", "on_success": "os.system"}),
])
def test_the_worker_runs_only_registered_functions_with_one_run_id(app, run_worker, tmp_path, name, args, kwargs,
                                                                   options):
    from rq import Callback

    from app.queue import get_queue

    marker = tmp_path / "pwned"
    with app.app_context():
        queue = get_queue(app)
        queue.enqueue(name, *[a.format(marker=marker) for a in args],
                      **{k: v.format(marker=marker) for k, v in kwargs.items()},
                      **{k: Callback(v) for k, v in options.items()})
    run_worker()
    with app.app_context():
        queue = get_queue(app)
        (job_id,) = queue.failed_job_registry.get_job_ids()
        assert "UnsafeJob: Refusing" in queue.fetch_job(job_id).latest_result().exc_string
    assert not marker.exists()


def test_the_registry_names_exactly_the_functions_the_web_side_enqueues():
    from app.queue import JOB_FUNCTIONS
    from jobs.worker import REGISTRY

    assert set(REGISTRY) == set(JOB_FUNCTIONS.values())
    for name, function in REGISTRY.items():
        assert f"{function.__module__}.{function.__qualname__}" == name


def test_failed_logins_are_audited_with_a_generic_message(app, client):
    page = client.get("/login")
    for email in ("nobody@test.example", "super_admin@test.example"):
        response = client.post("/login", data={"email": email, "password": "wrong", "csrf_token":
                                               csrf_token_from(page)})
        assert b"Invalid email or password." in response.data
    with app.app_context():
        failures = db.session.scalars(db.select(AuditEvent).where(AuditEvent.outcome == "failure")).all()
        assert len(failures) >= 2 and all(e.client_ip == "198.51.100.10" for e in failures)


def test_job_arguments_carry_ids_not_secrets(app, client, as_role):
    from redis import Redis

    from app.queue import get_queue

    as_role("super_admin")
    token = csrf_token_from(client.get("/admin/tools/backup/"))
    client.post("/admin/tools/backup/backup", data={"parts": "both", "csrf_token": token})
    with app.app_context():
        run = db.session.scalars(db.select(JobRun)).one()
        job = get_queue(app).fetch_job(run.id)
        assert job.func_name == "jobs.functions.backup_store" and job.args == [run.id] and not job.kwargs
    with Redis.from_url(app.config["REDIS_URL"]) as redis:
        stored = b"".join(redis.dump(k) or b"" for k in redis.keys("*"))
    for secret in (app.config["SECRET_KEY"], app.config["BACKUP_SIGNING_KEY"]):
        assert secret.encode() not in stored


def test_text_from_archives_and_errors_is_escaped_in_fragments(app, client, as_role):
    from app.operations.runs import finish_run, start_run

    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    as_role("super_admin")
    with app.test_request_context():
        failed = start_run("backup", Caller("user:super_admin@test.example", "198.51.100.10"), parts="both")
        checked = start_run("inspect", Caller("user:super_admin@test.example", "198.51.100.10"), options={"source": "upload", "name": "x.zip", "original_name": hostile})
        ids = failed.id, checked.id
        finish_run(db.session.get(JobRun, failed.id), "failed", error=f"Refused {hostile}")
        finish_run(db.session.get(JobRun, checked.id), "finished", result={"summary": {
            "name": hostile, "kind": "backup", "parts": "both", "store": hostile, "created_at": "2026-01-01 00:00:00",
            "created_by": hostile, "schema_revision": hostile, "app_version": "1", "source_engine": "sqlite",
            "label": hostile, "safety": False, "row_counts": {hostile: 1}, "file_count": 1, "file_bytes": 1,
            "archive_bytes": 1, "skipped": [hostile]}, "current": {"tables": {hostile: 2}, "files": 0, "losses": [hostile]}})
    for run_id in ids:
        page = client.get(f"/admin/tools/backup/runs/{run_id}", headers={"HX-Request": "true"})
        assert page.status_code in (200, 286)
        assert b"<script>alert" not in page.data and b"<img src=x" not in page.data
        assert b"&lt;script&gt;alert(2)&lt;/script&gt;" in page.data
