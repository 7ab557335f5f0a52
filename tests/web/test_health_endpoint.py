"""GET /health/backups: a monitoring system's view, behind a bearer token (never a session)."""
import uuid
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import AuditEvent, BackupSchedule, JobRun
from app.models.store import utcnow

URL = "/health/backups"
TOKEN = "health-token-0123456789"


def bearer(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def monitored(app):
    app.config.update(HEALTH_TOKEN=TOKEN, BACKUPS_DISK_WARN_PERCENT=100)
    return app


def denials(app):
    with app.app_context():
        return db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "access.token")).all()


def test_without_a_configured_token_there_is_no_endpoint(app, client):
    assert app.config["HEALTH_TOKEN"] is None
    assert client.get(URL).status_code == 404
    assert client.get(URL, headers=bearer("anything")).status_code == 404


@pytest.mark.parametrize("headers", [{}, bearer("wrong-token"), bearer(TOKEN[:-1]), {"Authorization": TOKEN},
                                     {"Authorization": f"Basic {TOKEN}"}, bearer("")])
def test_a_missing_or_wrong_token_is_refused_and_audited(monitored, client, headers):
    response = client.get(URL, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["Cache-Control"] == "no-store"
    assert set(response.get_json()) == {"error"}
    [event] = denials(monitored)
    assert event.outcome == "denied" and event.target == f"GET {URL}"
    assert TOKEN not in event.detail


def test_denials_are_rate_limited_in_the_audit_log(monitored, client):
    for _ in range(5):
        assert client.get(URL, headers=bearer("wrong")).status_code == 401
    assert len(denials(monitored)) == 1


def test_a_session_alone_gets_no_health(monitored, client, as_role):
    as_role("super_admin")
    response = client.get(URL)
    assert response.status_code == 401 and "level" not in response.get_json()


def test_the_right_token_gets_the_json_with_200_when_not_red(monitored, client):
    response = client.get(URL, headers=bearer())
    assert response.status_code == 200  # no schedule and no backup yet: amber
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    assert data["level"] == "amber" and data["headline"] == "No backup schedule"
    assert data["store"] == monitored.config["STORE_NAME"] and data["reasons"]
    assert {"last_backup", "disk", "schedules", "checked_at"} <= set(data)
    assert denials(monitored) == []


def test_red_is_a_503_with_the_json(monitored, client):
    with monitored.app_context():
        schedule = BackupSchedule(parts="both", frequency="daily", at_time="03:00", created_by="test",
                                  created_at=utcnow() - timedelta(days=3))
        db.session.add(schedule)
        db.session.flush()
        db.session.add(JobRun(id=uuid.uuid4().hex, kind="backup", parts="both", state="failed", started_by="scheduler",
                              schedule_id=schedule.id, ended_at=utcnow(), error="The disk is full."))
        db.session.commit()
    response = client.get(URL, headers=bearer())
    assert response.status_code == 503
    data = response.get_json()
    assert data["level"] == "red" and any("The disk is full." in reason for reason in data["reasons"])


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_only_get_is_allowed(monitored, client, method):
    assert client.open(URL, method=method, headers=bearer()).status_code == 405
