"""Every protected endpoint refuses anonymous users, lower roles and outside networks."""
import pytest

from app.backup import MAINTAINER_EXEMPT
from app.platform import PUBLIC_ENDPOINTS
from tests.helpers import OUTSIDE_IP, ROLES

from werkzeug.routing import AnyConverter, IntegerConverter


def sample_value(converter):
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0]
    return 1 if isinstance(converter, IntegerConverter) else "sample"


def protected_routes(app, prefix):
    """(endpoint, method, url) for every route under an area, with sample URL values."""
    routes = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith(prefix + "."):
                continue
            values = {arg: sample_value(rule._converters[arg]) for arg in rule.arguments if arg in rule._converters}
            url = app.url_for(rule.endpoint, **values)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                routes.append((rule.endpoint, method, url))
    assert routes, f"no routes found under {prefix}"
    return routes


def call(client, method, url, **kwargs):
    return client.open(url, method=method, **kwargs)


@pytest.mark.parametrize("area", ["backup", "admin", "staging"])
def test_store_areas_send_anonymous_users_to_login(app, client, area):
    for endpoint, method, url in protected_routes(app, area):
        response = call(client, method, url)
        assert response.status_code == 302, (endpoint, method, response.status_code)
        assert response.headers["Location"].startswith("/login"), endpoint
        htmx = call(client, method, url, headers={"HX-Request": "true"})
        assert htmx.status_code == 401, endpoint
        assert htmx.headers["HX-Redirect"].startswith("/login"), endpoint


@pytest.mark.parametrize("role", [r for r in ROLES if r != "super_admin"])
@pytest.mark.parametrize("area", ["backup", "staging"])
def test_backup_area_refuses_lower_roles(app, client, as_role, role, area):
    as_role(role)
    for endpoint, method, url in protected_routes(app, area):
        response = call(client, method, url)
        assert response.status_code == 403, (role, endpoint, method, response.status_code)


@pytest.mark.parametrize("area", ["backup", "staging"])
def test_backup_area_refuses_platform_operators(app, client, as_operator, area):
    as_operator()
    for endpoint, method, url in protected_routes(app, area):
        assert call(client, method, url).status_code == 302, endpoint


@pytest.mark.parametrize("exempt", [True, False])
def test_maintainer_endpoints_refuse_super_admin_outside_network(app, outside_client, as_role, exempt):
    as_role("super_admin", outside_client)
    routes = [r for r in protected_routes(app, "backup") if (r[0] in MAINTAINER_EXEMPT) == exempt]
    assert routes, "the sweep found no routes of this kind"
    for endpoint, method, url in routes:
        response = call(outside_client, method, url)
        if exempt:
            assert response.status_code != 403, endpoint
        else:
            assert response.status_code == 403, (endpoint, method, response.status_code)
            assert OUTSIDE_IP.encode() in response.data


def test_the_staging_copy_refuses_a_super_admin_outside_the_maintainer_networks(app, outside_client, as_role):
    as_role("super_admin", outside_client)
    for endpoint, method, url in protected_routes(app, "staging"):
        response = call(outside_client, method, url)
        assert response.status_code == 403 and OUTSIDE_IP.encode() in response.data, (endpoint, method)


def test_platform_area_refuses_anonymous_and_store_users(app, client, as_role):
    routes = [r for r in protected_routes(app, "platform") if r[0] not in PUBLIC_ENDPOINTS]
    for endpoint, method, url in routes:
        response = call(client, method, url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/platform/login"), endpoint
    as_role("super_admin")
    for endpoint, method, url in routes:
        response = call(client, method, url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/platform/login"), endpoint


def test_platform_area_refuses_operator_outside_network(app, outside_client, as_operator):
    as_operator(outside_client)
    for endpoint, method, url in protected_routes(app, "platform"):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        response = call(outside_client, method, url)
        assert response.status_code == 403, (endpoint, method, response.status_code)


def test_forbidden_htmx_request_gets_an_alert_fragment(client, as_role):
    as_role("admin")
    response = client.get("/admin/tools/backup/", headers={"HX-Request": "true"})
    assert response.status_code == 403
    assert b'role="alert"' in response.data
    assert b"<html" not in response.data


def test_health_area_needs_its_token_never_a_session(app, client, as_role, as_operator):
    routes = protected_routes(app, "health")
    for endpoint, method, url in routes:  # no HEALTH_TOKEN configured: the area does not exist
        assert call(client, method, url).status_code == 404, endpoint
    app.config["HEALTH_TOKEN"] = "sweep-token"
    for endpoint, method, url in routes:
        assert call(client, method, url).status_code == 401, endpoint
    as_role("super_admin")
    for endpoint, method, url in routes:
        assert call(client, method, url).status_code == 401, endpoint
    as_operator()
    for endpoint, method, url in routes:
        assert call(client, method, url).status_code == 401, endpoint
        assert call(client, method, url, headers={"Authorization": "Bearer sweep-token"}).status_code in (200, 503)
