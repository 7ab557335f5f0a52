"""Routes that serve both exports and backups check the object on every request, not only at its start."""
import pytest

from app.operations.runs import start_run
from app.operations import Caller
from app.extensions import db
from app.models import JobRun
from tests.helpers import csrf_token_from


@pytest.fixture
def archives(app, runner):
    """One export and one backup on disk, made through the CLI."""
    export = runner.invoke(args=["backup", "export"]).output.strip().splitlines()[-1]
    backup = runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1]
    return {"export": export.rsplit("/", 1)[-1], "backup": backup.rsplit("/", 1)[-1]}


def make_run(app, kind):
    with app.test_request_context():
        return start_run(kind, Caller("user:super_admin@test.example", "198.51.100.10"), parts="database").id


def test_outside_network_may_poll_exports_but_not_backups(app, outside_client, as_role):
    export_run, backup_run = make_run(app, "export"), make_run(app, "backup")
    as_role("super_admin", outside_client)
    assert outside_client.get(f"/admin/tools/backup/runs/{export_run}").status_code == 200
    assert outside_client.get(f"/admin/tools/backup/runs/{backup_run}").status_code == 403
    json = outside_client.get(f"/admin/tools/backup/runs/{backup_run}", headers={"Accept": "application/json"})
    assert json.status_code == 403


def test_outside_network_may_download_exports_but_not_backups(app, archives, outside_client, as_role):
    as_role("super_admin", outside_client)
    with outside_client.get(f"/admin/tools/backup/archives/{archives['export']}") as response:
        assert response.status_code == 200
    with outside_client.get(f"/admin/tools/backup/archives/{archives['backup']}") as response:
        assert response.status_code == 403
        assert b"PK" not in response.data[:2]


def test_outside_network_cannot_delete_or_restore_a_backup(app, archives, outside_client, as_role, tmp_path):
    as_role("super_admin", outside_client)
    token = csrf_token_from(outside_client.get("/admin/tools/backup/"))
    response = outside_client.post(f"/admin/tools/backup/archives/{archives['backup']}/delete",
                                   data={"csrf_token": token})
    assert response.status_code == 403
    assert (tmp_path / "backups" / archives["backup"]).exists()
    response = outside_client.post("/admin/tools/backup/restore/kept",
                                   data={"csrf_token": token, "name": archives["backup"]})
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(JobRun)) == 0


def test_access_is_checked_again_after_the_start(app, client, as_role):
    """A run started from inside the network is not pollable once the network is removed."""
    from app.models import MaintainerNetwork

    backup_run = make_run(app, "backup")
    as_role("super_admin")
    assert client.get(f"/admin/tools/backup/runs/{backup_run}").status_code == 200
    with app.app_context():
        db.session.execute(db.delete(MaintainerNetwork))
        db.session.commit()
    assert client.get(f"/admin/tools/backup/runs/{backup_run}").status_code == 403


@pytest.mark.parametrize("role", ["vendor", "manager", "admin"])
def test_lower_roles_cannot_download_even_exports(app, archives, client, as_role, role):
    as_role(role)
    with client.get(f"/admin/tools/backup/archives/{archives['export']}") as response:
        assert response.status_code == 403


def test_download_names_are_not_paths(app, archives, client, as_role):
    as_role("super_admin")
    for name in ("..%2Fplatform.db", "%2Fetc%2Fpasswd", "x.zip", archives["export"] + ".part"):
        with client.get(f"/admin/tools/backup/archives/{name}") as response:
            assert response.status_code == 404, name


def multipart(fields):
    """A multipart body built up front, so a refused request leaves no half-read stream behind."""
    from werkzeug.test import encode_multipart

    boundary, body = encode_multipart(fields)
    return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}"}


def test_uploads_need_the_gate_before_the_body_is_read(app, outside_client, client, as_role, tmp_path):
    """A refused client's upload is answered before its body is parsed: nothing is spooled anywhere."""
    import io

    from werkzeug.datastructures import FileStorage

    def big_file():
        return FileStorage(io.BytesIO(b"x" * (5 * 1024 * 1024)), filename="big.zip")

    anonymous = client.post("/admin/tools/backup/restore/upload", **multipart({"archive": big_file()}))
    assert anonymous.status_code == 302
    as_role("super_admin", outside_client)
    token = csrf_token_from(outside_client.get("/admin/tools/backup/"))
    outside = outside_client.post("/admin/tools/backup/restore/upload",
                                  **multipart({"archive": big_file(), "csrf_token": token}))
    assert outside.status_code == 403
    incoming = tmp_path / "backups" / "incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


def test_request_size_stays_small_outside_the_upload_route(app, client, as_role):
    as_role("super_admin")
    token = csrf_token_from(client.get("/admin/tools/backup/"))
    body = f"csrf_token={token}&parts=".encode() + b"x" * (2 * 1024 * 1024)
    response = client.post("/admin/tools/backup/backup", data=body,
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
