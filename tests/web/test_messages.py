"""What the page says: a time left only once it means something; errors about an upload name the user's
file, in words a store owner understands."""
import io

import pytest
from werkzeug.datastructures import FileStorage

from app.backup.views import time_left
from app.extensions import db
from app.models import JobRun


@pytest.mark.parametrize("elapsed, done, total, expected", [
    (1, 10, 100, None),        # one second in: too early whatever the count says
    (60, 1, 1000, None),       # a minute in but 0.1 % done: an estimate would read "about 17 h"
    (60, 0, 100, None),        # nothing counted yet
    (60, 100, 100, None),      # done: nothing left to estimate
    (10, 5, None, None),       # no total known
    (10, 10, 100, 90),         # 10 % in 10 s: 90 s left
    (30, 50, 100, 30),
])
def test_time_left_waits_for_enough_progress(elapsed, done, total, expected):
    assert time_left(elapsed, done, total) == expected


@pytest.mark.parametrize("content, reason", [
    (b"these are my notes, not a backup" * 10, "it is not a ZIP file, or it was cut off before its end"),
    (b"PK", "it is too short to be a backup"),
])
def test_a_refused_upload_names_the_users_file_in_plain_words(app, admin, run_worker, content, reason):
    upload = FileStorage(io.BytesIO(content), filename="my-shop-friday.zip")
    response = admin.post("/admin/tools/backup/restore/upload", data={"csrf_token": admin.csrf, "archive": upload},
                          headers={"HX-Request": "true"}, content_type="multipart/form-data")
    assert response.status_code == 200
    run_worker()
    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == "inspect")).one()
        stored = run.options["name"]
    assert run.state == "failed" and run.error.startswith("my-shop-friday.zip is not a readable backup archive")
    assert reason in run.error and stored not in run.error
