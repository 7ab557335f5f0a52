"""The platform page for off-site destinations: operators only, from a maintainer network; keys are
write-only (never shown back, never in the audit log); each change audited; "Check" asks the real bucket."""
import pytest

from app.extensions import db
from app.models import AuditEvent, Destination
from tests.helpers import OUTSIDE_IP, client_at, csrf_token_from, login

PAGE = "/platform/destinations"
SECRET = "s3cr3t-never-shown-0123456789"


@pytest.fixture
def operator(client, as_operator):
    as_operator()
    client.csrf = csrf_token_from(client.get(PAGE))
    return client


def form(**fields):
    return {"name": "offsite", "endpoint_url": "http://127.0.0.1:1", "bucket": "store-backups", "prefix": "shop",
            "region": "us-east-1", "access_key_id": "AKIDEXAMPLE", "secret_access_key": SECRET,
            "object_lock_days": "0", "checksums": "y", **fields}


def add(client, **fields):
    return client.post(PAGE, data={**form(**fields), "csrf_token": client.csrf})


def test_an_operator_adds_a_destination_and_its_secret_is_never_shown(app, operator):
    response = add(operator)
    assert response.status_code == 302
    page = operator.get(PAGE)
    assert b'data-destination="offsite"' in page.data and b"store-backups" in page.data
    assert SECRET.encode() not in page.data and b"AKIDEXAMPLE" not in page.data
    with app.app_context():
        row = db.session.scalars(db.select(Destination)).one()
        assert row.secret_access_key == SECRET
        events = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "platform.destination.add")).all()
        assert len(events) == 1 and SECRET not in events[0].detail and "AKIDEXAMPLE" not in events[0].detail


def test_a_refused_destination_keeps_nothing_and_does_not_echo_the_secret(app, operator):
    response = add(operator, bucket="Not A Bucket!")
    assert response.status_code == 400 and b"is not an S3 bucket name" in response.data
    assert SECRET.encode() not in response.data  # the password field comes back empty
    with app.app_context():
        assert db.session.scalars(db.select(Destination)).all() == []


def test_check_asks_the_real_bucket(app, operator, s3_server):
    bucket = s3_server.new_bucket()
    add(operator, name="good", endpoint_url=s3_server.endpoint, bucket=bucket, access_key_id=s3_server.access_key,
        secret_access_key=s3_server.secret_key)
    add(operator, name="wrong-key", endpoint_url=s3_server.endpoint, bucket=bucket,
        access_key_id=s3_server.access_key, secret_access_key="not-the-key")
    with app.app_context():
        ids = {d.name: d.id for d in db.session.scalars(db.select(Destination))}
    good = operator.post(f"{PAGE}/{ids['good']}/check", data={"csrf_token": operator.csrf}, follow_redirects=True)
    assert b"good answers" in good.data
    wrong = operator.post(f"{PAGE}/{ids['wrong-key']}/check", data={"csrf_token": operator.csrf},
                          follow_redirects=True)
    assert b"wrong-key answers" not in wrong.data and b"alert-error" in wrong.data


def test_turn_off_and_remove_are_audited(app, operator):
    add(operator)
    with app.app_context():
        destination_id = db.session.scalars(db.select(Destination.id)).one()
    operator.post(f"{PAGE}/{destination_id}/disable", data={"csrf_token": operator.csrf})
    with app.app_context():
        assert db.session.get(Destination, destination_id).enabled is False
    operator.post(f"{PAGE}/{destination_id}/remove", data={"csrf_token": operator.csrf})
    with app.app_context():
        assert db.session.get(Destination, destination_id) is None
        actions = db.session.scalars(db.select(AuditEvent.action).where(AuditEvent.action.like("platform.destination.%"))).all()
        assert sorted(actions) == ["platform.destination.add", "platform.destination.disable",
                                   "platform.destination.remove"]


def test_store_super_admins_and_outside_operators_cannot_touch_destinations(app, client, as_role):
    as_role("super_admin")  # a stolen store password: no way to point backups at another bucket
    assert client.get(PAGE).status_code in (302, 401, 403)
    assert client.post(PAGE, data=form()).status_code in (302, 400, 401, 403)
    outside = client_at(app, OUTSIDE_IP)
    login(outside, "operator@test.example", path="/platform/login")
    assert outside.get(PAGE).status_code == 403
    with app.app_context():
        assert db.session.scalars(db.select(Destination)).all() == []
