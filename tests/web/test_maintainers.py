"""The maintainer list: the platform page and the CLI, with lock-out refusal and audit entries."""
import pytest

from app.extensions import db
from app.models import AuditEvent, MaintainerNetwork
from tests.helpers import client_at, csrf_token_from


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
    result = runner.invoke(args=["maintainers", "add", "2001:db8::/32", "--label", "Ops v6", "--wide"])
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


def proxies(app, *items):
    app.config["TRUSTED_PROXIES"] = list(items)
    app.extensions.pop("trusted_proxies", None)


def test_trusted_proxy_without_forwarded_for_is_not_a_maintainer(app, as_operator):
    # A proxy whose own address lies inside a maintainer network: its own requests name no client.
    proxies(app, "198.51.100.1")
    proxy = client_at(app, "198.51.100.1")
    as_operator(proxy)
    assert proxy.get("/platform/maintainers").status_code == 403
    assert proxy.get("/platform/maintainers", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 403
    assert proxy.get("/platform/maintainers", headers={"X-Forwarded-For": "198.51.100.20"}).status_code == 200


def test_startup_check_names_proxy_and_network(app):
    from app.operations.maintainers import check_proxies_outside_maintainers

    proxies(app, "10.0.0.1", "198.51.100.0/28")
    with pytest.raises(RuntimeError) as refused:
        check_proxies_outside_maintainers(app)
    message = str(refused.value)
    assert "198.51.100.0/28" in message and "198.51.100.0/24" in message and "TRUSTED_PROXIES" in message
    assert "10.0.0.1" not in message
    proxies(app, "10.0.0.1", "::ffff:192.0.2.1")
    check_proxies_outside_maintainers(app)  # no overlap: nothing to say
    proxies(app)
    check_proxies_outside_maintainers(app)


def test_startup_check_tolerates_missing_tables(tmp_path, redis_url):
    from app import create_app
    from app.operations.maintainers import check_proxies_outside_maintainers
    from tests.helpers import app_overrides

    fresh = create_app("testing", app_overrides(tmp_path / "fresh", redis_url, TRUSTED_PROXIES=["10.0.0.1"]))
    try:
        check_proxies_outside_maintainers(fresh)  # no tables yet (before `flask db upgrade`)
    finally:
        with fresh.app_context():
            for engine in db.engines.values():
                engine.dispose()


def test_add_refuses_network_holding_a_trusted_proxy(app, client, as_operator, runner):
    proxies(app, "192.0.2.7")
    as_operator()
    response = post_form(client, "/platform/maintainers", {"cidr": "192.0.2.0/24", "label": "Branch"})
    assert response.status_code == 400
    assert b"trusted proxy 192.0.2.7" in response.data
    result = runner.invoke(args=["maintainers", "add", "192.0.2.7", "--label", "x"])
    assert result.exit_code == 1 and "trusted proxy 192.0.2.7" in result.output
    result = runner.invoke(args=["maintainers", "add", "192.0.0.0/8", "--label", "x", "--wide"])
    assert result.exit_code == 1 and "trusted proxy 192.0.2.7" in result.output
    assert cidrs(app) == ["198.51.100.0/24"]
    assert ("192.0.2.0/24", "failure") in audit_actions(app, "maintainers.add")
    assert ("192.0.2.7/32", "failure") in audit_actions(app, "maintainers.add")
    assert post_form(client, "/platform/maintainers", {"cidr": "192.0.3.0/24", "label": "Next door"}).status_code == 302


WHOLE_INTERNET = ["0.0.0.0/0", "::/0", "::ffff:0:0/96", "::ffff:0.0.0.0/96"]


@pytest.mark.parametrize("cidr", WHOLE_INTERNET)
def test_whole_internet_is_refused_on_the_page(app, client, as_operator, cidr):
    as_operator()
    for data in ({"cidr": cidr, "label": "all"}, {"cidr": cidr, "label": "all", "confirm_wide": cidr}):
        response = post_form(client, "/platform/maintainers", data)
        assert response.status_code == 400
        assert b"every address on the internet" in response.data
    assert cidrs(app) == ["198.51.100.0/24"]
    assert audit_actions(app, "maintainers.add")[-1][1] == "failure"


@pytest.mark.parametrize("cidr", WHOLE_INTERNET)
def test_whole_internet_is_refused_by_the_cli(app, runner, cidr):
    result = runner.invoke(args=["maintainers", "add", cidr, "--label", "all", "--wide"])
    assert result.exit_code == 1 and "every address on the internet" in result.output
    assert cidrs(app) == ["198.51.100.0/24"]
    assert audit_actions(app, "maintainers.add")[-1][1] == "failure"


def test_wide_network_needs_the_checkbox(app, client, as_operator):
    as_operator()
    response = post_form(client, "/platform/maintainers", {"cidr": "10.0.0.0/8", "label": "Corporate"})
    assert response.status_code == 409
    assert b"I understand this lets every address in 10.0.0.0/8 run backups and restores" in response.data
    assert b'name="confirm_wide"' in response.data and b'value="10.0.0.0/8"' in response.data
    assert b'value="Corporate"' in response.data  # the form keeps what was typed
    assert cidrs(app) == ["198.51.100.0/24"]
    assert audit_actions(app, "maintainers.add")[-1] == ("10.0.0.0/8", "denied")

    # Ticking the box for one network does not confirm another one.
    response = post_form(client, "/platform/maintainers", {"cidr": "11.0.0.0/8", "label": "x", "confirm_wide": "10.0.0.0/8"})
    assert response.status_code == 409 and "11.0.0.0/8" not in cidrs(app)
    response = post_form(client, "/platform/maintainers", {"cidr": "10.0.0.0/8", "label": "x", "confirm_wide": "y"})
    assert response.status_code == 409 and "10.0.0.0/8" not in cidrs(app)

    response = post_form(client, "/platform/maintainers",
                         {"cidr": "10.0.0.0/8", "label": "Corporate", "confirm_wide": "10.0.0.0/8"})
    assert response.status_code == 302
    assert "10.0.0.0/8" in cidrs(app)
    assert audit_actions(app, "maintainers.add")[-1] == ("10.0.0.0/8", "success")


def test_wide_ipv6_network_needs_the_checkbox(app, client, as_operator):
    as_operator()
    assert post_form(client, "/platform/maintainers", {"cidr": "2001:db8::/47", "label": "v6"}).status_code == 409
    assert post_form(client, "/platform/maintainers", {"cidr": "2001:db8::/48", "label": "v6"}).status_code == 302
    assert post_form(client, "/platform/maintainers", {"cidr": "192.0.0.0/16", "label": "v4"}).status_code == 302


def test_wide_limits_come_from_the_config(app, client, as_operator, runner):
    app.config["MAINTAINER_MIN_PREFIX_V4"] = 24
    app.config["MAINTAINER_MIN_PREFIX_V6"] = 64
    as_operator()
    assert post_form(client, "/platform/maintainers", {"cidr": "192.0.0.0/23", "label": "v4"}).status_code == 409
    assert runner.invoke(args=["maintainers", "add", "2001:db8::/63", "--label", "v6"]).exit_code == 1
    assert post_form(client, "/platform/maintainers", {"cidr": "192.0.2.0/24", "label": "v4"}).status_code == 302


def test_cli_wide_network_needs_the_flag(app, runner):
    result = runner.invoke(args=["maintainers", "add", "10.0.0.0/8", "--label", "Corporate"])
    assert result.exit_code == 1 and "--wide" in result.output
    assert cidrs(app) == ["198.51.100.0/24"]
    assert audit_actions(app, "maintainers.add")[-1] == ("10.0.0.0/8", "denied")
    result = runner.invoke(args=["maintainers", "add", "10.0.0.0/8", "--label", "Corporate", "--wide"])
    assert result.exit_code == 0, result.output
    assert "10.0.0.0/8" in cidrs(app)
