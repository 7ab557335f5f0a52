"""The wizard page: three cards whose state follows the role and the network."""
import re

import pytest

from tests.helpers import OUTSIDE_IP


def card(html, name):
    match = re.search(rb'<section class="card[^"]*" data-card="' + name.encode() + rb'" aria-disabled="(\w+)"', html)
    assert match, f"no {name} card"
    return match.group(1).decode()


def test_super_admin_in_maintainer_network_sees_all_cards_enabled(client, as_role):
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    assert page.status_code == 200
    assert [card(page.data, c) for c in ("export", "backup", "restore")] == ["false", "false", "false"]
    assert b'data-network="outside"' not in page.data


def test_super_admin_outside_network_sees_backup_and_restore_disabled(outside_client, as_role):
    as_role("super_admin", outside_client)
    page = outside_client.get("/admin/tools/backup/")
    assert page.status_code == 200
    assert [card(page.data, c) for c in ("export", "backup", "restore")] == ["false", "true", "true"]
    assert f"Ask the platform team to add <code>{OUTSIDE_IP}</code>".encode() in page.data


def test_sidebar_entry_only_for_super_admin(client, as_role):
    as_role("super_admin")
    assert b'data-nav="backup"' in client.get("/admin/").data


@pytest.mark.parametrize("role", ["vendor", "manager", "admin"])
def test_sidebar_entry_hidden_and_page_forbidden_for_lower_roles(client, as_role, role):
    as_role(role)
    dashboard = client.get("/admin/")
    assert dashboard.status_code == 200
    assert b"Backup Data" not in dashboard.data
    assert client.get("/admin/tools/backup/").status_code == 403


def test_empty_maintainer_list_disables_cards_for_everyone(app, client, as_role):
    from app.extensions import db
    from app.models import MaintainerNetwork

    with app.app_context():
        db.session.execute(db.delete(MaintainerNetwork))
        db.session.commit()
    as_role("super_admin")
    page = client.get("/admin/tools/backup/")
    assert card(page.data, "backup") == "true" and card(page.data, "restore") == "true"


def test_trusted_proxy_header_is_believed_only_from_the_proxy(app, as_role):
    from tests.helpers import client_at

    app.config["TRUSTED_PROXIES"] = ["10.0.0.1"]
    app.extensions.pop("trusted_proxies", None)
    proxied = client_at(app, "10.0.0.1")
    as_role("super_admin", proxied)
    inside = proxied.get("/admin/tools/backup/", headers={"X-Forwarded-For": "198.51.100.20"})
    assert card(inside.data, "backup") == "false"
    outside = proxied.get("/admin/tools/backup/", headers={"X-Forwarded-For": "192.0.2.20"})
    assert card(outside.data, "backup") == "true"

    direct = client_at(app, "192.0.2.20")
    as_role("super_admin", direct)
    forged = direct.get("/admin/tools/backup/", headers={"X-Forwarded-For": "198.51.100.20"})
    assert card(forged.data, "backup") == "true"
