"""The backups folder's filesystem fills up during a backup: a clear error, the partial file is
removed, the store is untouched. The filesystem is a real 3 MB tmpfs mounted for the test."""
import os
from decimal import Decimal
from pathlib import Path

import pytest

from app.extensions import db
from app.models import JobRun, Product, ProductImage

from tests.faults.harness import state

pytestmark = pytest.mark.slow


def test_a_full_disk_during_a_backup(app, client, as_role, small_filesystem, tmp_path, run_worker):
    from tests.helpers import csrf_token_from

    backups = small_filesystem / "backups"
    app.config["BACKUPS_DIR"] = str(backups)
    app.config["BACKUP_FREE_MARGIN_BYTES"] = 0
    uploads = tmp_path / "uploads"
    # The backup of the store while it was small is what the space check estimates from: the store
    # then grows past the disk, and the backup finds out while writing.
    first = Path(app.test_cli_runner().invoke(args=["backup", "create", "--parts", "both"]).output.strip())
    with app.app_context():
        for n in range(8):  # 8 MB of incompressible images for a 3 MB filesystem
            product = Product(sku=f"P-{n}", name=f"Product {n}", price=Decimal("2.00"))
            product.images.append(ProductImage(path=f"products/{n}.bin", alt=""))
            db.session.add(product)
            (uploads / "products").mkdir(parents=True, exist_ok=True)
            (uploads / "products" / f"{n}.bin").write_bytes(os.urandom(1024 * 1024))
        db.session.commit()
        before = state(db.engine, uploads)

    as_role("super_admin")
    token = csrf_token_from(client.get("/admin/tools/backup/"))
    response = client.post("/admin/tools/backup/backup", data={"parts": "both", "csrf_token": token},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200
    run_worker()

    with app.app_context():
        run = db.session.scalars(db.select(JobRun).where(JobRun.kind == "backup")).one()
        assert "Not enough disk space" not in (run.error or "")
        assert run.state == "failed"
        assert "The backups folder is full (No space left on device)" in run.error
        assert "\n" not in run.error
        assert [p.name for p in backups.iterdir() if p.is_file()] == [first.name]  # no new archive, no .part
        assert state(db.engine, uploads) == before
        status = client.get(f"/admin/tools/backup/runs/{run.id}", headers={"Accept": "application/json"}).get_json()
        assert status["state"] == "failed" and "full" in status["message"] and status["download_url"] is None
