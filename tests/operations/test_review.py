"""The review of who could do what after a restore, from an archive's accounts and today's."""
import pytest

from app.extensions import db
from app.models import User

from app.operations.review import privilege_changes
from tests.helpers import FAST_HASH


def account(email, role, active=True, password_hash=FAST_HASH):
    return {"email": email, "role": role, "active": active, "password_hash": password_hash}


@pytest.mark.parametrize("archived, restorer, expected", [
    ([account("super_admin@test.example", "super_admin")], "super_admin@test.example", True),
    ([account("super_admin@test.example", "manager")], "super_admin@test.example", False),
    ([account("super_admin@test.example", "super_admin", active=False)], "super_admin@test.example", False),
    ([], "super_admin@test.example", False),
    ([account("super_admin@test.example", "super_admin")], None, None),
])
def test_whether_the_restorer_stays_a_super_admin(app, archived, restorer, expected):
    with app.app_context():
        assert privilege_changes(archived, restorer)["restorer_stays_super_admin"] is expected


def test_a_deactivated_account_coming_back_active_is_a_rise_and_an_inactive_one_is_not(app):
    with app.app_context():
        db.session.scalars(db.select(User).where(User.email == "admin@test.example")).one().active = False
        db.session.commit()
        rising = privilege_changes([account("admin@test.example", "admin")])
        assert rising["rises"] == ["admin@test.example would become admin (today: admin, deactivated)"]
        quiet = privilege_changes([account("admin@test.example", "admin", active=False),
                                   account("gone@test.example", "super_admin", active=False)])
        assert quiet["rises"] == [] and quiet["returns"] == ["gone@test.example (super_admin, deactivated)"]
