"""The maintainer list: the platform page and the CLI, with lock-out refusal and audit entries."""
from app.extensions import db
from app.models import AuditEvent, MaintainerNetwork
from tests.conftest import client_at, csrf_token_from


def cidrs(app):
    with app.app_context():
        return sorted(db.session.scalars(db.select(MaintainerNetwork.cidr)))


def audit_actions(app, action):
    with app.app_context():
        return [(e.target, e.outcome) for e in db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))]


def network_id(app, cidr):
    with app.app_context():
        return db.session.scalar(db.select(MaintainerNetwork.id).where(MaintainerNetwork.cidr == cidr))


def post_form(client, url, data):
    token = csrf_token_from(client.get("/platform/maintainers"))
    return client.post(url, data={**data, "csrf_token": token})


def test_page_shows_networks_and_caller_ip(client, as_operator):
    as_operator()
    page = client.get("/platform/maintainers")
    assert page.status_code == 200
    assert b"198.51.100.0/24" in page.data and b"Office" in page.data
    assert b"198.51.100.10" in page.data and b'data-inside="yes"' in page.data


def test_add_network(app, client, as_operator):
    as_operator()
    response = post_form(client, "/platform/maintainers", {"cidr": "2001:db8::/48", "label": "VPN v6"})
    assert response.status_code == 302
    assert "2001:db8::/48" in cidrs(app)
    assert ("2001:db8::/48", "success") in audit_actions(app, "maintainers.add")
    with app.app_context():
        entry = db.session.scalar(db.select(MaintainerNetwork).where(MaintainerNetwork.cidr == "2001:db8::/48"))
        assert entry.added_by == "operator@test.example" and entry.label == "VPN v6"


def test_add_invalid_network_changes_nothing(app, client, as_operator):
    as_operator()
    before = cidrs(app)
    response = post_form(client, "/platform/maintainers", {"cidr": "10.0.0.1/24", "label": "Typo"})
    assert response.status_code == 400
    assert b"host bits set" in response.data
    response = post_form(client, "/platform/maintainers", {"cidr": "not a network", "label": "x"})
    assert response.status_code == 400 and b"not an IP network" in response.data
    response = post_form(client, "/platform/maintainers", {"cidr": "10.0.0.0/8", "label": ""})
    assert response.status_code == 400
    assert cidrs(app) == before
    assert ("10.0.0.1/24", "failure") in audit_actions(app, "maintainers.add")


def test_remove_refuses_lockout_unless_confirmed(app, client, as_operator):
    as_operator()
    office = network_id(app, "198.51.100.0/24")
    response = post_form(client, f"/platform/maintainers/{office}/remove", {})
    assert response.status_code == 409
    assert b"would lock you out" in response.data
    assert "198.51.100.0/24" in cidrs(app)
    assert ("198.51.100.0/24", "denied") in audit_actions(app, "maintainers.remove")

    response = post_form(client, f"/platform/maintainers/{office}/remove", {"confirm_lockout": "y"})
    assert response.status_code == 302
    assert cidrs(app) == []
    assert ("198.51.100.0/24", "success") in audit_actions(app, "maintainers.remove")
    # Locked out: with the list empty even the operator's next request is refused.
    assert client.get("/platform/maintainers").status_code == 403


def test_remove_other_network_needs_no_confirmation(app, client, as_operator):
    as_operator()
    post_form(client, "/platform/maintainers", {"cidr": "192.0.2.0/24", "label": "Branch"})
    response = post_form(client, f"/platform/maintainers/{network_id(app, '192.0.2.0/24')}/remove", {})
    assert response.status_code == 302
    assert cidrs(app) == ["198.51.100.0/24"]


def test_change_without_csrf_token_is_refused(app, client, as_operator):
    as_operator()
    response = client.post("/platform/maintainers", data={"cidr": "192.0.2.0/24", "label": "x"})
    assert response.status_code == 400
    assert "192.0.2.0/24" not in cidrs(app)


def test_operator_outside_network_cannot_widen_list(app, as_operator):
    outside = client_at(app, "192.0.2.50")
    as_operator(outside)
    response = outside.post("/platform/maintainers", data={"cidr": "192.0.2.0/24", "label": "me"})
    assert response.status_code == 403
    assert "192.0.2.0/24" not in cidrs(app)


def test_cli_add_list_remove(app, runner):
    result = runner.invoke(args=["maintainers", "add", "2001:db8::/32", "--label", "Ops v6"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["maintainers", "list"])
    assert "2001:db8::/32\tOps v6" in result.output
    result = runner.invoke(args=["maintainers", "remove", "2001:db8::/32"])
    assert result.exit_code == 0
    assert cidrs(app) == ["198.51.100.0/24"]
    assert audit_actions(app, "maintainers.add")[-1] == ("2001:db8::/32", "success")
    assert audit_actions(app, "maintainers.remove")[-1] == ("2001:db8::/32", "success")


def test_cli_refuses_bad_input(app, runner):
    result = runner.invoke(args=["maintainers", "add", "300.0.0.0/8", "--label", "x"])
    assert result.exit_code == 1 and "not an IP network" in result.output
    result = runner.invoke(args=["maintainers", "remove", "192.0.2.0/24"])
    assert result.exit_code == 1 and "not in the maintainer list" in result.output
    assert cidrs(app) == ["198.51.100.0/24"]


def test_cli_accounts(app, runner):
    result = runner.invoke(args=["users", "create", "new@test.example", "--role", "manager", "--password", "pw12345678"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "create", "new@test.example", "--role", "manager", "--password", "x"])
    assert result.exit_code == 1
    result = runner.invoke(args=["platform", "create-operator", "ops@test.example", "--password", "pw12345678"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["users", "create", "x@test.example", "--role", "god", "--password", "x"]).exit_code == 2
