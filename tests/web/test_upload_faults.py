"""Uploads that go wrong: cut off by the client, a truncated archive, too large. Nothing is left
behind in the backups folder and nothing in the store changes."""
import io

import pytest
from werkzeug.test import encode_multipart

from app.extensions import db
from app.models import JobRun
from app.operations.incoming import store_size, upload_cap
from tests.helpers import csrf_token_from
from tests.faults.harness import state

URL = "/admin/tools/backup/restore/upload"


@pytest.fixture
def maintainer(client, as_role):
    as_role("super_admin")
    client.csrf = csrf_token_from(client.get("/admin/tools/backup/"))
    return client


def leftovers(app):
    from pathlib import Path

    incoming = Path(app.config["BACKUPS_DIR"]) / "incoming"
    return sorted(p.name for p in incoming.iterdir()) if incoming.exists() else []


def body(csrf, data):
    from werkzeug.datastructures import FileStorage

    boundary, payload = encode_multipart({"csrf_token": csrf,
                                          "archive": FileStorage(io.BytesIO(data), filename="store.zip")})
    return boundary, payload


def test_an_upload_cut_off_by_the_client_leaves_nothing(app, maintainer):
    boundary, payload = body(maintainer.csrf, b"z" * (3 * 1024 * 1024))
    cut = payload[: len(payload) // 2]  # the client goes away half-way: fewer bytes than Content-Length
    response = maintainer.post(URL, input_stream=io.BytesIO(cut), content_length=len(payload),
                               content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 400
    assert leftovers(app) == []
    with app.app_context():
        assert db.session.scalars(db.select(JobRun)).all() == []


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(app, maintainer):
    app.config["MAX_UPLOAD_BYTES"] = 2 * 1024 * 1024
    boundary, payload = body(maintainer.csrf, b"z" * (3 * 1024 * 1024))
    response = maintainer.post(URL, data=payload, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    assert b"Traceback" not in response.data
    assert leftovers(app) == []


def test_a_truncated_archive_is_refused_by_the_check_and_removed(app, maintainer, runner, run_worker, tmp_path):
    from pathlib import Path

    made = runner.invoke(args=["backup", "create", "--parts", "both"]).output.strip().splitlines()[-1]
    archive = Path(made).read_bytes()
    with app.app_context():
        before = state(db.engine, Path(app.config["UPLOADS_DIR"]))
    boundary, payload = body(maintainer.csrf, archive[: len(archive) * 2 // 3])
    response = maintainer.post(URL, data=payload, content_type=f"multipart/form-data; boundary={boundary}",
                               headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert len(leftovers(app)) == 1  # received, waiting for its check
    run_worker()
    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == "inspect")).one()
        assert run.state == "failed" and "truncated or corrupted" in run.error
        assert state(db.engine, Path(app.config["UPLOADS_DIR"])) == before
    assert leftovers(app) == []
    page = maintainer.get(f"/admin/tools/backup/runs/{run.id}")
    assert b'data-job-state="failed"' in page.data and b"truncated or corrupted" in page.data


def test_an_upload_larger_than_the_global_limit_is_received_on_the_upload_route(app, maintainer):
    """The small global limit (MAX_CONTENT_LENGTH) must not apply to the upload, also while CSRF reads the form."""
    assert app.config["MAX_CONTENT_LENGTH"] < 3 * 1024 * 1024 < app.config["MAX_UPLOAD_BYTES"]
    boundary, payload = body(maintainer.csrf, b"z" * (3 * 1024 * 1024))
    response = maintainer.post(URL, data=payload, content_type=f"multipart/form-data; boundary={boundary}",
                               headers={"HX-Request": "true"})
    assert response.status_code == 200 and b"data-job-state" in response.data
    assert len(leftovers(app)) == 1


def test_an_upload_far_above_the_stores_size_is_refused_unread(app, maintainer):
    app.config["UPLOAD_FLOOR_BYTES"] = 1024 * 1024
    with app.app_context():
        size = store_size()
        assert size > 0
        assert upload_cap() == max(1024 * 1024, 4 * size) < 3 * 1024 * 1024
    boundary, payload = body(maintainer.csrf, b"z" * (3 * 1024 * 1024))
    response = maintainer.post(URL, data=payload, content_type=f"multipart/form-data; boundary={boundary}",
                               headers={"HX-Request": "true"})
    assert response.status_code == 413 and b"a few times its own size" in response.data
    assert leftovers(app) == []

