"""The audit pages: super-admins see their store's operations; operators see everything."""
from app import audit


def seed_events(app):
    with app.app_context():
        audit.record("backup.start", target="both", actor="user:super_admin@test.example", client_ip="198.51.100.10")
        audit.record("archive.download", target="x.zip", actor="user:super_admin@test.example", client_ip="1.2.3.4")
        audit.record("maintainers.add", target="192.0.2.0/24", actor="operator:op@test.example", client_ip="1.2.3.4")
        audit.record("login", target="someone@test.example", outcome="failure", actor="user:someone@test.example",
                     client_ip="203.0.113.9")
        audit.record("export.finish", target="<script>alert(1)</script>", actor="cli", client_ip=None)


def test_super_admin_sees_store_operations_only(app, client, as_role):
    seed_events(app)
    as_role("super_admin")
    page = client.get("/admin/tools/backup/audit")
    assert page.status_code == 200
    assert b'data-action="backup.start"' in page.data and b'data-action="archive.download"' in page.data
    assert b"maintainers.add" not in page.data and b'data-action="login"' not in page.data
    assert b"<script>alert(1)</script>" not in page.data and b"&lt;script&gt;" in page.data


def test_operator_sees_everything(app, client, as_operator):
    seed_events(app)
    as_operator()
    page = client.get("/platform/audit")
    assert page.status_code == 200
    for action in (b"backup.start", b"maintainers.add", b'data-action="login"', b"platform.login"):
        assert action in page.data


def test_lower_roles_cannot_read_the_log(client, as_role):
    as_role("admin")
    assert client.get("/admin/tools/backup/audit").status_code == 403
