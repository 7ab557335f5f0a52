"""Login and logout for store users and platform operators."""
import pytest

from app.extensions import db
from app.models import AuditEvent
from tests.helpers import csrf_token_from, login


def test_login_and_logout(client):
    response = login(client, "super_admin@test.example")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    token = csrf_token_from(client.get("/admin/"))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_logout_makes_an_old_cookie_worthless(app, client):
    login(client, "super_admin@test.example")
    stolen = client.get_cookie("session").value
    token = csrf_token_from(client.get("/admin/"))
    client.post("/logout", data={"csrf_token": token})
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/admin/").status_code == 302


def test_same_message_for_unknown_email_and_wrong_password(app, client):
    unknown = login(client, "nobody@test.example")
    wrong = login(client, "super_admin@test.example", password="wrong")
    assert unknown.status_code == wrong.status_code == 400
    assert b"Invalid email or password." in unknown.data and b"Invalid email or password." in wrong.data
    with app.app_context():
        outcomes = db.session.scalars(db.select(AuditEvent.outcome).where(AuditEvent.action == "login")).all()
    assert outcomes == ["failure", "failure"]


def test_login_needs_csrf_token(client):
    response = client.post("/login", data={"email": "super_admin@test.example", "password": "correct horse battery"})
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_login_session_is_renewed(client):
    client.get("/login")
    before = client.get_cookie("session").value
    login(client, "super_admin@test.example")
    assert client.get_cookie("session").value != before


def test_next_parameter_only_goes_local(client):
    page = client.get("/login?next=//evil.example/")
    token = csrf_token_from(page)
    response = client.post("/login?next=//evil.example/", data={
        "email": "super_admin@test.example", "password": "correct horse battery", "csrf_token": token})
    assert response.headers["Location"] == "/admin/"


NEXT_WITH_CONTROL_CHARACTERS = [
    "/admin%0d%0aSet-Cookie:x",
    "/admin%0aSet-Cookie:x",
    "/admin%0d",
    "/%09/evil.example/",          # browsers drop tabs and line breaks: this would be //evil.example/
    "/%0a/evil.example/",
    "/admin%00",
    "/admin%7f",
    "/admin%c2%85",                # NEL, a C1 control
    "/admin%e2%80%a8x",            # LINE SEPARATOR
]


@pytest.mark.parametrize("path, email, home", [
    ("/login", "super_admin@test.example", "/admin/"),
    ("/platform/login", "operator@test.example", "/platform/maintainers"),
])
@pytest.mark.parametrize("target", NEXT_WITH_CONTROL_CHARACTERS)
def test_next_with_control_characters_is_dropped(client, path, email, home, target):
    token = csrf_token_from(client.get(path))
    response = client.post(f"{path}?next={target}", data={
        "email": email, "password": "correct horse battery", "csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == home
    assert "Set-Cookie" not in response.headers or "x" not in response.headers.getlist("Set-Cookie")


@pytest.mark.parametrize("path, email", [
    ("/login", "super_admin@test.example"),
    ("/platform/login", "operator@test.example"),
])
@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example/", "https://evil.example/", "evil.example",
                                    "javascript:alert(1)", "\t//evil.example/"])
def test_next_refuses_off_site_targets_on_both_logins(client, path, email, target):
    from urllib.parse import quote

    token = csrf_token_from(client.get(path))
    response = client.post(f"{path}?next={quote(target, safe='')}", data={
        "email": email, "password": "correct horse battery", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].startswith("/")
    assert "evil" not in response.headers["Location"] and not response.headers["Location"].startswith("//")


@pytest.mark.parametrize("path, email, target", [
    ("/login", "super_admin@test.example", "/admin/tools/backup/?tab=restore"),
    ("/platform/login", "operator@test.example", "/platform/audit"),
])
def test_next_keeps_local_targets(client, path, email, target):
    from urllib.parse import quote

    token = csrf_token_from(client.get(path))
    response = client.post(f"{path}?next={quote(target, safe='')}", data={
        "email": email, "password": "correct horse battery", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == target


def test_operator_login_is_separate(client):
    assert login(client, "operator@test.example").status_code == 400  # not a store user
    assert login(client, "super_admin@test.example", path="/platform/login").status_code == 400
    assert login(client, "operator@test.example", path="/platform/login").status_code == 302
    assert client.get("/platform/maintainers").status_code == 200
    assert client.get("/admin/").status_code == 302  # an operator is not a store user


def test_failed_logins_are_throttled_per_account(app, client, redis_url):
    from tests.helpers import client_at

    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "3 per 15 minutes"
    for _ in range(3):
        assert login(client, "admin@test.example", password="wrong").status_code == 400
    throttled = login(client, "admin@test.example", password="wrong")
    assert throttled.status_code == 429 and b"Too many failed login attempts" in throttled.data
    # Even the right password is refused for this account now, from another address too.
    elsewhere = client_at(app, "192.0.2.99")
    assert login(elsewhere, "admin@test.example").status_code == 429
    # Other accounts are not affected.
    assert login(elsewhere, "manager@test.example").status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.action == "login.throttled")) >= 2


def test_failed_logins_are_throttled_per_address(app, client):
    app.config["LOGIN_LIMIT_PER_IP"] = "4 per 5 minutes"
    for n in range(4):
        assert login(client, f"nobody{n}@test.example", password="wrong").status_code == 400
    assert login(client, "super_admin@test.example").status_code == 429


def test_successful_logins_are_not_counted(app, client):
    app.config["LOGIN_LIMIT_PER_ACCOUNT"] = "2 per 15 minutes"
    for _ in range(4):
        assert login(client, "super_admin@test.example").status_code == 302


def test_role_change_and_deactivation_end_sessions(app, client, as_role):
    from app.models import User

    as_role("super_admin")
    assert client.get("/admin/tools/backup/").status_code == 200
    with app.app_context():
        user = db.session.scalars(db.select(User).where(User.email == "super_admin@test.example")).one()
        user.role = "admin"
        db.session.commit()
    assert client.get("/admin/tools/backup/").status_code == 302  # logged out, not merely forbidden

    as_role("manager")
    with app.app_context():
        user = db.session.scalars(db.select(User).where(User.email == "manager@test.example")).one()
        user.active = False
        db.session.commit()
    assert client.get("/admin/").status_code == 302
