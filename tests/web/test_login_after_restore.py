"""The login page says why everyone was logged out: a restore that finished a moment ago, or one still running
(the sessions end when its rows commit, a moment before the run itself finishes)."""
import uuid
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import JobRun
from app.models.store import utcnow


def add_restore(app, state, ended_minutes_ago=None):
    with app.app_context():
        ended = utcnow() - timedelta(minutes=ended_minutes_ago) if ended_minutes_ago is not None else None
        db.session.add(JobRun(id=uuid.uuid4().hex, kind="restore", parts="both", state=state,
                              started_by="user:super@test", ended_at=ended))
        db.session.commit()


@pytest.mark.parametrize("state, ended, says", [
    ("started", None, "is being restored from a backup"),
    ("finished", 2, "was restored from a backup at"),
    ("finished", 60, None),  # long ago: no reason to give
    ("failed", 1, None),     # a failed restore changed nothing and ended no session
    (None, None, None),
])
def test_the_login_page_says_why(app, client, state, ended, says):
    if state:
        add_restore(app, state, ended)
    page = client.get("/login").get_data(as_text=True)
    if says:
        assert says in page and "data-restored" in page
    else:
        assert "data-restored" not in page
