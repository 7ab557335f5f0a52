"""Undo a restore in one click: the finished card offers the safety backup taken just before, through
the same check, review and confirmation as any restore, without uploading anything."""
import re
from decimal import Decimal

from app.extensions import db
from app.models import Product
from tests.helpers import csrf_token_from
from tests.security.test_second_round import WIZARD, latest, post


def products(app):
    with app.app_context():
        return sorted(db.session.scalars(db.select(Product.sku)))


def confirm(app, admin, run_worker):
    inspection = latest(app, "inspect")
    assert inspection.state == "finished", inspection.error
    done = post(admin, f"{WIZARD}/restore/{inspection.id}/confirm",
                {"parts": "database", "store_name": "demo-store", "safety": "y", "accounts": "archive",
                 "archive_sha256": inspection.result["sha256"]})
    assert done.status_code == 200, done.data
    run_worker()
    return latest(app, "restore")


def test_the_finished_restore_offers_to_undo_it_with_its_safety_backup(app, client, as_role, runner, run_worker):
    with app.app_context():
        db.session.add(Product(sku="OLD", name="Old product", price=Decimal("1.00")))
        db.session.commit()
    backup = runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1]
    with app.app_context():
        db.session.add(Product(sku="NEW", name="Added after the backup", price=Decimal("2.00")))
        db.session.commit()

    as_role("super_admin")
    client.csrf = csrf_token_from(client.get(f"{WIZARD}/"))
    post(client, f"{WIZARD}/restore/kept", {"name": backup.rsplit("/", 1)[-1]})
    run_worker()
    restore = confirm(app, client, run_worker)
    assert restore.state == "finished" and products(app) == ["OLD"]  # NEW was lost by the restore

    as_role("super_admin")  # the restore ended every session
    client.csrf = csrf_token_from(client.get(f"{WIZARD}/"))
    card = client.get(f"{WIZARD}/runs/{restore.id}", headers={"HX-Request": "true"}).data
    safety = restore.result["safety_backup"]
    undo = re.search(rb'<form[^>]*data-form="undo".*?</form>', card, re.S)
    assert undo and f'name="name" value="{safety}"'.encode() in undo.group(0)

    post(client, f"{WIZARD}/restore/kept", {"name": safety})  # the undo button's request
    run_worker()
    undone = confirm(app, client, run_worker)
    assert undone.state == "finished" and products(app) == ["NEW", "OLD"]
