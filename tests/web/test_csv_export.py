"""Exports a person can open: a ZIP of one CSV per table, with the export's redaction, from the page and the CLI."""
import csv
import io
import zipfile
from pathlib import Path

from app.extensions import db
from app.models import User
from tests.helpers import csrf_token_from

WIZARD = "/admin/tools/backup"


def csv_tables(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: list(csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8")))
                for name in archive.namelist()}


def test_an_export_downloads_as_csv_files_without_secrets(app, client, as_role, runner):
    export = Path(runner.invoke(args=["backup", "export"]).output.strip().splitlines()[-1])
    as_role("super_admin")
    response = client.get(f"{WIZARD}/archives/{export.name}?format=csv")
    assert response.status_code == 200 and response.headers["Content-Disposition"].endswith("-csv.zip")
    tables = csv_tables(response.data)
    response.close()  # what the server does once the body is sent
    assert "users.csv" in tables and "orders.csv" in tables
    with app.app_context():
        emails = sorted(db.session.scalars(db.select(User.email)))
    assert sorted(row["email"] for row in tables["users.csv"]) == emails
    assert {row["password_hash"] for row in tables["users.csv"]} == {"!redacted"}
    assert list(export.parent.glob("*csv*")) == [] and not any(
        p.name.startswith("csv-") for p in (export.parent / "incoming").glob("*"))  # nothing left behind


def test_a_backup_is_never_offered_as_csv(app, client, as_role, runner):
    backup = Path(runner.invoke(args=["backup", "create", "--parts", "database"]).output.strip().splitlines()[-1])
    as_role("super_admin")
    client.csrf = csrf_token_from(client.get(f"{WIZARD}/"))
    refused = client.get(f"{WIZARD}/archives/{backup.name}?format=csv")
    assert refused.status_code == 400 and b"only exports" in refused.data


def test_the_cli_writes_the_csv_zip(app, runner, tmp_path):
    result = runner.invoke(args=["backup", "export", "--format", "csv", "--csv-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    target = Path(result.output.strip().splitlines()[-1])
    assert target.parent == tmp_path and target.name.endswith("-csv.zip")
    assert {row["password_hash"] for row in csv_tables(target.read_bytes())["users.csv"]} == {"!redacted"}
