"""flask backup ...: the archive path on the last line; every failure one line on stderr, exit non-zero."""
import shutil
from pathlib import Path

import pytest

from app.extensions import db
from app.operations import Caller
from app.maintenance import in_maintenance
from app.models import AuditEvent, Product, StoreStatus
from app.operations.runs import RunRefused, holding, new_holder, start_run, store_lock
from app.schema import code_revision
from tests.operations.test_trials import BEFORE_SLUGS


def last_line(result):
    return result.output.strip().splitlines()[-1]


def test_export_create_list_inspect_delete(app, runner):
    export = Path(last_line(runner.invoke(args=["backup", "export"])))
    backup = Path(last_line(runner.invoke(args=["backup", "create", "--parts", "both"])))
    assert export.is_file() and "-export-database-" in export.name
    assert backup.is_file() and "-backup-both-" in backup.name
    listing = runner.invoke(args=["backup", "list"])
    assert listing.exit_code == 0 and export.name in listing.output and backup.name in listing.output
    inspected = runner.invoke(args=["backup", "inspect", str(backup)])
    assert inspected.exit_code == 0 and "a valid backup" in inspected.output and "users: 4 rows" in inspected.output
    deleted = runner.invoke(args=["backup", "delete", export.name])
    assert deleted.exit_code == 0 and not export.exists()


def test_restore_needs_yes_and_ends_store_sessions(app, runner):
    backup = last_line(runner.invoke(args=["backup", "create", "--parts", "database"]))
    with app.app_context():
        db.session.execute(db.delete(Product))
        db.session.add(Product(sku="GONE", name="Added after the backup", price=1))
        db.session.commit()
        epoch = StoreStatus.get().session_epoch
    refused = runner.invoke(args=["backup", "restore", backup, "--parts", "database"])
    assert refused.exit_code == 2 and "--yes" in refused.output
    with app.app_context():
        assert db.session.scalar(db.select(Product.sku)) == "GONE"
    done = runner.invoke(args=["backup", "restore", backup, "--parts", "database", "--yes"])
    assert done.exit_code == 0, done.output
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Product).where(Product.sku == "GONE")) == 0
        assert StoreStatus.get().session_epoch == epoch + 1
        assert db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "restore.finish")).one().actor == "cli"


@pytest.mark.parametrize("case, message", [
    ("restore-export", "export, not a backup"),
    ("inspect-garbage", "not a readable backup archive"),
    ("inspect-missing", "does not exist"),
    ("delete-traversal", "is not the name of an archive"),
])
def test_failures_are_one_line_and_exit_non_zero(app, runner, tmp_path, case, message):
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not an archive")
    args = {
        "restore-export": lambda: ["backup", "restore", last_line(runner.invoke(args=["backup", "export"])),
                                   "--parts", "database", "--yes"],
        "inspect-garbage": lambda: ["backup", "inspect", str(garbage)],
        "inspect-missing": lambda: ["backup", "inspect", str(tmp_path / "missing.zip")],
        "delete-traversal": lambda: ["backup", "delete", "../../etc/passwd"],
    }[case]()
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert message in result.output and str(tmp_path) not in result.output


def test_cli_and_web_share_the_store_lock(app, runner):
    backup = last_line(runner.invoke(args=["backup", "create", "--parts", "database"]))
    with app.test_request_context():
        web = start_run("backup", Caller("user:super_admin@test.example", "198.51.100.10"), parts="both")
    refused = runner.invoke(args=["backup", "restore", backup, "--parts", "database", "--yes"])
    assert refused.exit_code == 1
    assert refused.output.strip() == ("Error: Not started: a backup started by super_admin@test.example is still "
                                      "running. Only one runs at a time; wait for it to finish and try again.")
    with app.test_request_context():
        assert store_lock("backup").release(web.id)
        with holding(new_holder(), "backup"):
            with pytest.raises(RunRefused, match="started from the command line"):
                start_run("restore", Caller("user:super_admin@test.example", "198.51.100.10"), parts="both", options={"source": "kept", "name": Path(backup).name})
        # A command-line holder whose heartbeat is gone (the command was killed) is taken over.
        assert store_lock("backup").acquire("cli-killed", is_dead=lambda holder: False)
        run = start_run("backup", Caller("user:super_admin@test.example", "198.51.100.10"), parts="both")
        assert store_lock("backup").holder() == run.id
        assert not in_maintenance()


def test_inspect_says_that_an_older_archive_will_be_brought_forward(app, runner, tmp_path):
    source = tmp_path / BEFORE_SLUGS.name
    shutil.copy(BEFORE_SLUGS, source)
    result = runner.invoke(args=["backup", "inspect", str(source)])
    assert result.exit_code == 0, result.output
    assert f"{source.name}: a valid backup of demo-store (both), made 2026-11-26T00:32:12Z by super@demo.test, " \
           "schema 2c3096c25b7f" in result.output
    assert f"it will be upgraded to {code_revision()} (3 migrations)" in result.output
    assert "products: 9 rows" in result.output  # counted after the migrations, in today's schema
